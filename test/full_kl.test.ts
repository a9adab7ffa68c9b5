/**
 * fullKl (SPEC §1.4): KL(p‖q) = Σ_j p_j (log p_j − log q_j) over the whole vocabulary, both distributions
 * tempered, against the float64 reference on every backend.
 */
import * as ae from '../lib';
import { DType, elementAt, fromNumbers, Tensor } from '../lib/tensor';
import type { Sfc32 } from '../lib/prng';
import { refFullKl } from './ref/token_stats';
import { BackendCase, backendCases, makeLogits, randomMask, rng, STATS_TOL, withBackend } from './helpers';

// ---- parameter table ----

const SHAPES: readonly (readonly number[])[] = [[1, 1], [3, 7], [41, 1271], [2, 3, 37], [2, 152064]];
const DTYPES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16'];
const TEMPERATURES = [1, 0.7, 1.3];
/** SPEC §1.1 bound (bf16 / f16 judged against the reference of the widened values). */
const TOLERANCE = STATS_TOL;
const BACKENDS: readonly BackendCase[] = backendCases();

/**
 * The reference distribution q: p's logits plus noise of a per-row size (0.01: KL ~1e-5, a test of
 * cancellation; 3: KL of order 1). Where p is −inf, q is finite or −inf at random: p_j = 0 contributes 0
 * either way. q is never −inf where p is finite (that row's KL would be +inf; tested on its own below).
 */
function makeRef(r: Sfc32, p: Tensor): Tensor {
  const vocab = p.shape[p.shape.length - 1];
  const values = new Float64Array(p.data.length);
  for (let i = 0; i < values.length / vocab; i++) {
    const sigma = r.pick([0.01, 0.3, 3]);
    for (let j = i * vocab; j < (i + 1) * vocab; j++) {
      const z = elementAt(p, j);
      values[j] = z === -Infinity ? (r.float() < 0.5 ? -Infinity : 5 * r.normal()) : z + sigma * r.normal();
    }
  }
  return fromNumbers(values, p.shape, p.dtype);
}

const CASES = SHAPES.flatMap((shape, s) => DTYPES.map((dtype, d) => ({ shape, dtype, temperature: TEMPERATURES[(s + d) % 3] })));

describe.each(CASES)('fullKl [$shape] $dtype τ=$temperature', ({ shape, dtype, temperature }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;
  let p: Tensor;
  let q: Tensor;
  let ref: Float64Array;
  beforeAll(() => {
    const r = rng(`fullKl ${label}`);
    p = makeLogits(r, shape, dtype).logits;
    q = makeRef(r, p);
    ref = refFullKl(p, q, { temperature });
  });

  test.each(BACKENDS)('$label: async and Sync match the reference; KL(p‖p) = 0', async (c) => {
    await withBackend(c, async () => {
      const sync = ae.fullKlSync(p, q, { temperature, backend: c.backend });
      expect(sync).toBeInstanceOf(Float32Array);
      expect(sync).toMatchReference(ref, TOLERANCE, `${label} ${c.label}`);
      expect(await ae.fullKl(p, q, { temperature, backend: c.backend })).toEqualBitwise(sync, 'async vs Sync');
      const self = await ae.fullKl(p, p, { temperature, backend: c.backend });
      expect(self).toMatchReference(new Float64Array(self.length), TOLERANCE, `${label} ${c.label} KL(p‖p)`);
    });
  });
});

describe('fullKl edge cases', () => {
  test.each(BACKENDS)('$label: hand-worked two-entry rows in every dtype', async (c) => {
    // p = softmax([0, 0]) = [½, ½]; q = softmax([0, 1]) = [1, e]/(1 + e).
    const e = Math.E;
    const expected = 0.5 * Math.log(0.5 * (1 + e)) + 0.5 * Math.log((0.5 * (1 + e)) / e);
    for (const dtype of DTYPES) {
      const p = fromNumbers([0, 0], [1, 2], dtype);
      const q = fromNumbers([0, 1], [1, 2], dtype);
      const got = await withBackend(c, () => ae.fullKl(p, q, { backend: c.backend }));
      expect(got).toMatchReference([expected], TOLERANCE, `${dtype} KL([½,½] ‖ [1,e]/(1+e))`);
    }
  });

  test.each(BACKENDS)('$label: −inf in p only contributes 0; −inf in q where p > 0 gives +Infinity', async (c) => {
    const r = rng(`fullKl-inf ${c.label}`);
    for (const dtype of DTYPES) {
      const vocab = 2 + r.int(600);
      const p = makeLogits(r, [4, vocab], dtype, { negInf: false, extremes: false, limit: 30 }).logits;
      const pValues = Array.from({ length: 4 * vocab }, (_, k) => elementAt(p, k));
      const qValues = pValues.map((z) => z + 0.5 * r.normal());
      // Row 0: p is −inf on a third of the entries (q finite there). Row 1: both −inf on those entries.
      // Row 2: q is −inf at p's argmax (p > 0 there). Row 3: untouched. Entry 1 stays finite: no row is all −inf.
      for (let j = 0; j < vocab; j += 3) {
        pValues[j] = -Infinity;
        pValues[vocab + j] = -Infinity;
        qValues[vocab + j] = -Infinity;
      }
      let argmax = 2 * vocab;
      for (let k = 2 * vocab; k < 3 * vocab; k++) if (pValues[k] > pValues[argmax]) argmax = k;
      qValues[argmax] = -Infinity;
      const pt = fromNumbers(pValues, [4, vocab], dtype);
      const qt = fromNumbers(qValues, [4, vocab], dtype);
      const ref = refFullKl(pt, qt, { temperature: 0.7 });
      expect(ref[2]).toBe(Infinity);
      const got = await withBackend(c, () => ae.fullKl(pt, qt, { temperature: 0.7, backend: c.backend }));
      expect(got).toMatchReference(ref, TOLERANCE, `${dtype} V=${vocab} −inf rows`);
    }
  });

  test.each(BACKENDS)("$label: rowMask rows are 0; nonFinite 'nan' gives NaN rows, 'throw' names the row", async (c) => {
    const r = rng(`fullKl-mask ${c.label}`);
    const p = makeLogits(r, [12, 513], 'bf16').logits;
    const q = makeRef(r, p);
    const rowMask = randomMask(r, 12);
    rowMask[5] = 1;
    const ref = refFullKl(p, q, { rowMask, temperature: 1.3 });
    await withBackend(c, async () => {
      const got = await ae.fullKl(p, q, { rowMask, temperature: 1.3, backend: c.backend });
      expect(got).toMatchReference(ref, TOLERANCE, 'rowMask');
      expect(Array.from(got).filter((x, i) => rowMask[i] === 0 && x !== 0)).toEqual([]);
      q.data[5 * 513 + r.int(513)] = 0x7fc0; // a bf16 NaN in the reference logits of row 5
      const nanRows = ae.fullKlSync(p, q, { rowMask, temperature: 1.3, nonFinite: 'nan', backend: c.backend });
      expect(nanRows).toMatchReference(ref.map((x, i) => (i === 5 ? NaN : x)), TOLERANCE, "nonFinite 'nan'");
      expect(() => ae.fullKlSync(p, q, { rowMask, backend: c.backend })).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 5 }),
      );
    });
  });
});
