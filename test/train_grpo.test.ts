/**
 * The GRPO training example (examples/train-grpo.ts, examples/policy_mlp.ts): the policy's backward pass
 * against central finite differences (so that a learning failure can only come from the RL signals),
 * Adam's first step against its closed form, the learning claim on the default seed, the js and cpu
 * backends giving the same first steps, and the command's output helpers.
 */
import * as ae from '../lib';
import { Adam, PolicyMlp, type PolicyShape } from '../examples/policy_mlp';
import {
  DEFAULT_CONFIG, SequenceTask, runTrainDemo, sparkline, stepsToReward, trainGrpo, type StepLog,
} from '../examples/train-grpo';
import { trainingChartSvg } from '../examples/chart_svg';
import { UsageError } from '../lib/cli_args';
import { nativeLoaded, rng } from './helpers';

const { abs, max } = Math;

// ---- the policy's backward pass ----

/** Tiny shapes: every parameter's gradient is checked; repeated (p, t) rows exercise the accumulation. */
const MLP_SHAPES: readonly PolicyShape[] = [
  { prompts: 1, positions: 1, vocab: 1, embed: 1, hidden: 1 },
  { prompts: 3, positions: 2, vocab: 5, embed: 4, hidden: 3 },
  { prompts: 2, positions: 4, vocab: 7, embed: 3, hidden: 6 },
];

/** L = Σ g·z for a fixed upstream gradient g, in float64. */
function upstreamLoss(model: PolicyMlp, prompt: Int32Array, position: Int32Array, g: Float64Array): number {
  const z = model.forward(prompt, position);
  let loss = 0;
  for (let k = 0; k < z.length; k++) loss += g[k] * z[k];
  return loss;
}

describe('PolicyMlp backward pass', () => {
  test.each(MLP_SHAPES.map((s) => [JSON.stringify(s), s] as const))('matches central finite differences, %s', (_label, shape) => {
    const r = rng(`policy-mlp-fd ${JSON.stringify(shape)}`);
    // outScale 1: a non-trivial W2, so that the gradients into W1 and the embeddings are not ~0.
    const model = new PolicyMlp(shape, r.uint32(), 1);
    for (let k = 0; k < model.params.length; k++) model.params[k] += 0.3 * r.normal(); // biases too
    const rows = 2 * shape.prompts * shape.positions + 1;
    const prompt = Int32Array.from({ length: rows }, () => r.int(shape.prompts));
    const position = Int32Array.from({ length: rows }, () => r.int(shape.positions));
    const g = Float64Array.from({ length: rows * shape.vocab }, () => r.normal());

    upstreamLoss(model, prompt, position, g);
    model.backward(g);
    const analytic = Float64Array.from(model.grads);
    // Central differences in float64: truncation O(h²) ≈ 1e-12, rounding ≈ 1e-16·|L|/h ≈ 1e-10.
    const h = 1e-5;
    for (let k = 0; k < model.params.length; k++) {
      const saved = model.params[k];
      model.params[k] = saved + h;
      const plus = upstreamLoss(model, prompt, position, g);
      model.params[k] = saved - h;
      const minus = upstreamLoss(model, prompt, position, g);
      model.params[k] = saved;
      const numeric = (plus - minus) / (2 * h);
      const tol = 1e-6 * max(1, abs(numeric));
      if (abs(analytic[k] - numeric) > tol) {
        throw new Error(`parameter ${k}: backward ${analytic[k]}, finite differences ${numeric} (tolerance ${tol})`);
      }
    }
  });

  test('a row whose upstream gradient is zero contributes nothing (rows are independent)', () => {
    const r = rng('policy-mlp-rows');
    const shape = { prompts: 3, positions: 3, vocab: 4, embed: 3, hidden: 5 };
    const model = new PolicyMlp(shape, r.uint32(), 1);
    const prompt = Int32Array.of(0, 1, 2);
    const position = Int32Array.of(2, 0, 1);
    const g = Float64Array.from({ length: 3 * shape.vocab }, () => r.normal());
    model.forward(prompt, position);
    model.backward(g);
    const all = Float64Array.from(model.grads);
    // The same rows with the last two gradients zeroed, and the first row alone: equal gradients.
    g.fill(0, shape.vocab);
    model.forward(prompt, position);
    model.backward(g);
    const firstOfThree = Float64Array.from(model.grads);
    model.forward(prompt.subarray(0, 1), position.subarray(0, 1));
    model.backward(g.subarray(0, shape.vocab));
    expect(Array.from(model.grads)).toEqual(Array.from(firstOfThree));
    expect(Array.from(all)).not.toEqual(Array.from(firstOfThree));
  });

  test('rejects rows outside the table and gradients of the wrong length', () => {
    const model = new PolicyMlp({ prompts: 2, positions: 2, vocab: 3, embed: 2, hidden: 2 }, 1);
    expect(() => model.forward(Int32Array.of(2), Int32Array.of(0))).toThrow(RangeError);
    expect(() => model.forward(Int32Array.of(0), Int32Array.of(-1))).toThrow(RangeError);
    expect(() => model.forward(Int32Array.of(0, 1), Int32Array.of(0))).toThrow(RangeError);
    model.forward(Int32Array.of(0), Int32Array.of(1));
    expect(() => model.backward(new Float64Array(2))).toThrow(RangeError);
  });
});

