/**
 * The token selection of the covariance modes (SPEC §2, arXiv:2505.22617): clipCov zeroes the loss of random
 * high-covariance tokens, klCov adds a |δ| penalty on the top ones. The selection is batch-wide, so it is made
 * here once, the same for every backend, and handed to the kernels as a 0/1 mask.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import { Sfc32 } from '../prng';
import type { PolicyKernelIo, PolicyKernelParams, PolicyModeName } from '../js/policy_loss';
import type { PolicyPreset } from './policy_presets';

function optionalNumber(value: unknown, param: string, fallback: number): number {
  return value === undefined ? fallback : is.finiteNumber(value, param);
}

export interface CovOptions {
  ratio: number;
  lb: number;
  ub: number;
  coef: number;
  seed: number;
}

/** The covariance mode's options (null for the other modes, which must not be given them). */
export function covOptions(
  mode: PolicyModeName, opts: { clipCov?: unknown; klCov?: unknown; seed?: unknown }, preset: PolicyPreset,
): CovOptions | null {
  if (mode === 'clipCov') {
    const o = is.options(opts.clipCov, 'opts.clipCov', ['ratio', 'lb', 'ub'] as const);
    const ratio = o.ratio === undefined ? 2e-4 : is.positiveNumber(o.ratio, 'opts.clipCov.ratio');
    const lb = optionalNumber(o.lb, 'opts.clipCov.lb', 1);
    const ub = optionalNumber(o.ub, 'opts.clipCov.ub', 5);
    if (!(lb < ub)) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.clipCov.ub', `a bound above lb = ${lb}`, ub);
    const seed = opts.seed === undefined ? 0 : is.nonNegativeInteger(opts.seed, 'opts.seed');
    return { ratio, lb, ub, coef: 0, seed };
  }
  if (opts.clipCov !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.clipCov', "mode 'clipCov'", mode);
  if (mode === 'klCov') {
    const o = is.options(opts.klCov, 'opts.klCov', ['ratio', 'coef'] as const);
    const ratio = o.ratio === undefined ? 2e-4 : is.positiveNumber(o.ratio, 'opts.klCov.ratio');
    const coef = optionalNumber(o.coef, 'opts.klCov.coef', preset.klCovCoef);
    if (coef < 0) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.klCov.coef', 'a number ≥ 0', coef);
    return { ratio, lb: -Infinity, ub: Infinity, coef, seed: 0 };
  }
  if (opts.klCov !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.klCov', "mode 'klCov'", mode);
  return null;
}

/**
 * The tokens the covariance modes act on, from the centred covariance (A − mean_m A)·(lp − mean_m lp) over the
 * valid tokens. clipCov: a uniformly random max(1, ⌊ratio·Σm⌋) of the valid tokens whose ppo branch is unclipped
 * and whose covariance lies in (lb, ub) (Sfc32(seed), partial Fisher–Yates: the same on every backend). klCov:
 * the top max(1, ⌊ratio·Σm⌋) by covariance, ties to the lower index. An O(n) pass here, not a kernel: these
 * modes are rare and the selection is batch-wide.
 */
export function selectCovTokens(io: PolicyKernelIo, p: PolicyKernelParams, cov: CovOptions, mode: 'clipCov' | 'klCov', preset: PolicyPreset): Uint8Array {
  const { rows, cols, mask, logprob: lp, oldLogprob: old } = io;
  const adv = (i: number) => (io.advantagesPerRow ? io.advantages[Math.floor(i / cols)] : io.advantages[i]);
  let count = 0;
  let sumA = 0;
  let sumLp = 0;
  for (let i = 0; i < rows * cols; i++) {
    if (mask[i] === 0) continue;
    count++;
    sumA += adv(i);
    sumLp += lp[i];
  }
  const selected = new Uint8Array(rows * cols);
  if (count === 0) return selected;
  // verl's clipCov centres with its masked_mean (+1e-8); its klCov with plain means over the valid tokens.
  const denominator = count + (mode === 'clipCov' ? preset.metricEps : 0);
  const meanA = sumA / denominator;
  const meanLp = sumLp / denominator;
  const want = Math.max(1, Math.floor(cov.ratio * count));
  const covariance = (i: number) => (adv(i) - meanA) * (lp[i] - meanLp);
  if (mode === 'clipCov') {
    const candidates: number[] = [];
    for (let i = 0; i < rows * cols; i++) {
      if (mask[i] === 0) continue;
      const r = Math.exp(Math.min(Math.max(lp[i] - old[i], p.clampLow), p.clampHigh));
      const a = adv(i);
      const clipped = (a > 0 && r > p.ratioHigh) || (a < 0 && r < p.ratioLow);
      const c = covariance(i);
      if (!clipped && c > cov.lb && c < cov.ub) candidates.push(i);
    }
    const take = Math.min(want, candidates.length);
    const rng = new Sfc32(cov.seed);
    for (let k = 0; k < take; k++) {
      const j = k + Math.floor(rng.float() * (candidates.length - k));
      [candidates[k], candidates[j]] = [candidates[j], candidates[k]];
      selected[candidates[k]] = 1;
    }
    return selected;
  }
  // klCov: a min-heap of the `want` largest (covariance, −index) pairs.
  const heap: number[] = [];
  const key = (i: number) => covariance(i);
  const less = (a: number, b: number) => key(a) < key(b) || (key(a) === key(b) && a > b);
  const siftDown = (k: number) => {
    for (;;) {
      const l = 2 * k + 1;
      const r = l + 1;
      let m = k;
      if (l < heap.length && less(heap[l], heap[m])) m = l;
      if (r < heap.length && less(heap[r], heap[m])) m = r;
      if (m === k) return;
      [heap[k], heap[m]] = [heap[m], heap[k]];
      k = m;
    }
  };
  const siftUp = (k: number) => {
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!less(heap[k], heap[parent])) return;
      [heap[k], heap[parent]] = [heap[parent], heap[k]];
      k = parent;
    }
  };
  for (let i = 0; i < rows * cols; i++) {
    if (mask[i] === 0) continue;
    if (heap.length < want) {
      heap.push(i);
      siftUp(heap.length - 1);
    } else if (less(heap[0], i)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  for (const i of heap) selected[i] = 1;
  return selected;
}
