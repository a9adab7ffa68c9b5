/**
 * Float64 references for the reward family (SPEC §5) and the exit monitor (SPEC §6). Deliberately plain: nested
 * arrays (number[][]) per row, one obvious loop per formula, every value a JS number. The monitor reference keeps
 * each sequence's whole history (O(tokens)) and re-derives every rule from it, so it shares no state logic with
 * the engine's O(batch) monitor. Tests import this file; nothing copies it.
 */

export type Matrix = number[][];

/** Splits a flat [rows, cols] array into rows. */
export function rowsOf(flat: ArrayLike<number>, rows: number, cols: number): Matrix {
  const out: Matrix = [];
  for (let b = 0; b < rows; b++) out.push(Array.from({ length: cols }, (_, j) => Number(flat[b * cols + j])));
  return out;
}

export const flat = (m: Matrix): number[] => m.flat();

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function unbiasedStd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/** Group members: for each response, the indices of its group (same id). */
function groupOf(ids: ArrayLike<number> | undefined, n: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const members: number[] = [];
    for (let j = 0; j < n; j++) if (ids === undefined || ids[j] === ids[i]) members.push(j);
    out.push(members);
  }
  return out;
}

// ---- §5.1 ----

export function refSerialGroup(correct: Matrix, valid: Matrix | null, decay: number, scaleByStd: boolean) {
  const rewards: Matrix = [];
  const advantages: Matrix = [];
  correct.forEach((row, b) => {
    let k = 0;
    const r = row.map((c, e) => {
      if (valid && !valid[b][e]) return 0;
      if (!c) return 0;
      k++;
      return Math.pow(decay, k - 1);
    });
    const used = r.filter((_, e) => !valid || valid[b][e]);
    const m = mean(used);
    const s = scaleByStd && used.length > 1 ? unbiasedStd(used) + 1e-6 : 1;
    rewards.push(r);
    advantages.push(r.map((x, e) => (valid && !valid[b][e] ? 0 : (x - m) / s)));
  });
  return { rewards, advantages };
}

export function refBudget(scores: Matrix, prior: number[], groupIds: number[] | undefined, blend: number) {
  const S = prior.length;
  const returns = scores.map((row) => row.map((_, s) => {
    let total = 0;
    for (let j = s; j < S; j++) total += prior[j] * row[j];
    return total;
  }));
  const members = groupOf(groupIds, scores.length);
  const baselines = scores.map((row, b) => row.map((_, s) => {
    const groupMean = mean(members[b].map((i) => returns[i][s]));
    if (s === 0) return groupMean;
    let tail = 0;
    for (let j = s; j < S; j++) tail += prior[j];
    return (1 - blend) * groupMean + blend * row[s - 1] * tail;
  }));
  return {
    objective: returns.map((r) => (S > 0 ? r[0] : 0)),
    returns,
    baselines,
    advantages: returns.map((r, b) => r.map((x, s) => x - baselines[b][s])),
  };
}

export function refOverthink(
  stepCorrect: Matrix, stepEnd: Matrix, counts: number[], T: number, mask: Matrix | null, penalty: number, per: 'token' | 'step',
) {
  return stepCorrect.map((row, b) => {
    const out = new Array(T).fill(0);
    let first = -1;
    for (let s = 0; s < counts[b]; s++) if (row[s] && first < 0) first = s;
    if (first >= 0) {
      if (per === 'step') for (let s = first + 1; s < counts[b]; s++) out[stepEnd[b][s]] = -penalty;
      else {
        const lastValid = mask ? T - 1 : stepEnd[b][counts[b] - 1];
        for (let t = stepEnd[b][first] + 1; t <= lastValid; t++) if (!mask || mask[b][t]) out[t] = -penalty;
      }
    }
    return { rewards: out, firstStep: first, firstPosition: first >= 0 ? stepEnd[b][first] : -1 };
  });
}

// ---- §5.2 ----

export function refReject(scores: number[], generated: number[] | null, keepTop: number | null, threshold: number | null, minTokens: number, mode: 'and' | 'or') {
  const eligible = scores.map((_, i) => !generated || generated[i] >= minTokens);
  const order = scores.map((_, i) => i).filter((i) => eligible[i] && !Number.isNaN(scores[i]));
  order.sort((a, b) => (scores[b] !== scores[a] ? scores[b] - scores[a] : a - b));
  const top = new Set(keepTop === null ? [] : order.slice(0, keepTop));
  return scores.map((x, i) => {
    if (!eligible[i]) return 'waiting';
    if (Number.isNaN(x)) return 'notScored';
    const okThreshold = threshold === null ? null : x >= threshold;
    const okTop = keepTop === null ? null : top.has(i);
    const keep = mode === 'and' ? okThreshold !== false && okTop !== false : okThreshold === true || okTop === true;
    return keep ? 'kept' : okThreshold === false ? 'belowThreshold' : 'notTopK';
  });
}