describe('Adam', () => {
  test('first step: params − lr·g/(|g| + eps) (bias-corrected m̂ = g, v̂ = g²), gradient scale applied', () => {
    const r = rng('adam');
    const n = 16;
    const params = Float64Array.from({ length: n }, () => r.normal());
    const grads = Float64Array.from({ length: n }, () => r.normal());
    const start = Float64Array.from(params);
    const lr = 0.05;
    const eps = 1e-8;
    new Adam(n, { lr, eps }).step(params, grads, 0.5);
    for (let k = 0; k < n; k++) {
      const g = 0.5 * grads[k];
      expect(params[k]).toBeCloseTo(start[k] - (lr * g) / (abs(g) + eps), 12);
    }
  });

  test('second step with the same gradient moves by lr again (m̂ = g, v̂ = g²)', () => {
    const params = Float64Array.of(1, -2);
    const grads = Float64Array.of(0.3, -4);
    const adam = new Adam(2, { lr: 0.1, eps: 0 });
    adam.step(params, grads);
    adam.step(params, grads);
    expect(params[0]).toBeCloseTo(1 - 0.2, 12);
    expect(params[1]).toBeCloseTo(-2 + 0.2, 12);
  });
});

// ---- the task ----

describe('SequenceTask', () => {
  test('reward is the fraction of positions equal to the hidden target', () => {
    const task = new SequenceTask(2, 4, 8, 7);
    const tokens = new Int32Array(12);
    tokens.set(task.targets.subarray(4, 8), 4); // completion 1 (prompt 1) right everywhere
    tokens[5] = (tokens[5] + 1) % 8; // … except position 1
    expect(task.reward(1, tokens, 4)).toBe(3 / 4);
    for (let t = 0; t < 4; t++) tokens[8 + t] = (task.targets[t] + 1) % 8; // prompt 0, all wrong
    expect(task.reward(0, tokens, 8)).toBe(0);
    expect(Array.from(task.targets).every((v) => v >= 0 && v < 8)).toBe(true);
  });
});

// ---- training ----

/** The fields of a step log that do not depend on timing. */
function curve(history: readonly StepLog[]): Omit<StepLog, 'engineMs' | 'stepMs'>[] {
  return history.map(({ engineMs: _e, stepMs: _s, ...rest }) => rest);
}

