/**
 * Phase entropy (SPEC §5.5) against the float64 reference in test/ref/rewards.ts on every backend (backendCases),
 * with boundaries given as positions or as a token id, plus a hand-worked case and coded errors.
 */
import { rewards } from '../lib';
import { refPhaseEntropy, rowsOf } from './ref/rewards';
import { BackendCase, backendCases, randomMask, rng, withBackend } from './helpers';

/** Means of f64 sums, one f32 rounding. */
const TOL = { rtol: 1e-6, atol: 1e-7 };
const BACKENDS: readonly BackendCase[] = backendCases();
const THINK_END = 151668; // Qwen3's </think>

describe.each(BACKENDS)('phaseEntropy on $label', (c) => {
  test('hand-worked: boundary at 2, the boundary token in neither phase; no boundary = all thinking', async () => {
    await withBackend(c, async () => {
      const entropy = Float32Array.of(2, 4, 9, 1, 3, 1, 1, 1);
      const got = rewards.phaseEntropySync(
        { entropy, shape: [2, 4], boundary: [2, -1], rewards: [1, 0] }, { wThink: -0.5, wAnswer: 0.25, backend: c.backend },
      );
      expect(Array.from(got.thinkEntropy)).toEqual([3, 1.5]);
      expect(Array.from(got.answerEntropy)).toEqual([1, 0]);
      expect(Array.from(got.thinkTokens)).toEqual([2, 4]);
      expect(Array.from(got.answerTokens)).toEqual([1, 0]);
      expect(Array.from(got.rewards)).toEqual([1 - 1.5 + 0.25, -0.75]);
      // The same boundary found as a token id; the default wThink is −0.1.
      const byToken = rewards.phaseEntropySync(
        { entropy, shape: [2, 4], boundary: THINK_END, tokens: [5, 6, THINK_END, 7, 1, 2, 3, 4] }, { backend: c.backend },
      );
      expect(Array.from(byToken.boundary)).toEqual([2, -1]);
      expect(byToken.rewards).toMatchReference([-0.3, -0.15], TOL, 'default weights');
    });
  });

  test.each([
    { rows: 1, T: 1 }, { rows: 13, T: 97 }, { rows: 48, T: 4099 }, { rows: 2, T: 0 }, { rows: 0, T: 5 },
  ])('random [$rows, $T] with masks matches the reference; async equals Sync', async ({ rows, T }) => {
    const r = rng(`phase ${c.label} ${rows} ${T}`);
    const entropy = Float64Array.from({ length: rows * T }, () => Math.abs(2 * r.normal()));
    const mask = randomMask(r, rows * T, 0.85);
    const tokens = Int32Array.from({ length: rows * T }, () => r.int(1000));
    const positions = Int32Array.from({ length: rows }, () => (T === 0 || r.float() < 0.2 ? -1 : r.int(T)));
    // Put the boundary token at the chosen positions (and sometimes a second, later one).
    positions.forEach((p, b) => {
      if (p < 0) return;
      tokens[b * T + p] = THINK_END;
      mask[b * T + p] = 1;
      if (p + 3 < T) tokens[b * T + p + 3] = THINK_END;
    });
    const base = Float32Array.from({ length: rows }, () => r.normal());
    const wThink = -r.float(), wAnswer = r.float();
    await withBackend(c, async () => {
      for (const boundary of [positions, THINK_END] as const) {
        const inputs = { entropy, mask, shape: [rows, T] as const, boundary, rewards: base, ...(boundary === THINK_END ? { tokens } : {}) };
        const got = rewards.phaseEntropySync(inputs, { wThink, wAnswer, backend: c.backend });
        const ref = refPhaseEntropy(rowsOf(entropy, rows, T), rowsOf(mask, rows, T), Array.from(positions));
        expect(Array.from(got.boundary)).toEqual(Array.from(positions));
        expect(got.thinkEntropy).toMatchReference(ref.map((x) => x.think), TOL, 'think');
        expect(got.answerEntropy).toMatchReference(ref.map((x) => x.answer), TOL, 'answer');
        expect(Array.from(got.thinkTokens)).toEqual(ref.map((x) => x.nThink));
        expect(Array.from(got.answerTokens)).toEqual(ref.map((x) => x.nAnswer));
        expect(got.rewards).toMatchReference(ref.map((x, b) => base[b] + wThink * x.think + wAnswer * x.answer), { rtol: 1e-6, atol: 1e-6 }, 'rewards');
        const viaPromise = await rewards.phaseEntropy(inputs, { wThink, wAnswer, backend: c.backend });
        expect(viaPromise.rewards).toEqualBitwise(got.rewards);
        expect(viaPromise.thinkEntropy).toEqualBitwise(got.thinkEntropy);
      }
    });
  });

  test('a non-finite entropy at a valid token names the row', async () => {
    await withBackend(c, async () => {
      const entropy = Float32Array.of(1, 1, 1, NaN);
      expect(() => rewards.phaseEntropySync({ entropy, shape: [2, 2], boundary: [-1, -1] }, { backend: c.backend }))
        .toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 1 }));
      const masked = rewards.phaseEntropySync({ entropy, mask: [1, 1, 1, 0], shape: [2, 2], boundary: [-1, -1] }, { backend: c.backend });
      expect(Array.from(masked.thinkEntropy)).toEqual([1, 1]);
    });
  });
});

describe('phaseEntropy bad input', () => {
  const entropy = new Float32Array(6);
  test('a boundary beyond T, token ids missing, both weights forms: coded errors', () => {
    expect(() => rewards.phaseEntropySync({ entropy, shape: [2, 3], boundary: [0, 3] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.boundary[1]' }));
    expect(() => rewards.phaseEntropySync({ entropy, shape: [2, 3], boundary: [0, -2] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.boundary[1]' }));
    expect(() => rewards.phaseEntropySync({ entropy, shape: [2, 3], boundary: 5 })).toThrow(expect.objectContaining({ param: 'inputs.tokens' }));
    expect(() => rewards.phaseEntropySync({ entropy, shape: [2, 3], boundary: [0, 1] }, { wThink: 1, alpha: 1 })).toThrow(expect.objectContaining({ param: 'opts.alpha' }));
    expect(() => rewards.phaseEntropySync({ entropy, shape: [3, 3], boundary: [0, 1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'inputs.entropy' }));
    return expect(rewards.phaseEntropy({ entropy, shape: [2, 3], boundary: [0, 9] })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });
});
