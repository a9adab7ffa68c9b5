/**
 * High-entropy token selection (SPEC §1.5, the 80/20 "forking tokens" rule): the same on every backend, an
 * O(n log n) sort over the valid entropies, no kernel.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';

/**
 * High-entropy token selection (SPEC §1.5): threshold = the (1 − ρ) quantile of H over valid tokens with
 * linear interpolation (torch.quantile), mask = m ∧ H ≥ threshold. ρ = 1 keeps every valid token, ρ = 0 the
 * maximum. Sharded batches: exact by gathering — all-gather the valid entropies and call this on the whole
 * (no approximate histogram is offered). No valid token → empty mask, threshold NaN.
 */
export function entropyMask(
  entropy: Float32Array | Float64Array,
  mask: Uint8Array | null,
  options: { topQuantile: number },
): { mask: Uint8Array; threshold: number } {
  if (!(entropy instanceof Float32Array || entropy instanceof Float64Array)) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'entropy', 'a Float32Array or Float64Array', entropy);
  }
  const n = entropy.length;
  const valid = mask === null ? null : is.mask01(mask, 'mask', n);
  const opts = is.options(options, 'opts', ['topQuantile'] as const);
  const rho = is.numberInRange(opts.topQuantile, 'opts.topQuantile', 0, 1);
  const values: number[] = [];
  for (let i = 0; i < n; i++) if (!valid || valid[i]) values.push(entropy[i]);
  const out = new Uint8Array(n);
  if (values.length === 0) return { mask: out, threshold: NaN };
  values.sort((a, b) => a - b);
  const position = (1 - rho) * (values.length - 1);
  const lo = Math.floor(position);
  const hi = Math.min(lo + 1, values.length - 1);
  const threshold = values[lo] + (values[hi] - values[lo]) * (position - lo);
  for (let i = 0; i < n; i++) out[i] = (!valid || valid[i]) && entropy[i] >= threshold ? 1 : 0;
  return { mask: out, threshold };
}
