/**
 * Token-level advantages (SPEC §4.2–§4.3) against test/ref/advantages.ts on every backend: gae (whitened or
 * not), discountedReturns, reinforcePlusPlus, placeOutcome and optimalTokenBaseline on random [B, T] arrays
 * whose masks have holes (multi-turn observation tokens) and trailing padding; the multi-turn law (rewards and
 * values at masked positions do not change valid outputs); coded errors.
 */
import * as ae from '../lib';
import { refGae, refOtb, refReturns, refWhiten } from './ref/advantages';
import { backendCases, rng, withBackend } from './helpers';
import type { Sfc32 } from '../lib/prng';

const SHAPES: readonly [number, number][] = [[1, 1], [3, 7], [17, 129], [64, 300]];
const GAMMAS = [[1, 1], [0.99, 0.95], [0.9, 0.5]] as const;
const F64_TOL = { rtol: 1e-9, atol: 1e-9 };
const F32_TOL = { rtol: 2e-6, atol: 2e-6 };
const BACKENDS = backendCases();

/** Masks with a response prefix, holes inside it (observation tokens) and trailing padding. */
function tokenBatch(r: Sfc32, [B, T]: [number, number]) {
  const mask = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const length = 1 + r.int(T);
    for (let t = 0; t < length; t++) mask[b * T + t] = r.float() < 0.8 || t === 0 ? 1 : 0;
  }
  const rewards = Float64Array.from({ length: B * T }, () => r.normal());
  const values = Float64Array.from({ length: B * T }, () => r.normal());
  return { mask, rewards, values };
}

describe.each(SHAPES)('[%i, %i]', (B, T) => {
  const shape: [number, number] = [B, T];
  test.each(BACKENDS)('$label: gae, returns, reinforcePlusPlus match the reference', async (c) => {
    const r = rng(`token ${B}x${T} ${c.label}`);
    const { mask, rewards, values } = tokenBatch(r, shape);
    await withBackend(c, async () => {
      for (const [gamma, lambda] of GAMMAS) {
        const [g, ret] = refGae(rewards, values, mask, B, T, gamma, lambda);
        const raw = ae.gaeSync({ rewards, values, mask, shape }, { gamma, lambda, whiten: false, precision: 'f64', backend: c.backend });
        expect(raw.advantages).toMatchReference(g, F64_TOL, `gae γ=${gamma}`);
        expect(raw.returns).toMatchReference(ret, F64_TOL, 'gae returns');
        const white = await ae.gae({ rewards, values, mask, shape }, { gamma, lambda, backend: c.backend });
        expect(white.advantages).toMatchReference(refWhiten(g, mask), F32_TOL, 'gae whitened (f32)');
        expect(white.whitenSkipped).toBe(mask.reduce((a, m) => a + m, 0) < 2);
        const G = refReturns(rewards, mask, B, T, gamma);
        expect(await ae.discountedReturns({ rewards, mask, shape }, { gamma, precision: 'f64', backend: c.backend })).toMatchReference(G, F64_TOL, 'returns');
        const rpp = ae.reinforcePlusPlusSync({ rewards, mask, shape }, { gamma, precision: 'f64', backend: c.backend });
        expect(rpp.advantages).toMatchReference(refWhiten(G, mask).map((x, i) => x * mask[i]), F64_TOL, 'reinforcePlusPlus');
        expect(rpp.returns).toMatchReference(G, F64_TOL, 'reinforcePlusPlus returns');
      }
    });
  });

  test.each(BACKENDS)('$label: masked rewards and values do not change valid outputs (multi-turn)', async (c) => {
    const r = rng(`multiturn ${B}x${T} ${c.label}`);
    const { mask, rewards, values } = tokenBatch(r, shape);
    const noisy = (x: Float64Array) => x.map((v, i) => (mask[i] ? v : 1e3 * r.normal()));
    await withBackend(c, async () => {
      const a = ae.gaeSync({ rewards, values, mask, shape }, { gamma: 0.9, lambda: 0.8, precision: 'f64', backend: c.backend });
      const b = ae.gaeSync({ rewards: noisy(rewards), values: noisy(values), mask, shape }, { gamma: 0.9, lambda: 0.8, precision: 'f64', backend: c.backend });
      const valid = (x: ArrayLike<number>) => Array.from(x).filter((_, i) => mask[i]);
      expect(valid(b.advantages)).toEqual(valid(a.advantages));
    });
  });

  test.each(BACKENDS)('$label: placeOutcome and optimalTokenBaseline', async (c) => {
    const r = rng(`otb ${B}x${T} ${c.label}`);
    const { mask } = tokenBatch(r, shape);
    const R = Float64Array.from({ length: B }, () => r.int(2));
    const ids = Array.from({ length: B }, () => r.int(Math.max(1, B >> 2)));
    const old = Float64Array.from({ length: B * T }, () => -3 * r.float());
    const spp = Float64Array.from({ length: B * T }, () => r.float());
    await withBackend(c, async () => {
      const placed = ae.placeOutcomeSync(R, mask, { precision: 'f64', backend: c.backend });
      const expected = new Float64Array(B * T);
      for (let b = 0; b < B; b++) {
        const last = Array.from(mask.subarray(b * T, b * T + T)).lastIndexOf(1);
        if (last >= 0) expected[b * T + last] = R[b];
      }
      expect(placed).toMatchReference(expected, { rtol: 0, atol: 0 }, 'placeOutcome');
      const ref = refOtb(placed, mask, old, spp, ids, B, T);
      const got = await ae.optimalTokenBaseline(
        { rewards: placed, mask, shape, oldLogprobs: old, sumPiSquared: spp, groupIds: ids }, { precision: 'f64', backend: c.backend },
      );
      expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, 'otb advantages');
      expect(got.returns).toMatchReference(ref.returns, F64_TOL, 'otb returns');
    });
  });
});

describe.each(BACKENDS)('errors, $label', (c) => {
  const shape: [number, number] = [2, 3];
  const mask = new Uint8Array([1, 1, 0, 1, 0, 0]);
  test('shape mismatch, bad mask, NaN at a valid position, γ out of range', () => {
    expect(() => ae.gaeSync({ rewards: [1, 2, 3], values: [0, 0, 0, 0, 0, 0], mask, shape }, { backend: c.backend }))
      .toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'inputs.rewards' }));
    expect(() => ae.discountedReturnsSync({ rewards: [1, 2, 3, 4, 5, 6], mask: [1, 2, 0, 0, 0, 0], shape }, { backend: c.backend }))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'inputs.mask[1]' }));
    expect(() => ae.gaeSync({ rewards: [1, 2, 3, 4, NaN, 6], values: [0, 0, 0, NaN, 0, 0], mask, shape }, { backend: c.backend }))
      .toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 1 }));
    // NaN at a masked position is fine.
    expect(ae.gaeSync({ rewards: [1, 2, NaN, 4, NaN, 6], values: [0, 0, 0, 0, 0, 0], mask, shape }, { backend: c.backend }).advantages[0]).not.toBeNaN();
    expect(() => ae.gaeSync({ rewards: [1, 2, 3, 4, 5, 6], values: [0, 0, 0, 0, 0, 0], mask, shape }, { gamma: 1.5, backend: c.backend }))
      .toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.gamma' }));
  });
});
