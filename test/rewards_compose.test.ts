/**
 * Reward composition and group filters (SPEC §5.6, §5.7) against the float64 reference in test/ref/rewards.ts on
 * fresh random inputs, plus hand-worked cases and coded errors. Pure JS functions.
 */
import { rewards } from '../lib';
import { refLogSigmoid, refSigmoid, refTrustWeighted } from './ref/rewards';
import { rng } from './helpers';

const TOL = { rtol: 1e-6, atol: 1e-7 };

describe('combine', () => {
  test('hand-worked: NaN skipped, process reward gated on the outcome, clip', () => {
    // components [outcome, process, format]; process counts only when outcome ≥ 1.
    const components = [1, 0.6, NaN, 0, 0.9, 1, NaN, NaN, NaN, 1, 0.8, 1];
    const got = rewards.combine(components, {
      weights: [1, 0.5, 0.2], gates: [{ component: 1, on: 0, op: '>=', value: 1 }], clip: [-1, 1.35],
    });
    expect(got.rewards).toMatchReference([1.3, 0.2, 0, 1.35], TOL, 'rewards');
    expect(Array.from(got.counted)).toEqual([2, 2, 0, 3]);
    expect(Array.from(got.clipped)).toEqual([0, 0, 0, 1]);
    expect(got.weighted).toMatchReference([1, 0.3, 0, 0, 0, 0.2, 0, 0, 0, 1, 0.4, 0.2], TOL, 'weighted');
  });

  test('random components with NaNs match a plain weighted nansum', () => {
    const r = rng('combine');
    const rows = 50, k = 4;
    const x = Float64Array.from({ length: rows * k }, () => (r.float() < 0.15 ? NaN : r.normal()));
    const weights = Array.from({ length: k }, () => r.normal());
    const gate = { component: 2, on: 3, op: '>' as const, value: 0 };
    const got = rewards.combine(x, { weights, gates: [gate] });
    const expected = Array.from({ length: rows }, (_, b) => {
      let s = 0;
      for (let j = 0; j < k; j++) {
        const v = x[b * k + j];
        if (Number.isNaN(v) || (j === 2 && !(x[b * k + 3] > 0))) continue;
        s += weights[j] * v;
      }
      return s;
    });
    expect(got.rewards).toMatchReference(expected, { rtol: 1e-6, atol: 1e-6 }, 'combine');
  });

  test('bad input gives coded errors', () => {
    expect(() => rewards.combine([1, 2, 3], { weights: [1, 1] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'components' }));
    expect(() => rewards.combine([1, 2], { weights: [1, 1], gates: [{ component: 2, on: 0, op: '>', value: 0 }] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.gates[0].component' }));
    expect(() => rewards.combine([1, 2], { weights: [1, 1], clip: [1, 0] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.clip' }));
    expect(() => rewards.combine([1, Infinity], { weights: [1, 1] })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE' }));
  });
});

describe('trustWeighted', () => {
  test('hand-worked: one group where correct answers think worse, one all correct', () => {
    // Group 0: correct thinking 0.2, wrong 0.6 → factor exp(−0.4); group 1 all correct → w = 0.
    const got = rewards.trustWeighted(
      { answer: [1, 0, 1, 1], thinking: [0.2, 0.6, 0.5, 0.9], correct: [1, 0, 1, 1], groupIds: [0, 0, 1, 1] }, { step: 0 },
    );
    const w = 0.3 * Math.exp(-0.4);
    expect(got.rewards).toMatchReference([1 + w * 0.2, w * 0.6, 1, 1], TOL, 'rewards');
    expect(got.weight).toMatchReference([w, w, 0, 0], TOL, 'weight');
  });

  test('random groups, T and halfLife forms, match the reference', () => {
    const r = rng('trust');
    const n = 60;
    const answer = Array.from({ length: n }, () => r.float());
    const thinking = Array.from({ length: n }, () => r.float());
    const correct = Array.from({ length: n }, () => (r.float() < 0.5 ? 1 : 0));
    const groupIds = Array.from({ length: n }, () => r.int(8));
    const step = r.int(2000);
    const got = rewards.trustWeighted({ answer, thinking, correct, groupIds }, { step, w0: 0.4, T: 300 });
    expect(got.rewards).toMatchReference(refTrustWeighted(answer, thinking, correct, groupIds, 0.4, 300, step), TOL, 'T');
    const half = rewards.trustWeighted({ answer, thinking, correct, groupIds }, { step, halfLife: 200 });
    expect(half.rewards).toMatchReference(refTrustWeighted(answer, thinking, correct, groupIds, 0.3, 200 / Math.LN2, step), TOL, 'halfLife');
    expect(() => rewards.trustWeighted({ answer, thinking, correct }, { step, T: 1, halfLife: 1 })).toThrow(expect.objectContaining({ param: 'opts.halfLife' }));
  });
});

describe('centred sigmoids, noisy verifier, potential shaping', () => {
  test('log σ and σ of r − r_ref, per property with a [B, K] total', () => {
    const r = rng('sigmoid');
    const x = Float64Array.from({ length: 24 }, () => 30 * r.normal());
    const ref = [0.5, -1, 2];
    const log = rewards.logSigmoidCentered(x, ref, { shape: [8, 3] });
    const expected = Array.from(x, (v, i) => refLogSigmoid(v - ref[i % 3]));
    expect(log.values).toMatchReference(expected, { rtol: 1e-6, atol: 1e-12 }, 'log σ');
    expect(log.total!).toMatchReference(Array.from({ length: 8 }, (_, b) => expected[3 * b] + expected[3 * b + 1] + expected[3 * b + 2]), { rtol: 1e-6, atol: 1e-6 }, 'total');
    expect(rewards.sigmoidCentered(x, 0.25).values).toMatchReference(Array.from(x, (v) => refSigmoid(v - 0.25)), { rtol: 1e-6, atol: 1e-30 }, 'σ');
    expect(rewards.logSigmoidCentered([0], 0).values[0]).toBeCloseTo(Math.log(0.5), 7);
    expect(() => rewards.sigmoidCentered([1, 2], [1, 2, 3])).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'rRef' }));
  });

  test('noisy verifier: hand-worked, and ρ0 + ρ1 ≥ 1 is a coded error', () => {
    const got = rewards.correctNoisyVerifier([0, 1], { falsePositive: 0.1, falseNegative: 0.2 });
    expect(got.rewards).toMatchReference([-0.1 / 0.7, 0.9 / 0.7], TOL, 'corrected');
    expect(() => rewards.correctNoisyVerifier([1], { falsePositive: 0.5, falseNegative: 0.5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.falseNegative' }));
    expect(() => rewards.correctNoisyVerifier([1], { falsePositive: 1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  test('potential shaping: hand-worked with γ = 1 telescopes to Φ_T − Φ_0; random γ, mask and rewards', () => {
    const got = rewards.potentialShaping([0, 1, 3, 6], { shape: [1, 3] });
    expect(Array.from(got.shaping)).toEqual([1, 2, 3]);
    const r = rng('potential');
    const rows = 5, T = 11;
    const phi = Float64Array.from({ length: rows * (T + 1) }, () => r.normal());
    const mask = Uint8Array.from({ length: rows * T }, () => (r.float() < 0.8 ? 1 : 0));
    const base = Float64Array.from({ length: rows * T }, () => r.normal());
    const gamma = r.float();
    const shaped = rewards.potentialShaping(phi, { shape: [rows, T], gamma, mask, rewards: base });
    const expected = Array.from({ length: rows * T }, (_, i) => {
      const b = Math.floor(i / T), t = i % T;
      return mask[i] ? gamma * phi[b * (T + 1) + t + 1] - phi[b * (T + 1) + t] : 0;
    });
    expect(shaped.shaping).toMatchReference(expected, TOL, 'shaping');
    expect(shaped.rewards!).toMatchReference(expected.map((f, i) => f + base[i]), { rtol: 1e-6, atol: 1e-6 }, 'rewards');
    expect(() => rewards.potentialShaping([0, 1, 2], { shape: [1, 3] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'phi' }));
  });
});

describe('groupFilter', () => {
  test('hand-worked: zero-variance and range filters with reasons', () => {
    const r = [1, 1, 0, 1, 0, 0, 0.5];
    const ids = [7, 7, 3, 3, 9, 9, 4];
    const zero = rewards.groupFilter(r, ids);
    expect(Array.from(zero.keep)).toEqual([2, 3]);
    expect(zero.groups.map((g) => [g.id, g.reason])).toEqual([[7, 'zeroVariance'], [3, null], [9, 'zeroVariance'], [4, 'zeroVariance']]);
    expect(zero.fractionKept).toBeCloseTo(2 / 7, 12);
    const range = rewards.groupFilter(r, ids, { drop: 'range', low: 0.2, high: 0.9 });
    expect(range.groups.map((g) => g.reason)).toEqual(['aboveRange', null, 'belowRange', null]);
    expect(Array.from(range.keep)).toEqual([2, 3, 6]);
  });

  test('random groups: kept indices are exactly the members of groups that pass', () => {
    const r = rng('filter');
    const n = 80;
    const values = Array.from({ length: n }, () => (r.float() < 0.5 ? 1 : 0));
    const ids = Array.from({ length: n }, () => r.int(30));
    const got = rewards.groupFilter(values, ids);
    const expected = values.map((_, i) => i).filter((i) => {
      const members = values.filter((_, j) => ids[j] === ids[i]);
      return Math.max(...members) !== Math.min(...members);
    });
    expect(Array.from(got.keep)).toEqual(expected);
    expect(got.fractionKept).toBeCloseTo(expected.length / n, 12);
    expect(() => rewards.groupFilter(values, ids, { low: 0.1 })).toThrow(expect.objectContaining({ param: 'opts.low' }));
    expect(() => rewards.groupFilter(values, ids.slice(1))).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
  });
});