describe('trainGrpo', () => {
  const V = DEFAULT_CONFIG.vocab;

  test(`40 steps on the default seed reach a mean reward ≥ 5× the random policy's 1/V`, () => {
    const history = trainGrpo({ steps: 40 });
    const first = history[0].reward;
    const last10 = history.slice(-10).reduce((a, h) => a + h.reward, 0) / 10;
    console.log(`train_grpo: reward ${first.toFixed(4)} at step 1 (1/V = ${(1 / V).toFixed(4)}), ${last10.toFixed(4)} over steps 31–40`);
    // The initial policy is near uniform: step 1 scores 1/V within binomial noise of B·T draws (5σ).
    const draws = DEFAULT_CONFIG.promptsPerStep * DEFAULT_CONFIG.groupSize * DEFAULT_CONFIG.positions;
    expect(abs(first - 1 / V)).toBeLessThan(5 * Math.sqrt((1 / V) * (1 - 1 / V) / draws));
    expect(last10).toBeGreaterThanOrEqual(5 / V);
    for (const h of history) {
      for (const value of Object.values(h)) expect(Number.isFinite(value)).toBe(true);
      expect(h.clipFraction).toBeGreaterThanOrEqual(0);
      expect(h.clipFraction).toBeLessThanOrEqual(1);
      expect(h.entropy).toBeLessThanOrEqual(Math.log(V) + 1e-5);
    }
    expect(history[history.length - 1].entropy).toBeLessThan(history[0].entropy);
  });

  test('the same seed and backend give the same curve (deterministic)', () => {
    const a = trainGrpo({ steps: 5, seed: 11, backend: 'js' });
    const b = trainGrpo({ steps: 5, seed: 11, backend: 'js' });
    expect(curve(a)).toEqual(curve(b));
    expect(curve(trainGrpo({ steps: 5, seed: 12, backend: 'js' }))).not.toEqual(curve(a));
  });

  (nativeLoaded() ? test : test.skip)('js and cpu give the same first 10 steps within float noise', () => {
    const js = curve(trainGrpo({ steps: 10, backend: 'js' }));
    const cpu = curve(trainGrpo({ steps: 10, backend: 'cpu' }));
    for (let s = 0; s < 10; s++) {
      // Same sampled tokens: both backends' f32 gradients differ by rounding only, far below what moves
      // an inverse-CDF draw across a token boundary on this seed.
      expect(cpu[s].reward).toBe(js[s].reward);
      for (const key of ['entropy', 'clipFraction', 'approxKl', 'loss', 'gradNorm'] as const) {
        const tol = 1e-5 * max(abs(js[s][key]), 1e-2);
        if (abs(cpu[s][key] - js[s][key]) > tol) {
          throw new Error(`step ${s + 1} ${key}: js ${js[s][key]}, cpu ${cpu[s][key]} (tolerance ${tol})`);
        }
      }
    }
  });

  test('rejects a bad configuration before training', () => {
    expect(() => trainGrpo({ groupSize: 1 })).toThrow(RangeError);
    expect(() => trainGrpo({ promptsPerStep: 17 })).toThrow(RangeError);
    expect(() => trainGrpo({ lr: 0 })).toThrow(RangeError);
    expect(() => trainGrpo({ backend: 'gpu' as 'js', steps: 1 })).toThrow(ae.EngineError);
  });
});

// ---- output helpers and the command ----

describe('train-demo output', () => {
  const log = (step: number, reward: number): StepLog => ({
    step, reward, entropy: 4 - step, clipFraction: step / 100, approxKl: 0, loss: 0, gradNorm: 1, engineMs: 1, stepMs: 2,
  });

  test('sparkline maps [0, 1] onto eight blocks', () => {
    expect(sparkline([0, 0.124, 0.125, 0.5, 0.99, 1])).toBe('▁▁▂▅██');
    expect(sparkline([-1, 2])).toBe('▁█');
  });

  test('stepsToReward is the first step whose trailing 10-step mean reaches the target', () => {
    const history = Array.from({ length: 30 }, (_, s) => log(s, s < 15 ? 0 : 1));
    // Steps 15.. score 1: the mean over steps s−9..s reaches 0.9 when nine of the ten are 1, at s = 23.
    expect(stepsToReward(history, 0.9)).toBe(23);
    expect(stepsToReward(history.slice(0, 20), 0.9)).toBeNull();
  });

  test('the SVG chart has one polyline point per step in each panel', () => {
    const history = Array.from({ length: 25 }, (_, s) => log(s, s / 25));
    const svg = trainingChartSvg(history, { title: 'a < b & c', randomReward: 1 / 64 });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('a &lt; b &amp; c');
    const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1].split(' '));
    expect(lines.length).toBe(4); // reward, its 10-step mean, entropy, clip fraction
    for (const points of lines) expect(points.length).toBe(25);
    expect(trainingChartSvg(history, { title: 't', randomReward: 0.1 })).toBe(trainingChartSvg(history, { title: 't', randomReward: 0.1 }));
  });

  test('bad flags are usage errors', () => {
    expect(() => runTrainDemo(['--backend', 'gpu'])).toThrow(UsageError);
    expect(() => runTrainDemo(['--steps', '0'])).toThrow(UsageError);
    expect(() => runTrainDemo(['--lr', 'fast'])).toThrow(UsageError);
    expect(() => runTrainDemo(['--nope'])).toThrow(UsageError);
  });
});