// ---- §5.3 ----

export function refAggregate(rows: Matrix, counts: number[], mode: string): number[] {
  return rows.map((row, b) => {
    const xs = row.slice(0, counts[b]);
    if (xs.length === 0) return 0;
    switch (mode) {
      case 'min': return Math.min(...xs);
      case 'mean': return mean(xs);
      case 'last': return xs[xs.length - 1];
      case 'product': return xs.reduce((a, x) => a * x, 1);
      case 'geomean': return Math.pow(xs.reduce((a, x) => a * x, 1), 1 / xs.length);
      default: return xs.reduce((a, x) => a + x, 0);
    }
  });
}

export function refTransform(rows: Matrix, counts: number[], mode: 'clip' | 'delta', eta = 0): Matrix {
  return rows.map((row, b) => row.map((x, s) => {
    if (s >= counts[b]) return 0;
    if (mode === 'clip') return Math.min(x - eta, 0);
    return s === counts[b] - 1 ? x : x - row[s + 1];
  }));
}

export function refThoughtUnits(labels: Matrix, scores: Matrix, counts: number[], split: boolean): Matrix {
  return labels.map((row, b) => {
    const out = new Array(row.length).fill(0);
    let s = 0;
    while (s < counts[b]) {
      let e = s;
      while (e + 1 < counts[b] && row[e + 1] === row[s]) e++;
      const unit = scores[b].slice(s, e + 1);
      const value = split ? mean(unit) / unit.length : mean(unit);
      for (let k = s; k <= e; k++) out[k] = value;
      s = e + 1;
    }
    return out;
  });
}

export function refScatter(rewards: Matrix, ends: Matrix, counts: number[], T: number): Matrix {
  return rewards.map((row, b) => {
    const out = new Array(T).fill(0);
    for (let s = 0; s < counts[b]; s++) out[ends[b][s]] += row[s];
    return out;
  });
}

export function refImplicit(lp: Matrix, ref: Matrix, mask: Matrix | null, beta: number, ends: Matrix | null, counts: number[] | null) {
  return lp.map((row, b) => {
    const token = row.map((x, t) => (mask && !mask[b][t] ? 0 : beta * (x - ref[b][t])));
    const cumulative: number[] = [];
    token.reduce((acc, x, t) => (cumulative[t] = acc + x), 0);
    const steps = ends && counts ? ends[b].map((e, s) => (s < counts[b] ? cumulative[e] - (s > 0 ? cumulative[ends[b][s - 1]] : 0) : 0)) : null;
    return { token, steps, total: token.reduce((a, x) => a + x, 0) };
  });
}

// ---- §5.4 ----

export function refLengthStep(c: number, L: number, target: number, alpha: number, wrong: number): number {
  return c === 1 ? c + alpha * c * (L <= target ? 1 : 0) : wrong;
}

export function refGroupAccuracy(correct: number[], ids: number[] | undefined): number[] {
  return groupOf(ids, correct.length).map((m) => mean(m.map((i) => correct[i])));
}

export function refKimiLambda(lengths: number[], ids: number[] | undefined): number[] {
  return groupOf(ids, lengths.length).map((m, i) => {
    const ls = m.map((j) => lengths[j]);
    const lo = Math.min(...ls), hi = Math.max(...ls);
    return hi === lo ? 0 : 0.5 - (lengths[i] - lo) / (hi - lo);
  });
}

export function refKimiReward(c: number, lambda: number, w: number): number {
  return c + w * (c === 1 ? lambda : Math.min(0, lambda));
}

export function refOverlong(L: number, maxLength: number, buffer: number, factor: number): number {
  const expected = maxLength - buffer;
  return Math.max(-factor, Math.min(0, (-(L - expected) / buffer) * factor));
}

export function refConcise(correct: number[], lengths: number[], ids: number[] | undefined, w: number): number[] {
  return groupOf(ids, correct.length).map((m, i) => {
    if (!correct[i]) return 0;
    const ls = m.filter((j) => correct[j]).map((j) => lengths[j]);
    const z = (lengths[i] - mean(ls)) / (unbiasedStd(ls) + 1e-6);
    return 1 + w * (1 - 1 / (1 + Math.exp(-z)));
  });
}

