/**
 * The trainer presets of policyLoss and klPenalty (SPEC §7), each difference checked on a hand-built batch whose
 * answer follows from the trainer's formula written out here (verl's own vectors are test/policy_loss_verl):
 * TRL's loss types, unclamped ratio and upper-only CISPO; OpenRLHF's KL output clamps and unclamped gspo;
 * verl's always-on dual clip, gmpo mean over all rows and +1e-8 sequence counts. On every backend.
 */
import { policyLossSync, klPenaltySync, type PolicyLossOptions } from '../lib';
import { backendCases } from './helpers';

// precision 'f64' runs the scalar f64 kernels at every SIMD level: js and cpu are the cases.
const BACKENDS = backendCases().filter((c) => !c.simd);

/** A [2, 3] batch: row 0 has tokens 0 and 1 valid, row 1 only token 0; the last row of a [3, 3] batch is empty. */
function batch(rows: number, lp: number[], old: number[], adv: number[], mask: number[]) {
  return {
    logprob: Float64Array.from(lp), oldLogprob: Float64Array.from(old), advantages: Float64Array.from(adv),
    mask: Uint8Array.from(mask), shape: [rows, 3] as [number, number],
  };
}

/** Array values with −0 read as 0 (a clamped gradient is 0·(negative)). */
const values = (a: ArrayLike<number>) => Array.from(a, (v) => v + 0);
const close = (got: number, want: number, tol = 1e-12) => expect(Math.abs(got - want)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(want)));

describe.each(BACKENDS)('policy-loss presets on $label', ({ backend }) => {
  const run = (inputs: ReturnType<typeof batch>, opts: PolicyLossOptions) =>
    policyLossSync(inputs, { ...opts, precision: 'f64', backend });

  test("TRL: lossType 'grpo' averages the per-sequence token means over all B rows, empty ones included", () => {
    // reinforce: ℓ = −A·lp. Row means: row 0 (−1·−0.5 + −1·−1.5)/2 = 1; row 1 −2·−1 = 2; row 2 empty.
    const b = batch(3, [-0.5, -1.5, 0, -1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 3], [1, 1, 0, 1, 0, 0, 0, 0, 0]);
    const trl = run(b, { mode: 'reinforce', preset: 'trl', lossType: 'grpo' });
    close(trl.loss, (-1 * -0.5 + -1 * -1.5) / 2 / 3 * 1 + (2 * 1) / 3);
    const engine = run(b, { mode: 'reinforce', aggregation: 'seq-mean-token-mean' });
    close(engine.loss, ((0.5 + 1.5) / 2 + 2) / 2);
    // ∂/∂lp of row 0's tokens: −A / (|y_0| · B).
    close(trl.gradLogprob[0], -1 / (2 * 3));
  });

  test("TRL: lossType 'dr_grpo' divides the token sum by B·maxCompletionLength, 'bnpo' by the batch's tokens", () => {
    const b = batch(2, [-0.5, -1.5, 0, -1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2], [1, 1, 0, 1, 0, 0]);
    const sum = 0.5 + 1.5 + 2;
    close(run(b, { mode: 'reinforce', preset: 'trl', lossType: 'dr_grpo', maxCompletionLength: 512 }).loss, sum / (2 * 512));
    close(run(b, { mode: 'reinforce', preset: 'trl', lossType: 'bnpo' }).loss, sum / 3);
    // TRL's default loss type is dapo: a token mean (over globalTokens when given).
    close(run(b, { mode: 'reinforce', preset: 'trl' }).loss, sum / 3);
    close(run(b, { mode: 'reinforce', preset: 'trl', globalTokens: 10 }).loss, sum / 10);
  });

  test('TRL: no log-ratio clamp, where the engine clamps δ to ±20', () => {
    // δ = 25, A = 1 > 0, clipHigh 0.2: clipped at 1.2 either way, but ratioMax shows r.
    const b = batch(1, [25, 0, 0], [0, 0, 0], [1], [1, 0, 0]);
    close(run(b, { preset: 'trl' }).metrics.ratioMax, Math.exp(25), 1e-12);
    close(run(b, {}).metrics.ratioMax, Math.exp(20), 1e-12);
    // approxKl on the clamped δ (engine) vs the raw one (TRL).
    close(run(b, {}).metrics.approxKl, -20);
    close(run(b, { preset: 'trl' }).metrics.approxKl, -25);
  });

  test('TRL: cispo caps r from above only, at clipHigh as an absolute bound', () => {
    // r = e^{0.5} ≈ 1.65 → min(r, 5) = r; r = e^{2} ≈ 7.39 → 5; r = e^{−2} ≈ 0.135 stays (no lower bound).
    const b = batch(1, [0.5, 2, -2], [0, 0, 0], [1], [1, 1, 1]);
    const r = run(b, { mode: 'cispo', preset: 'trl', clipHigh: 5 });
    const w = [Math.exp(0.5), 5, Math.exp(-2)];
    close(r.gradLogprob[0], -w[0] / 3);
    close(r.gradLogprob[1], -w[1] / 3);
    close(r.gradLogprob[2], -w[2] / 3);
    // The engine's cispo clips both sides: e^{−2} → 1 − 0.2.
    close(run(b, { mode: 'cispo', clipLow: 0.2, clipHigh: 5 }).gradLogprob[2], -0.8 / 3);
  });

  test('verl: the dual clip is on by default (clip_ratio_c = 3); the engine has it off', () => {
    // A = −1, r = e^{2} ≈ 7.39: ppo gives −A·r = 7.39; the dual clip caps it at −A·3 = 3 with zero gradient.
    const b = batch(1, [2, 0, 0], [0, 0, 0], [-1], [1, 0, 0]);
    const verl = run(b, { preset: 'verl' });
    close(verl.loss, 3);
    expect(verl.gradLogprob[0]).toBe(0);
    expect(verl.metrics.dualClipFraction).toBeCloseTo(1 / (1 + 1e-8), 12);
    close(run(b, {}).loss, Math.exp(2));
  });

  test('verl: seq-mean-token-mean divides each sequence by |y| + 1e-8; gmpo averages over all B rows', () => {
    const b = batch(2, [-0.5, -1.5, 0, -1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2], [1, 1, 0, 1, 0, 0]);
    const verl = run(b, { mode: 'reinforce', preset: 'verl', aggregation: 'seq-mean-token-mean' });
    close(verl.loss, ((0.5 + 1.5) / (2 + 1e-8) + 2 / (1 + 1e-8)) / 2, 1e-15);
    // gmpo with δ = 0 everywhere: ρ = 1, sequence loss −Ā. Rows: Ā_0 = 1, Ā_1 = 2, row 2 empty.
    const g = batch(3, [0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 3], [1, 1, 0, 1, 0, 0, 0, 0, 0]);
    close(run(g, { mode: 'gmpo', preset: 'verl' }).loss, (-(2 / (2 + 1e-8)) - 2 / (1 + 1e-8)) / 3, 1e-15);
    close(run(g, { mode: 'gmpo' }).loss, (-1 - 2) / 2);
  });

  test('OpenRLHF: gspo is not clamped; ppo is', () => {
    // One token per row, δ = 30: engine/OpenRLHF ppo clamp δ to 20; OpenRLHF's gspo does not.
    const b = batch(1, [30, 0, 0], [0, 0, 0], [1], [1, 0, 0]);
    close(run(b, { preset: 'openrlhf' }).metrics.ratioMax, Math.exp(20), 1e-12);
    close(run(b, { mode: 'gspo', preset: 'openrlhf' }).metrics.ratioMax, Math.exp(30), 1e-12);
  });
});

