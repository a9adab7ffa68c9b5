/**
 * Early-exit and early-rejection rewards (SPEC §5.1, §5.2) against the float64 reference in test/ref/rewards.ts
 * on fresh random inputs, plus hand-worked cases from the formulas and coded errors for bad input.
 * These functions are pure JS (no native path), so there is no backend loop.
 */
import { rewards } from '../lib';
import { flat, refBudget, refOverthink, refReject, refSerialGroup, rowsOf } from './ref/rewards';
import { rng } from './helpers';

/** Outputs are f32 of f64 arithmetic: one f32 rounding of values of order 1. */
const TOL = { rtol: 1e-6, atol: 1e-7 };

function binaryMatrix(r: ReturnType<typeof rng>, n: number, p = 0.5): Uint8Array {
  return Uint8Array.from({ length: n }, () => (r.float() < p ? 1 : 0));
}

describe('serialGroupRewards (S-GRPO)', () => {
  test('hand-worked: exits [wrong, right, right, wrong, right] → [0, 1, 0.5, 0, 0.25]', () => {
    const got = rewards.serialGroupRewards({ correct: [0, 1, 1, 0, 1], shape: [1, 5] });
    expect(Array.from(got.rewards)).toEqual([0, 1, 0.5, 0, 0.25]);
    // mean 1.75 / 5 = 0.35; advantages r − 0.35, no std division by default.
    expect(got.advantages).toMatchReference([-0.35, 0.65, 0.15, -0.35, -0.1], TOL, 'advantages');
    expect(Array.from(got.correctRank)).toEqual([0, 1, 2, 0, 3]);
  });

  test('hand-worked: decay 0.8, std division', () => {
    const got = rewards.serialGroupRewards({ correct: [1, 1], shape: [1, 2] }, { decay: 0.8, scaleByStd: true });
    expect(Array.from(got.rewards)).toEqual([1, Math.fround(0.8)]);
    const std = Math.sqrt(((1 - 0.9) ** 2 + (0.8 - 0.9) ** 2) / 1);
    expect(got.advantages).toMatchReference([0.1 / (std + 1e-6), -0.1 / (std + 1e-6)], TOL, 'advantages');
  });

  test.each([
    { rows: 1, exits: 1 }, { rows: 7, exits: 5 }, { rows: 33, exits: 12 }, { rows: 0, exits: 4 },
  ])('random [$rows, $exits] with exit masks matches the reference', ({ rows, exits }) => {
    const r = rng(`sgrpo ${rows} ${exits}`);
    const correct = binaryMatrix(r, rows * exits);
    const exitMask = binaryMatrix(r, rows * exits, 0.8);
    for (const [decay, scaleByStd] of [[0.5, false], [r.float(), true], [1, false]] as const) {
      const got = rewards.serialGroupRewards({ correct, shape: [rows, exits], exitMask }, { decay, scaleByStd });
      const ref = refSerialGroup(rowsOf(correct, rows, exits), rowsOf(exitMask, rows, exits), decay, scaleByStd);
      expect(got.rewards).toMatchReference(flat(ref.rewards), TOL, 'rewards');
      expect(got.advantages).toMatchReference(flat(ref.advantages), { rtol: 1e-6, atol: 1e-6 }, 'advantages');
    }
  });

  test('bad input gives coded errors', () => {
    expect(() => rewards.serialGroupRewards({ correct: [0, 2], shape: [1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'inputs.correct[1]' }));
    expect(() => rewards.serialGroupRewards({ correct: [0, 1, 1], shape: [1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
    expect(() => rewards.serialGroupRewards({ correct: [0, 1], shape: [1, 2] }, { decay: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.decay' }));
    expect(() => rewards.serialGroupRewards({ correct: [0, 1], shape: [1, 2] }, { decai: 0.5 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.decai' }));
  });
});

describe('budgetRewards (anytime reasoning)', () => {
  test('hand-worked: uniform prior over 3 budgets, two rollouts in one group', () => {
    // scores [0, 1, 1] and [1, 1, 1]; p = 1/3: R = [2/3, 2/3, 1/3] and [1, 2/3, 1/3].
    const got = rewards.budgetRewards({ scores: [0, 1, 1, 1, 1, 1], shape: [2, 3] }, { budgets: [100, 200, 400] });
    expect(got.objective).toMatchReference([2 / 3, 1], TOL, 'J');
    expect(got.returns).toMatchReference([2 / 3, 2 / 3, 1 / 3, 1, 2 / 3, 1 / 3], TOL, 'returns');
    expect(got.baselines).toMatchReference([5 / 6, 2 / 3, 1 / 3, 5 / 6, 2 / 3, 1 / 3], TOL, 'baselines');
    expect(got.advantages).toMatchReference([-1 / 6, 0, 0, 1 / 6, 0, 0], TOL, 'advantages');
  });

  test("'last' prior is the plain final reward; 'linear' weighs ∝ j", () => {
    const last = rewards.budgetRewards({ scores: [0.2, 0.5, 0.9], shape: [1, 3] }, { budgets: [1, 2, 3], prior: 'last' });
    expect(last.objective).toMatchReference([0.9], TOL, 'J last');
    const linear = rewards.budgetRewards({ scores: [0.2, 0.5, 0.9], shape: [1, 3] }, { budgets: [1, 2, 3], prior: 'linear' });
    expect(Array.from(linear.prior)).toEqual([1 / 6, 2 / 6, 3 / 6]);
    expect(linear.objective).toMatchReference([(0.2 + 1.0 + 2.7) / 6], TOL, 'J linear');
  });

  test.each([{ rows: 12, steps: 4, groups: 3 }, { rows: 40, steps: 7, groups: 5 }, { rows: 5, steps: 1, groups: 1 }])(
    'random [$rows, $steps] in $groups groups, custom prior and blend, matches the reference',
    ({ rows, steps, groups }) => {
      const r = rng(`budget ${rows} ${steps}`);
      const scores = Float64Array.from({ length: rows * steps }, () => r.float());
      const groupIds = Array.from({ length: rows }, () => 10 * r.int(groups) - 7);
      const weights = Array.from({ length: steps }, () => r.float() + 0.01);
      const sum = weights.reduce((a, b) => a + b, 0);
      const prior = weights.map((w) => w / sum);
      const budgets = Array.from({ length: steps }, (_, j) => 256 * (j + 1));
      const blend = r.float();
      const got = rewards.budgetRewards({ scores, shape: [rows, steps], groupIds }, { budgets, prior, blend });
      const ref = refBudget(rowsOf(scores, rows, steps), prior, groupIds, blend);
      expect(got.objective).toMatchReference(ref.objective, TOL, 'J');
      expect(got.returns).toMatchReference(flat(ref.returns), TOL, 'returns');
      expect(got.baselines).toMatchReference(flat(ref.baselines), TOL, 'baselines');
      expect(got.advantages).toMatchReference(flat(ref.advantages), { rtol: 1e-6, atol: 1e-6 }, 'advantages');
    },
  );

  test('unsorted budgets and a prior that does not sum to 1 give coded errors', () => {
    const inputs = { scores: [0, 1, 1], shape: [1, 3] as const };
    expect(() => rewards.budgetRewards(inputs, { budgets: [100, 300, 200] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.budgets[2]' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [100, 100, 200] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.budgets[1]' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [0, 1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.budgets[0]' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [1, 2, 3], prior: [0.5, 0.3, 0.3] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.prior' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [1, 2, 3], prior: [1.2, -0.1, -0.1] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.prior[1]' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [1, 2, 3], prior: 'flat' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.prior' }));
    expect(() => rewards.budgetRewards(inputs, { budgets: [1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'opts.budgets' }));
  });
});

describe('firstCorrectIndex / overthinkPenalty', () => {
  test('hand-worked: steps end at 3, 7, 12; correct from step 1 → tokens 8…12 get −penalty', () => {
    const inputs = { stepCorrect: [0, 1, 1], stepEnd: [3, 7, 12], shape: [1, 3] as const, tokens: 16 };
    const { tokens: _T, ...steps } = inputs;
    expect(_T).toBe(16);
    expect(rewards.firstCorrectIndex(steps)).toEqual({ position: Int32Array.of(7), step: Int32Array.of(1) });
    const perToken = rewards.overthinkPenalty(inputs, { penalty: 0.01 });
    const expected = new Array(16).fill(0);
    for (let t = 8; t <= 12; t++) expected[t] = -0.01;
    expect(perToken.rewards).toMatchReference(expected, TOL, 'per token');
    expect(perToken.total).toMatchReference([-0.05], TOL, 'total');
    const perStep = rewards.overthinkPenalty(inputs, { penalty: 0.5, per: 'step' });
    expect(Array.from(perStep.rewards).map((x, t) => [t, x]).filter(([, x]) => x !== 0)).toEqual([[12, -0.5]]);
  });

  test('random rows with step counts and masks match the reference', () => {
    const r = rng('overthink');
    const rows = 20, steps = 6, T = 64;
    const counts = Int32Array.from({ length: rows }, () => r.int(steps + 1));
    const stepEnd = new Int32Array(rows * steps);
    for (let b = 0; b < rows; b++) {
      let at = -1;
      for (let s = 0; s < steps; s++) stepEnd[b * steps + s] = at += 1 + r.int(10);
    }
    const stepCorrect = binaryMatrix(r, rows * steps, 0.3);
    const mask = binaryMatrix(r, rows * T, 0.9);
    for (const per of ['token', 'step'] as const) {
      for (const m of [null, mask]) {
        const got = rewards.overthinkPenalty(
          { stepCorrect, stepEnd, shape: [rows, steps], stepCounts: counts, tokens: T, ...(m ? { mask: m } : {}) }, { penalty: 0.02, per },
        );
        const ref = refOverthink(rowsOf(stepCorrect, rows, steps), rowsOf(stepEnd, rows, steps), Array.from(counts), T, m && rowsOf(m, rows, T), 0.02, per);
        expect(got.rewards).toMatchReference(ref.flatMap((x) => x.rewards), TOL, `${per} rewards`);
        expect(Array.from(got.step)).toEqual(ref.map((x) => x.firstStep));
        expect(Array.from(got.position)).toEqual(ref.map((x) => x.firstPosition));
        expect(got.total).toMatchReference(ref.map((x) => x.rewards.reduce((a, v) => a + v, 0)), { rtol: 1e-6, atol: 1e-6 }, 'total');
      }
    }
  });

  test('a step end beyond T or out of order is a coded error', () => {
    const base = { stepCorrect: [0, 1], shape: [1, 2] as const, tokens: 8 };
    expect(() => rewards.overthinkPenalty({ ...base, stepEnd: [3, 8] }, { penalty: 1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.stepEnd[1]' }));
    expect(() => rewards.overthinkPenalty({ ...base, stepEnd: [5, 5] }, { penalty: 1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'inputs.stepEnd[1]' }));
    expect(() => rewards.overthinkPenalty({ ...base, stepEnd: [1, 5] }, { penalty: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.penalty' }));
  });
});

describe('rejectByPartialReward', () => {
  test('hand-worked: top-2 and threshold 0.3 after 10 tokens', () => {
    const got = rewards.rejectByPartialReward(
      { scores: [0.9, 0.2, 0.5, 0.7, NaN, 0.1], tokens: [12, 12, 12, 12, 12, 4] }, { keepTop: 2, threshold: 0.3, minTokens: 10 },
    );
    expect(got.reasons).toEqual(['kept', 'belowThreshold', 'notTopK', 'kept', 'notScored', 'waiting']);
    expect(Array.from(got.kept)).toEqual([0, 3, 5]);
    expect(Array.from(got.rejected)).toEqual([1, 2, 4]);
    const either = rewards.rejectByPartialReward({ scores: [0.9, 0.2, 0.5] }, { keepTop: 1, threshold: 0.4, mode: 'or' });
    expect(either.reasons).toEqual(['kept', 'belowThreshold', 'kept']);
  });

  test('random candidates match the reference (ties keep the lower index)', () => {
    const r = rng('reject');
    for (let trial = 0; trial < 20; trial++) {
      const n = 1 + r.int(40);
      const scores = Array.from({ length: n }, () => (r.float() < 0.1 ? NaN : Math.round(r.float() * 10) / 10));
      const generated = Array.from({ length: n }, () => r.int(50));
      const keepTop = r.float() < 0.8 ? r.int(n + 2) : null;
      const threshold = keepTop === null || r.float() < 0.5 ? r.float() : null;
      const minTokens = r.int(30);
      const mode = r.pick(['and', 'or'] as const);
      const got = rewards.rejectByPartialReward(
        { scores, tokens: generated }, { ...(keepTop !== null ? { keepTop } : {}), ...(threshold !== null ? { threshold } : {}), minTokens, mode },
      );
      expect(got.reasons).toEqual(refReject(scores, generated, keepTop, threshold, minTokens, mode));
    }
  });

  test('bad input gives coded errors', () => {
    expect(() => rewards.rejectByPartialReward({ scores: [1] }, {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts' }));
    expect(() => rewards.rejectByPartialReward({ scores: [1] }, { threshold: 0, minTokens: 4 })).toThrow(expect.objectContaining({ param: 'inputs.tokens' }));
    expect(() => rewards.rejectByPartialReward({ scores: [1], tokens: [-1] }, { threshold: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.tokens[0]' }));
    expect(() => rewards.rejectByPartialReward({ scores: [Infinity] }, { threshold: 0 })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE' }));
  });
});
