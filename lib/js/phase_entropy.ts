/**
 * Phase entropy in plain JavaScript (SPEC §5.5): the same function as native/phase_entropy.{h,cc}, in the same
 * order of f64 arithmetic. Thinking phase = valid tokens before the boundary, answer phase = valid tokens after
 * it (the boundary token itself in neither); a row without a boundary is all thinking; an empty phase has mean 0.
 * Returns the first row whose valid entropies are not finite (its means are NaN), −1 when none.
 */
export interface PhaseEntropyJob {
  entropy: Float32Array | Float64Array;
  mask: Uint8Array | null;
  rows: number;
  tokens: number;
  /** [rows] positions in [−1, tokens), or null to search `tokenIds` for `boundaryToken`. */
  boundary: Int32Array | null;
  tokenIds: Int32Array | null;
  boundaryToken: number;
  boundaryOut: Int32Array;
  thinkMean: Float64Array;
  answerMean: Float64Array;
  thinkCount: Int32Array;
  answerCount: Int32Array;
}

export function phaseEntropy(job: PhaseEntropyJob): number {
  const { entropy, mask, rows, tokens, boundary, tokenIds, boundaryToken } = job;
  let bad = -1;
  for (let b = 0; b < rows; b++) {
    const o = b * tokens;
    let at = -1;
    if (boundary) at = boundary[b];
    else {
      for (let t = 0; t < tokens; t++) {
        if ((!mask || mask[o + t] !== 0) && tokenIds![o + t] === boundaryToken) {
          at = t;
          break;
        }
      }
    }
    let think = 0, answer = 0, nThink = 0, nAnswer = 0;
    for (let t = 0; t < tokens; t++) {
      if ((mask && mask[o + t] === 0) || t === at) continue;
      if (at < 0 || t < at) {
        think += entropy[o + t];
        nThink++;
      } else {
        answer += entropy[o + t];
        nAnswer++;
      }
    }
    const finite = think - think === 0 && answer - answer === 0;
    if (!finite && bad < 0) bad = b;
    job.boundaryOut[b] = at;
    job.thinkMean[b] = !finite ? NaN : nThink > 0 ? think / nThink : 0;
    job.answerMean[b] = !finite ? NaN : nAnswer > 0 ? answer / nAnswer : 0;
    job.thinkCount[b] = nThink;
    job.answerCount[b] = nAnswer;
  }
  return bad;
}
