/**
 * Per-token process rewards in plain JavaScript (SPEC §5.3): the same functions as native/process_rewards.{h,cc},
 * in the same order of f64 arithmetic, so both backends agree bitwise.
 *   scatterSteps:          out[b, e_{b,s}] = r_{b,s}, zero elsewhere
 *   implicitProcessReward: r_t = β·(lp_t − ref_t)·m_t; R_t = Σ_{t' ≤ t} r_t'; step k = R_{e_k} − R_{e_{k−1}}
 * Each returns the first row holding a non-finite value (−1 when none), like the native kernels.
 */
type Values = Float32Array | Float64Array;

export function scatterSteps(
  stepRewards: Values, stepEnd: Int32Array, stepCounts: Int32Array, rows: number, steps: number, tokens: number,
  out: Float32Array,
): number {
  let bad = -1;
  out.fill(0);
  for (let b = 0; b < rows; b++) {
    for (let s = 0; s < stepCounts[b]; s++) {
      const r = stepRewards[b * steps + s];
      if (r - r !== 0 && bad < 0) bad = b;
      out[b * tokens + stepEnd[b * steps + s]] += r;
    }
  }
  return bad;
}

export interface ImplicitJob {
  logprob: Values;
  ref: Values;
  mask: Uint8Array | null;
  rows: number;
  tokens: number;
  beta: number;
  stepEnd: Int32Array | null;
  stepCounts: Int32Array | null;
  steps: number;
  tokenRewards: Float32Array;
  stepRewards: Float32Array | null;
  total: Float32Array;
}

export function implicitProcessReward(job: ImplicitJob): number {
  const { logprob, ref, mask, rows, tokens, beta, stepEnd, stepCounts, steps, tokenRewards, stepRewards, total } = job;
  let bad = -1;
  if (stepRewards) stepRewards.fill(0);
  for (let b = 0; b < rows; b++) {
    const o = b * tokens;
    const count = stepEnd && stepCounts ? stepCounts[b] : 0;
    let running = 0;
    let atPreviousEnd = 0;
    let step = 0;
    let finite = true;
    for (let t = 0; t < tokens; t++) {
      let r = 0;
      if (!mask || mask[o + t] !== 0) {
        const d = logprob[o + t] - ref[o + t];
        if (d - d !== 0) finite = false;
        r = beta * d;
      }
      tokenRewards[o + t] = r;
      running += r;
      if (step < count && stepEnd![b * steps + step] === t) {
        stepRewards![b * steps + step] = running - atPreviousEnd;
        atPreviousEnd = running;
        step++;
      }
    }
    total[b] = running;
    if (!finite && bad < 0) bad = b;
  }
  return bad;
}
