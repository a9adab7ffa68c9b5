/**
 * Length and efficiency shaping (SPEC §5.4) against the float64 reference in test/ref/rewards.ts on fresh random
 * groups, plus hand-worked cases (DAPO overlong at the exact buffer edges) and coded errors. Pure JS functions.
 */
import { rewards } from '../lib';
import { refConcise, refGroupAccuracy, refKimiLambda, refKimiReward, refLengthStep, refOverlong } from './ref/rewards';
import { rng } from './helpers';

const TOL = { rtol: 1e-6, atol: 1e-7 };

function randomGroups(label: string, n = 48) {
  const r = rng(label);
  const groupIds = Array.from({ length: n }, () => r.int(6) * 3 + 100);
  const correct = Array.from({ length: n }, () => (r.float() < 0.5 ? 1 : 0));
  // Some equal lengths, so tied groups and zero spreads occur.
  const lengths = Array.from({ length: n }, () => (r.float() < 0.2 ? 512 : r.int(4096)));
  return { r, groupIds, correct, lengths };
}

describe('lengthStep / lengthByDifficulty (LASER, LASER-D)', () => {
  test('hand-worked: target 100, α 0.5, wrong −0.5', () => {
    const got = rewards.lengthStep({ correct: [1, 1, 0, 0], lengths: [100, 101, 50, 500] }, { targetLength: 100, wrongReward: -0.5 });
    expect(Array.from(got.rewards)).toEqual([1.5, 1, -0.5, -0.5]);
    expect(Array.from(got.bonus)).toEqual([1, 0, 0, 0]);
  });

  test('random groups match the reference; buckets by group accuracy', () => {
    const { r, groupIds, correct, lengths } = randomGroups('laser');
    const alpha = r.float();
    const got = rewards.lengthStep({ correct, lengths }, { targetLength: 2000, alpha });
    expect(got.rewards).toMatchReference(correct.map((c, i) => refLengthStep(c, lengths[i], 2000, alpha, 0)), TOL, 'lengthStep');
    const targets = [1000, 2000, 3000];
    const d = rewards.lengthByDifficulty({ correct, lengths, groupIds }, { targets, alpha, wrongReward: -0.5 });
    const accuracy = refGroupAccuracy(correct, groupIds);
    const bucket = accuracy.map((a) => (a >= 2 / 3 ? 0 : a >= 1 / 3 ? 1 : 2));
    expect(Array.from(d.bucket)).toEqual(bucket);
    expect(d.accuracy).toMatchReference(accuracy, TOL, 'accuracy');
    expect(d.rewards).toMatchReference(correct.map((c, i) => refLengthStep(c, lengths[i], targets[bucket[i]], alpha, -0.5)), TOL, 'LASER-D');
  });

  test('negative lengths and bad targets give coded errors', () => {
    expect(() => rewards.lengthStep({ correct: [1], lengths: [-3] }, { targetLength: 10 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.lengths[0]' }));
    expect(() => rewards.lengthStep({ correct: [1], lengths: [2.5] }, { targetLength: 10 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', param: 'inputs.lengths[0]' }));
    expect(() => rewards.lengthStep({ correct: [1, 0], lengths: [3] }, { targetLength: 10 })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'inputs.lengths' }));
    expect(() => rewards.lengthByDifficulty({ correct: [1], lengths: [3] }, { targets: [1, 2] as never })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'opts.targets' }));
    expect(() => rewards.lengthByDifficulty({ correct: [1], lengths: [3] }, { targets: [1, 2, 3], thresholds: [0.2, 0.5] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('kimiLength / groupGatedLength', () => {
  test('hand-worked: lengths 100, 200, 300 in one group; equal lengths give λ = 0', () => {
    const got = rewards.kimiLength({ correct: [1, 0, 0], lengths: [100, 200, 300] });
    expect(got.lambda).toMatchReference([0.5, 0, -0.5], TOL, 'λ');
    expect(got.rewards).toMatchReference([1.5, 0, -0.5], TOL, 'rewards');
    expect(Array.from(rewards.kimiLength({ correct: [1, 0], lengths: [7, 7] }).lambda)).toEqual([0, 0]);
  });

  test('random groups match the reference', () => {
    const { r, groupIds, correct, lengths } = randomGroups('kimi');
    const weight = r.uniform(0.1, 2);
    const lambda = refKimiLambda(lengths, groupIds);
    const got = rewards.kimiLength({ correct, lengths, groupIds }, { weight });
    expect(got.lambda).toMatchReference(lambda, TOL, 'λ');
    expect(got.rewards).toMatchReference(correct.map((c, i) => refKimiReward(c, lambda[i], weight)), TOL, 'kimi');
    const threshold = r.float();
    const accuracy = refGroupAccuracy(correct, groupIds);
    const gated = rewards.groupGatedLength({ correct, lengths, groupIds }, { threshold, weight });
    expect(Array.from(gated.gated)).toEqual(accuracy.map((a) => (a >= threshold ? 1 : 0)));
    expect(gated.rewards).toMatchReference(correct.map((c, i) => (accuracy[i] >= threshold ? refKimiReward(c, lambda[i], weight) : c)), TOL, 'GRPO-λ');
  });

  test('hand-worked GRPO-λ: a group at accuracy 1/2 below threshold 0.6 keeps plain 0/1', () => {
    const got = rewards.groupGatedLength({ correct: [1, 0, 1, 1], lengths: [10, 20, 10, 20], groupIds: [0, 0, 1, 1] }, { threshold: 0.6 });
    expect(Array.from(got.gated)).toEqual([0, 0, 1, 1]);
    expect(got.rewards).toMatchReference([1, 0, 1.5, 0.5], TOL, 'rewards');
  });
});

describe('overlongPenalty (DAPO) / truncationPenalty', () => {
  test('hand-worked: exact buffer edges, L_max 1000, L_buf 200, factor 1', () => {
    const lengths = [0, 799, 800, 801, 900, 999, 1000, 1001, 5000];
    const got = rewards.overlongPenalty({ lengths, scores: lengths.map(() => 1) }, { maxLength: 1000, buffer: 200 });
    expect(got.penalty).toMatchReference([0, 0, 0, -1 / 200, -0.5, -199 / 200, -1, -1, -1], TOL, 'penalty');
    expect(got.rewards).toMatchReference([1, 1, 1, 1 - 1 / 200, 0.5, 1 / 200, 0, 0, 0], TOL, 'rewards');
    // buffer = maxLength: the penalty ramps from length 0.
    expect(rewards.overlongPenalty({ lengths: [0, 5, 10] }, { maxLength: 10, buffer: 10, factor: 2 }).penalty).toMatchReference([0, -1, -2], TOL, 'full buffer');
  });

  test('random lengths match the reference', () => {
    const { r, lengths } = randomGroups('dapo', 200);
    const buffer = 1 + r.int(1024), maxLength = buffer + r.int(3000), factor = r.uniform(0.1, 3);
    const got = rewards.overlongPenalty({ lengths }, { maxLength, buffer, factor });
    expect(got.penalty).toMatchReference(lengths.map((L) => refOverlong(L, maxLength, buffer, factor)), TOL, 'penalty');
  });

  test('hand-worked truncation: coef 0.5 scales, coef −1 replaces; from lengths too', () => {
    expect(Array.from(rewards.truncationPenalty({ scores: [1, 0.8], truncated: [0, 1] }, { coef: 0.5 }).rewards)).toEqual([1, 0.4000000059604645]);
    const fromLengths = rewards.truncationPenalty({ scores: [1, 1, 1], lengths: [10, 99, 100] }, { coef: -1, maxLength: 100 });
    expect(Array.from(fromLengths.rewards)).toEqual([1, 1, -1]);
    expect(Array.from(fromLengths.truncated)).toEqual([0, 0, 1]);
  });

  test('bad input gives coded errors', () => {
    expect(() => rewards.overlongPenalty({ lengths: [1] }, { maxLength: 100, buffer: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.buffer' }));
    expect(() => rewards.overlongPenalty({ lengths: [1] }, { maxLength: 100, buffer: 101 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.buffer' }));
    expect(() => rewards.overlongPenalty({ lengths: [-1] }, { maxLength: 100, buffer: 10 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'inputs.lengths[0]' }));
    expect(() => rewards.truncationPenalty({ scores: [1], truncated: [1] }, { coef: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.coef' }));
    expect(() => rewards.truncationPenalty({ scores: [1], lengths: [3] }, { coef: 0 })).toThrow(expect.objectContaining({ param: 'opts.maxLength' }));
  });
});

describe('conciseWhenCorrect', () => {
  test('hand-worked: two correct answers of 100 and 300 tokens, one wrong', () => {
    const got = rewards.conciseWhenCorrect({ correct: [1, 1, 0], lengths: [100, 300, 10] }, { weight: 0.2 });
    const z = 100 / (Math.sqrt(20000) + 1e-6); // mean 200, unbiased std √20000
    expect(got.bonus).toMatchReference([0.2 * (1 - 1 / (1 + Math.exp(z))), 0.2 * (1 - 1 / (1 + Math.exp(-z))), 0], TOL, 'bonus');
    expect(got.rewards[2]).toBe(0);
    expect(got.bonus[0]).toBeGreaterThan(got.bonus[1]);
  });

  test('random groups match the reference', () => {
    const { r, groupIds, correct, lengths } = randomGroups('concise');
    const weight = r.float();
    expect(rewards.conciseWhenCorrect({ correct, lengths, groupIds }, { weight }).rewards)
      .toMatchReference(refConcise(correct, lengths, groupIds, weight), TOL, 'concise');
  });
});
