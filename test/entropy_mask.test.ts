/**
 * entropyMask (SPEC §1.5): threshold = the (1 − ρ) quantile of the valid entropies with linear
 * interpolation (torch.quantile); mask = m ∧ H ≥ threshold. Checked against the reference quantile.
 */
import * as ae from '../lib';
import type { Sfc32 } from '../lib/prng';
import { refEntropyMask } from './ref/token_stats';
import { randomMask, rng } from './helpers';

// ---- parameter table ----

const SIZES = [1, 2, 7, 100, 4097];
const KINDS = ['f32', 'f64'] as const;
/** Values drawn from: a continuum, or a small set (many ties). */
const DATA = ['continuous', 'ties'] as const;
/**
 * Threshold tolerance 1e-12 relative (of the larger interpolated endpoint): the engine and the reference
 * may write the interpolation a + (b − a)·f in different orders. Entries within that distance of the
 * threshold may fall on either side and are not compared; every other entry must agree exactly.
 */
const THRESHOLD_RTOL = 1e-12;

function entropies(r: Sfc32, n: number, kind: (typeof KINDS)[number], data: (typeof DATA)[number]): Float32Array | Float64Array {
  const values = kind === 'f32' ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = data === 'ties' ? r.pick([0, 0.5, 1, 1.5]) : Math.abs(r.normal()) * r.pick([0.1, 1, 5]);
  return values;
}

function validValues(h: ArrayLike<number>, m: Uint8Array | null): number[] {
  return Array.from(h).filter((_, i) => !m || m[i] === 1);
}

const CASES = SIZES.flatMap((n) => KINDS.flatMap((kind) => DATA.map((data) => ({ n, kind, data }))));

describe.each(CASES)('entropyMask n=$n $kind $data', ({ n, kind, data }) => {
  test('threshold and mask match the reference quantile, with and without a mask', () => {
    const r = rng(`entropyMask ${n} ${kind} ${data}`);
    for (let trial = 0; trial < 8; trial++) {
      const h = entropies(r, n, kind, data);
      const m = trial % 2 === 0 ? null : randomMask(r, n, r.pick([0.2, 0.7, 1]));
      const rho = trial === 0 ? 0.2 : r.float();
      const ref = refEntropyMask(h, m, rho);
      const got = ae.entropyMask(h, m, { topQuantile: rho });
      expect(got.mask).toBeInstanceOf(Uint8Array);
      expect(got.mask.length).toBe(n);
      if (Number.isNaN(ref.threshold)) {
        expect(got.threshold).toBeNaN(); // no valid token
        expect(got.mask.every((x) => x === 0)).toBe(true);
        continue;
      }
      const valid = validValues(h, m);
      const slack = THRESHOLD_RTOL * Math.max(...valid.map(Math.abs), 1e-300);
      expect(Math.abs(got.threshold - ref.threshold)).toBeLessThanOrEqual(slack);
      const differing = Array.from(got.mask).flatMap((x, i) =>
        x === ref.mask[i] || Math.abs(h[i] - ref.threshold) <= slack ? [] : [`[${i}] H=${h[i]} got ${x} want ${ref.mask[i]}`]);
      expect(differing).toEqual([]);
      // Masked-out tokens are never selected, whatever their entropy.
      expect(Array.from(got.mask).filter((x, i) => x === 1 && m !== null && m[i] === 0)).toEqual([]);
    }
  });

  test('ρ = 1 keeps every valid token; ρ = 0 keeps only the maximum', () => {
    const r = rng(`entropyMask-ends ${n} ${kind} ${data}`);
    const h = entropies(r, n, kind, data);
    const m = randomMask(r, n, 0.8);
    m[r.int(n)] = 1;
    const valid = validValues(h, m);
    const all = ae.entropyMask(h, m, { topQuantile: 1 });
    expect(Array.from(all.mask)).toEqual(Array.from(m));
    expect(all.threshold).toBe(Math.min(...valid));
    const top = ae.entropyMask(h, m, { topQuantile: 0 });
    const maximum = Math.max(...valid);
    expect(top.threshold).toBe(maximum);
    expect(Array.from(top.mask)).toEqual(Array.from(h, (x, i) => (m[i] === 1 && x === maximum ? 1 : 0)));
    // Without a mask every token is valid.
    expect(ae.entropyMask(h, null, { topQuantile: 1 }).mask.every((x) => x === 1)).toBe(true);
  });
});

describe('entropyMask hand-worked cases', () => {
  test('ties at the threshold are kept (H ≥ threshold)', () => {
    // Sorted [1, 2, 2, 2, 3]; ρ = 0.5: position 0.5·4 = 2 → threshold 2, every 2 kept.
    const got = ae.entropyMask(new Float64Array([2, 1, 3, 2, 2]), null, { topQuantile: 0.5 });
    expect(got.threshold).toBe(2);
    expect(Array.from(got.mask)).toEqual([1, 0, 1, 1, 1]);
    // ρ = 0.25: position 0.75·4 = 3 → threshold 2 (sorted[3]); ρ = 0.2: position 3.2 → 2 + 0.2·(3 − 2) = 2.2.
    expect(ae.entropyMask(new Float64Array([2, 1, 3, 2, 2]), null, { topQuantile: 0.25 }).threshold).toBe(2);
    const between = ae.entropyMask(new Float64Array([2, 1, 3, 2, 2]), null, { topQuantile: 0.2 });
    expect(between.threshold).toBeCloseTo(2.2, 12);
    expect(Array.from(between.mask)).toEqual([0, 0, 1, 0, 0]);
  });

  test('all equal values: every valid token is kept at any ρ', () => {
    const h = new Float32Array(9).fill(0.75);
    const m = new Uint8Array([1, 0, 1, 1, 0, 1, 1, 1, 0]);
    for (const rho of [0, 0.3, 1]) {
      const got = ae.entropyMask(h, m, { topQuantile: rho });
      expect(got.threshold).toBe(0.75);
      expect(Array.from(got.mask)).toEqual(Array.from(m));
    }
  });

  test('no valid token: all-zero mask and threshold NaN', () => {
    const got = ae.entropyMask(new Float32Array([1, 2, 3]), new Uint8Array(3), { topQuantile: 0.5 });
    expect(Array.from(got.mask)).toEqual([0, 0, 0]);
    expect(got.threshold).toBeNaN();
  });
});