describe.each(BACKENDS)('klPenalty presets on $label', ({ backend }) => {
  const lp = Float64Array.from([0, 15, -15, 0.5]);
  const ref = Float64Array.from([0, 0, 0, 0]);
  const kl = (estimator: 'k1' | 'k2' | 'k3', preset?: 'trl' | 'openrlhf' | 'verl') =>
    klPenaltySync(lp, ref, { estimator, preset, precision: 'f64', backend });

  test('OpenRLHF clamps every estimator to ±10 (gradient 0 where it binds); verl and the engine only k3', () => {
    const o = kl('k1', 'openrlhf');
    expect(values(o.value)).toEqual([0, 10, -10, 0.5]);
    expect(values(o.grad)).toEqual([1, 0, 0, 1]);
    expect(values(kl('k1').value)).toEqual([0, 15, -15, 0.5]);
    const k2 = kl('k2', 'openrlhf');
    expect(values(k2.value)).toEqual([0, 10, 10, 0.125]);
    expect(values(k2.grad)).toEqual([0, 0, 0, 0.5]);
  });

  test('TRL leaves k3 unguarded; the engine, verl and OpenRLHF clamp its value to 10', () => {
    // d = −15: k3 = e^{15} − 1 − 15 unclamped.
    close(kl('k3', 'trl').value[2], Math.exp(15) - 16, 1e-12);
    for (const preset of [undefined, 'verl', 'openrlhf'] as const) {
      expect(kl('k3', preset).value[2]).toBe(10);
      expect(kl('k3', preset).grad[2] + 0).toBe(0);
    }
    // d = 0.5: all agree: e^{−0.5} − 1 + 0.5, gradient 1 − e^{−0.5}.
    for (const preset of [undefined, 'verl', 'trl', 'openrlhf'] as const) {
      close(kl('k3', preset).value[3], Math.exp(-0.5) - 0.5);
      close(kl('k3', preset).grad[3], 1 - Math.exp(-0.5));
    }
  });
});