// ---- §5.5 ----

export function refPhaseEntropy(entropy: Matrix, mask: Matrix | null, boundary: number[]) {
  return entropy.map((row, b) => {
    const think: number[] = [], answer: number[] = [];
    row.forEach((h, t) => {
      if ((mask && !mask[b][t]) || t === boundary[b]) return;
      (boundary[b] < 0 || t < boundary[b] ? think : answer).push(h);
    });
    return { think: mean(think), answer: mean(answer), nThink: think.length, nAnswer: answer.length };
  });
}

// ---- §5.6, §5.7 ----

export function refTrustWeighted(answer: number[], thinking: number[], correct: number[], ids: number[] | undefined, w0: number, T: number, step: number) {
  return groupOf(ids, answer.length).map((m, i) => {
    const right = m.filter((j) => correct[j]).map((j) => thinking[j]);
    const wrong = m.filter((j) => !correct[j]).map((j) => thinking[j]);
    let factor = 0;
    if (right.length > 0 && wrong.length > 0) factor = mean(right) < mean(wrong) ? Math.exp(mean(right) - mean(wrong)) : 1;
    return answer[i] + w0 * Math.exp(-step / T) * factor * thinking[i];
  });
}

export const refLogSigmoid = (x: number): number => Math.log(1 / (1 + Math.exp(-x)));
export const refSigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

// ---- §6 exit monitor ----

export interface RefMonitorRules {
  entropyBelow?: { threshold: number; k: number };
  maxProbAbove?: { threshold: number; k: number };
  plateau?: { window: number; tolerance: number; minTokens: number };
  budget?: { maxTokens: number };
  partialReward?: { threshold: number; minTokens: number };
  topK?: { k: number; minTokens: number };
}

/** One step row as the reference sees it. */
export interface RefRow { id: number; entropy: number; maxProb: number; partial: number }

/**
 * Replays a stream of steps: each sequence's full history of entropy / max-prob is kept and every rule is
 * evaluated from it. Returns per step the [id, rule|null] of each row.
 */
export function refMonitor(batch: number, rules: RefMonitorRules, steps: RefRow[][]): [number, string | null][][] {
  const history: { h: number[]; p: number[] }[] = Array.from({ length: batch }, () => ({ h: [], p: [] }));
  const done = new Array(batch).fill(false);
  return steps.map((rows) => {
    let outOfTop = new Set<number>();
    if (rules.topK) {
      const scored = rows.filter((r) => !Number.isNaN(r.partial) && history[r.id].h.length + 1 >= rules.topK!.minTokens);
      scored.sort((a, b) => (b.partial !== a.partial ? b.partial - a.partial : a.id - b.id));
      outOfTop = new Set(scored.slice(rules.topK.k).map((r) => r.id));
    }
    return rows.map((row): [number, string | null] => {
      if (done[row.id]) throw new Error(`reference: sequence ${row.id} pushed after its end`);
      const h = history[row.id];
      h.h.push(row.entropy);
      h.p.push(row.maxProb);
      const n = h.h.length;
      const last = (xs: number[], k: number) => xs.slice(Math.max(0, xs.length - k));
      let rule: string | null = null;
      const pr = rules.partialReward;
      if (pr && !Number.isNaN(row.partial) && n >= pr.minTokens && row.partial < pr.threshold) rule = 'partialReward';
      else if (outOfTop.has(row.id)) rule = 'topK';
      else if (rules.entropyBelow && n >= rules.entropyBelow.k && last(h.h, rules.entropyBelow.k).every((x) => x < rules.entropyBelow!.threshold)) rule = 'entropyBelow';
      else if (rules.maxProbAbove && n >= rules.maxProbAbove.k && last(h.p, rules.maxProbAbove.k).every((x) => x > rules.maxProbAbove!.threshold)) rule = 'maxProbAbove';
      else if (rules.plateau && n % rules.plateau.window === 0 && n >= 2 * rules.plateau.window && n >= rules.plateau.minTokens) {
        const w = rules.plateau.window;
        const current = mean(h.h.slice(n - w, n));
        const previous = mean(h.h.slice(n - 2 * w, n - w));
        if (Math.abs(current - previous) <= rules.plateau.tolerance) rule = 'plateau';
      }
      if (rule === null && rules.budget && n >= rules.budget.maxTokens) rule = 'budget';
      if (rule !== null) done[row.id] = true;
      return [row.id, rule];
    });
  });
}
