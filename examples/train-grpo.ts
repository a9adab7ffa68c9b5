/**
 * End to end: a small policy trained with GRPO in Node, every RL signal computed by the engine.
 *
 * Task (contextual sequences): a prompt p ∈ [0, P); the policy writes a completion of T tokens over a
 * vocabulary of V; reward = the fraction of positions t where the token equals a hidden target f(p, t)
 * (a table drawn from the seed). A random policy scores 1/V on average; the optimum is 1.
 *
 * Policy: examples/policy_mlp.ts (prompt and position embeddings → one tanh layer → logits over V), its
 * own backward pass and Adam. One step (GRPO with DAPO's clip-higher and token-mean loss):
 *   1. sample G completions for each of the step's prompts from the current policy (temperature 1);
 *   2. tokenStats         logits [B·T, V] → log-prob of each sampled token (the old log-probs), entropy;
 *   3. advantagesSync     rewards [B] in groups of G → GRPO advantages A_i = (R_i − mean_G) / (std_G + eps);
 *   4. for each PPO epoch and mini-batch of whole groups: recompute its logits, tokenStats again, then
 *      policyLoss         (ppo, clipLow 0.2, clipHigh 0.28, token-mean, entropy bonus, optional k3 KL to the
 *                         initial policy) → loss, ∂loss/∂logprob and ∂loss/∂entropy;
 *      tokenStatsBackward → ∂loss/∂logits;
 *      MLP backward (rows that share (p, t) summed), gradient clipping by global norm, Adam.
 * Everything between the logits and ∂loss/∂logits is the engine's; this file only samples, scores and owns
 * the model.
 *
 *   advantage-engine train-demo                    # 300 steps on the default seed (node dist/lib/cli.js …)
 *   advantage-engine train-demo --steps 60 --backend js --chart docs/train-grpo.svg
 */
import * as fs from 'fs';
import {
  advantagesSync,
  backendInfo,
  policyLossSync,
  tensor,
  tokenStatsBackwardSync,
  tokenStatsSync,
} from '../lib';
import { Sfc32 } from '../lib/prng';
import { PROGRAM, RunError, UsageError, parseFlags } from '../lib/cli_args';
import { Adam, PolicyMlp, l2Norm } from './policy_mlp';
import { trainingChartSvg } from './chart_svg';

export interface TrainConfig {
  /** Number of prompts P. */
  prompts: number;
  /** Completion length T. */
  positions: number;
  /** Vocabulary size V. */
  vocab: number;
  /** Completions per prompt G (the GRPO group). */
  groupSize: number;
  /** Prompts per step, drawn without replacement (B = promptsPerStep·G completions). */
  promptsPerStep: number;
  /** Embedding width D and hidden width H of the policy. */
  embed: number;
  hidden: number;
  steps: number;
  /** Adam learning rate. */
  lr: number;
  /** Passes over each batch (PPO epochs). */
  epochs: number;
  /**
   * Updates per epoch, each on promptsPerStep / miniBatches whole groups (verl's ppo_mini_batch_size).
   * Only the step's first update is on-policy (ratio 1); the later ones are where clipping acts.
   */
  miniBatches: number;
  clipLow: number;
  clipHigh: number;
  /** Coefficient of the k3 KL to the initial policy (0: no reference model, as in DAPO). */
  klCoef: number;
  /** Entropy bonus coefficient (policyLoss's entropyCoef; 0: none). */
  entropyCoef: number;
  /** Gradient clipping by global L2 norm (verl's grad_clip). */
  maxGradNorm: number;
  seed: number;
  /** Engine backend for every call: 'cpu' (native addon), 'js', or 'auto'. */
  backend: 'auto' | 'cpu' | 'js';
}

/**
 * Defaults, chosen by measurement on this task (seeds 1–3, js and cpu): the reward of a completion is
 * shared by its T tokens, so a row's own signal is weak next to what leaks in from the other rows through
 * the shared weights, and without help rows settle early on wrong tokens (entropy collapse). G = 16 samples
 * per prompt and an entropy bonus of 0.08 keep exploring long enough: the 10-step mean reward passed 0.9
 * at steps 130–206. G = 8 with no bonus stalled near 0.5; a bonus of 0.15 or more kept the policy too
 * flat to learn. Four mini-batches per step give four Adam updates per sample batch, three of them
 * off-policy, which is where the clipping acts.
 */
export const DEFAULT_CONFIG: Readonly<TrainConfig> = Object.freeze({
  prompts: 16,
  positions: 16,
  vocab: 64,
  groupSize: 16,
  promptsPerStep: 16,
  embed: 64,
  hidden: 64,
  steps: 300,
  lr: 0.01,
  epochs: 1,
  miniBatches: 4,
  clipLow: 0.2,
  clipHigh: 0.28,
  klCoef: 0,
  entropyCoef: 0.08,
  maxGradNorm: 1,
  seed: 1,
  backend: 'auto',
});

/** What one step logs. */
export interface StepLog {
  step: number;
  /** Mean reward of the step's B completions (sampled before the update). */
  reward: number;
  /** Mean per-token entropy of the sampling policy, nats. */
  entropy: number;
  /** Means over the step's updates of policyLoss's metrics. */
  clipFraction: number;
  approxKl: number;
  loss: number;
  /** Mean over the step's updates of the gradient's global L2 norm before clipping. */
  gradNorm: number;
  /** Milliseconds spent inside engine calls (tokenStats, advantages, policyLoss, tokenStatsBackward). */
  engineMs: number;
  /** Milliseconds of the whole step. */
  stepMs: number;
}

/** The hidden targets f(p, t) and the reward: fraction of positions where the completion hits them. */
export class SequenceTask {
  /** f(p, t) at p·T + t. */
  readonly targets: Int32Array;

  constructor(readonly prompts: number, readonly positions: number, readonly vocab: number, seed: number) {
    const r = new Sfc32(seed);
    this.targets = new Int32Array(prompts * positions);
    for (let k = 0; k < this.targets.length; k++) this.targets[k] = r.int(vocab);
  }

  /** Reward of the completion tokens[from .. from + T) for prompt p, in [0, 1]. */
  reward(p: number, tokens: Int32Array, from: number): number {
    const T = this.positions;
    let hits = 0;
    for (let t = 0; t < T; t++) if (tokens[from + t] === this.targets[p * T + t]) hits++;
    return hits / T;
  }
}

/** Time inside engine calls, summed. */
export class EngineClock {
  ns = 0n;
  time<R>(call: () => R): R {
    const start = process.hrtime.bigint();
    try {
      return call();
    } finally {
      this.ns += process.hrtime.bigint() - start;
    }
  }
}

/**
 * The logits of the step's unique (prompt, position) rows, [k·T, V] float64, written to the engine's batch
 * [B·T, V] f32 where completion b = i·G + g of prompt i takes row i·T + t at position t. The policy's logits
 * depend on (p, t) only, so the G samples of a prompt share one forward row; the engine still sees the
 * whole batch, one row per sampled token, as it would in a trainer.
 */
function expandRows(unique: Float64Array, out: Float32Array, k: number, G: number, T: number, V: number): void {
  for (let i = 0; i < k; i++) {
    const src = unique.subarray(i * T * V, (i + 1) * T * V);
    for (let g = 0; g < G; g++) out.set(src, (i * G + g) * T * V);
  }
}

/** The transpose of expandRows: ∂L/∂(unique row) = Σ over the G completions of ∂L/∂(their row). */
function sumRows(grad: Float32Array, out: Float64Array, k: number, G: number, T: number, V: number): void {
  out.fill(0);
  const rowLen = T * V;
  for (let i = 0; i < k; i++) {
    const dst = i * rowLen;
    for (let g = 0; g < G; g++) {
      const src = (i * G + g) * rowLen;
      for (let e = 0; e < rowLen; e++) out[dst + e] += grad[src + e];
    }
  }
}

/**
 * Draws `count` tokens from softmax(row) for each of the k·T logits rows (f32, what the engine scores), by
 * inverse CDF with one uniform draw each: token of completion b = i·G + g at position t → tokens[b·T + t].
 */
function sampleTokens(logits: Float32Array, tokens: Int32Array, k: number, G: number, T: number, V: number, r: Sfc32): void {
  const cdf = new Float64Array(V);
  for (let i = 0; i < k; i++) {
    for (let t = 0; t < T; t++) {
      const row = ((i * G) * T + t) * V; // the first completion's copy of row (i, t)
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[row + v]);
      let sum = 0;
      for (let v = 0; v < V; v++) {
        sum += Math.exp(logits[row + v] - max);
        cdf[v] = sum;
      }
      for (let g = 0; g < G; g++) {
        const u = r.float() * sum;
        let v = 0;
        while (v < V - 1 && cdf[v] <= u) v++;
        tokens[(i * G + g) * T + t] = v;
      }
    }
  }
}

/** Chooses `k` of `n` prompts without replacement (partial Fisher–Yates), in ascending order. */
export function choosePrompts(n: number, k: number, r: Sfc32): Int32Array {
  const all = Int32Array.from({ length: n }, (_, i) => i);
  if (k === n) return all;
  for (let i = 0; i < k; i++) {
    const j = i + r.int(n - i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, k).sort();
}

export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < values.length; k++) s += values[k];
  return values.length === 0 ? 0 : s / values.length;
}

function checkConfig(c: TrainConfig): void {
  const positiveInts: (keyof TrainConfig)[] = ['prompts', 'positions', 'vocab', 'groupSize', 'promptsPerStep', 'embed', 'hidden', 'epochs', 'miniBatches'];
  for (const name of positiveInts) {
    if (!Number.isInteger(c[name]) || (c[name] as number) < 1) throw new RangeError(`train-grpo: ${name} must be a positive integer, got ${c[name]}`);
  }
  if (!Number.isInteger(c.steps) || c.steps < 0) throw new RangeError(`train-grpo: steps must be an integer ≥ 0, got ${c.steps}`);
  if (c.groupSize < 2) throw new RangeError('train-grpo: groupSize must be ≥ 2 (a group of one has no advantage)');
  if (c.promptsPerStep % c.miniBatches !== 0) {
    throw new RangeError(`train-grpo: promptsPerStep ${c.promptsPerStep} is not a multiple of miniBatches ${c.miniBatches}`);
  }
  if (c.promptsPerStep > c.prompts) throw new RangeError(`train-grpo: promptsPerStep ${c.promptsPerStep} > prompts ${c.prompts}`);
  for (const name of ['lr', 'maxGradNorm'] as const) {
    if (!(c[name] > 0)) throw new RangeError(`train-grpo: ${name} must be > 0, got ${c[name]}`);
  }
  for (const name of ['clipLow', 'clipHigh', 'klCoef', 'entropyCoef'] as const) {
    if (!(c[name] >= 0)) throw new RangeError(`train-grpo: ${name} must be ≥ 0, got ${c[name]}`);
  }
}

/**
 * Trains the policy for `config.steps` GRPO steps (defaults: {@link DEFAULT_CONFIG}) and returns the
 * per-step logs; `onStep` sees each log as it is made. Deterministic for a given config and backend.
 */
export function trainGrpo(config: Partial<TrainConfig> = {}, onStep?: (log: StepLog) => void): StepLog[] {
  const c: TrainConfig = { ...DEFAULT_CONFIG, ...config };
  checkConfig(c);
  const { prompts: P, positions: T, vocab: V, groupSize: G, promptsPerStep: k, backend } = c;
  // Independent streams for the task, the initial weights and the sampling, all from the one seed.
  const seeds = new Sfc32(c.seed);
  const task = new SequenceTask(P, T, V, seeds.uint32());
  const policy = new PolicyMlp({ prompts: P, positions: T, vocab: V, embed: c.embed, hidden: c.hidden }, seeds.uint32());
  const sampler = new Sfc32(seeds.uint32());
  const reference = c.klCoef > 0 ? policy.clone() : null;
  const adam = new Adam(policy.params.length, { lr: c.lr });

  const B = k * G;
  const N = B * T;
  const logits = new Float32Array(N * V);
  const logitsTensor = tensor(logits, [N, V], 'f32');
  const gradLogits = new Float32Array((N / c.miniBatches) * V); // one mini-batch's ∂loss/∂logits
  const gradUnique = new Float64Array((k / c.miniBatches) * T * V);
  const tokens = new Int32Array(N);
  const rewards = new Float32Array(B);
  const mask = new Uint8Array(N).fill(1); // every completion is T tokens long
  const rowPrompt = new Int32Array(k * T);
  const rowPosition = new Int32Array(k * T);
  const outputs = ['logprob', 'entropy', 'logsumexp'] as const;
  const history: StepLog[] = [];

  for (let step = 0; step < c.steps; step++) {
    const stepStart = process.hrtime.bigint();
    const clock = new EngineClock();
    const chosen = choosePrompts(P, k, sampler);
    for (let i = 0; i < k; i++) {
      for (let t = 0; t < T; t++) {
        rowPrompt[i * T + t] = chosen[i];
        rowPosition[i * T + t] = t;
      }
    }

    // 1. Sample G completions per prompt and score them.
    expandRows(policy.forward(rowPrompt, rowPosition), logits, k, G, T, V);
    sampleTokens(logits, tokens, k, G, T, V, sampler);
    for (let b = 0; b < B; b++) rewards[b] = task.reward(chosen[Math.floor(b / G)], tokens, b * T);

    // 2–3. Old log-probs and entropy of the sampling policy; group advantages; reference log-probs.
    const sampled = clock.time(() => tokenStatsSync(logitsTensor, { tokens, outputs: ['logprob', 'entropy'], backend }));
    const oldLogprob = sampled.logprob!;
    const samplingEntropy = mean(sampled.entropy!);
    const { advantages } = clock.time(() => advantagesSync({ rewards, groupSize: G }, { estimator: 'grpo', backend }));
    let refLogprob: Float32Array | undefined;
    if (reference) {
      const refLogits = new Float32Array(N * V);
      expandRows(reference.forward(rowPrompt, rowPosition), refLogits, k, G, T, V);
      refLogprob = clock.time(() => tokenStatsSync(tensor(refLogits, [N, V], 'f32'), { tokens, outputs: ['logprob'], backend })).logprob!;
    }

    // 4. PPO epochs over mini-batches of whole groups: current logits, loss and its gradient from the
    //    engine, the MLP's backward pass, Adam. Every update after the first is off-policy (ratio ≠ 1).
    const updates = c.epochs * c.miniBatches;
    const mbPrompts = k / c.miniBatches;
    const mbRows = mbPrompts * T; // unique (prompt, position) rows of a mini-batch
    const mbSamples = mbPrompts * G;
    const mbTokens = mbSamples * T;
    let clipFraction = 0;
    let approxKl = 0;
    let loss = 0;
    let gradNorm = 0;
    for (let epoch = 0; epoch < c.epochs; epoch++) {
      for (let mb = 0; mb < c.miniBatches; mb++) {
        const rows = [mb * mbRows, (mb + 1) * mbRows] as const;
        const tok = [mb * mbTokens, (mb + 1) * mbTokens] as const;
        const mbLogits = logits.subarray(tok[0] * V, tok[1] * V);
        const mbTensor = tensor(mbLogits, [mbTokens, V], 'f32');
        const mbTokenIds = tokens.subarray(...tok);
        expandRows(policy.forward(rowPrompt.subarray(...rows), rowPosition.subarray(...rows)), mbLogits, mbPrompts, G, T, V);
        const stats = clock.time(() => tokenStatsSync(mbTensor, { tokens: mbTokenIds, outputs, backend }));
        const result = clock.time(() => policyLossSync(
          {
            logprob: stats.logprob!,
            oldLogprob: oldLogprob.subarray(...tok),
            advantages: advantages.subarray(mb * mbSamples, (mb + 1) * mbSamples),
            mask: mask.subarray(...tok),
            shape: [mbSamples, T],
            refLogprob: refLogprob?.subarray(...tok),
            entropy: stats.entropy,
          },
          {
            mode: 'ppo', clipLow: c.clipLow, clipHigh: c.clipHigh, aggregation: 'token-mean',
            klCoef: c.klCoef, entropyCoef: c.entropyCoef, backend,
          },
        ));
        clock.time(() => tokenStatsBackwardSync(mbTensor, {
          tokens: mbTokenIds,
          // Float32Arrays: policyLoss runs at its default precision 'f32'.
          gradLogprob: result.gradLogprob as Float32Array,
          gradEntropy: c.entropyCoef > 0 ? (result.gradEntropy as Float32Array) : undefined,
          logsumexp: stats.logsumexp,
          entropy: stats.entropy,
          out: gradLogits,
          backend,
        }));
        sumRows(gradLogits, gradUnique, mbPrompts, G, T, V);
        policy.backward(gradUnique);
        const norm = l2Norm(policy.grads);
        adam.step(policy.params, policy.grads, norm > c.maxGradNorm ? c.maxGradNorm / norm : 1);
        clipFraction += result.metrics.clipFraction / updates;
        approxKl += result.metrics.approxKl / updates;
        loss += result.loss / updates;
        gradNorm += norm / updates;
      }
    }

    const log: StepLog = {
      step,
      reward: mean(rewards),
      entropy: samplingEntropy,
      clipFraction,
      approxKl,
      loss,
      gradNorm,
      engineMs: Number(clock.ns) / 1e6,
      stepMs: Number(process.hrtime.bigint() - stepStart) / 1e6,
    };
    history.push(log);
    onStep?.(log);
  }
  return history;
}

/** Mean reward over the `window` steps ending at each step (fewer at the start). */
export function trailingMean(history: readonly StepLog[], window = 10): number[] {
  return history.map((_, s) => mean(history.slice(Math.max(0, s - window + 1), s + 1).map((h) => h.reward)));
}

/** The first step whose trailing 10-step mean reward reaches `target`, or null. */
export function stepsToReward(history: readonly StepLog[], target: number, window = 10): number | null {
  const m = trailingMean(history, window);
  const s = m.findIndex((value, i) => i >= window - 1 && value >= target);
  return s < 0 ? null : s;
}

/**
 * A terminal sparkline of values in [lo, hi]: one block character per value, or, for more than `width`
 * values, per run of ⌈n / width⌉ consecutive values (their mean).
 */
export function sparkline(values: readonly number[], lo = 0, hi = 1, width = 60): string {
  const blocks = '▁▂▃▄▅▆▇█';
  const per = Math.max(1, Math.ceil(values.length / width));
  const cells: number[] = [];
  for (let k = 0; k < values.length; k += per) cells.push(mean(values.slice(k, k + per)));
  return cells
    .map((v) => blocks[Math.max(0, Math.min(blocks.length - 1, Math.floor(((v - lo) / (hi - lo)) * blocks.length)))])
    .join('');
}

// ---- command line: `advantage-engine train-demo` ----

export const HELP_TRAIN_DEMO = `Usage: ${PROGRAM} train-demo [options]

Trains a small policy with GRPO, every RL signal from the engine: tokenStats (old log-probs, entropy),
advantages (GRPO groups), policyLoss (ppo, clip-higher 0.2/0.28, token-mean, entropy bonus) and
tokenStatsBackward (the gradient into the logits), feeding a plain TypeScript MLP and Adam
(examples/train-grpo.ts).
Task: prompt p in [0, ${DEFAULT_CONFIG.prompts}), ${DEFAULT_CONFIG.positions} tokens over a vocabulary of ${DEFAULT_CONFIG.vocab}, reward = the fraction of
positions equal to a hidden target f(p, t); a random policy scores 1/${DEFAULT_CONFIG.vocab}.

Options:
  --steps N          training steps (default: ${DEFAULT_CONFIG.steps})
  --seed N           seed of the task, the initial weights and the sampling (default: ${DEFAULT_CONFIG.seed})
  --backend B        engine backend: auto | cpu | js (default: auto)
  --lr X             Adam learning rate (default: ${DEFAULT_CONFIG.lr})
  --group-size N     completions per prompt, G (default: ${DEFAULT_CONFIG.groupSize})
  --epochs N         PPO epochs per batch (default: ${DEFAULT_CONFIG.epochs})
  --mini-batches N   updates per epoch, each on whole groups; divides ${DEFAULT_CONFIG.promptsPerStep} (default: ${DEFAULT_CONFIG.miniBatches})
  --kl-coef X        k3 KL to the initial policy (default: 0, none)
  --entropy-coef X   entropy bonus (default: ${DEFAULT_CONFIG.entropyCoef})
  --every N          print every N-th step (default: 10; 0 prints none)
  --chart FILE       write an SVG chart of reward, entropy and clip fraction against step
  --json             one JSON object per step (StepLog), then a summary object
  -h, --help         this text`;

export function intFlag(value: string | true | undefined, name: string, min: number, command = 'train-demo'): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${command}: invalid --${name} '${value}' (expected an integer ≥ ${min})`);
  return n;
}

export function numberFlag(value: string | true | undefined, name: string, command = 'train-demo'): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new UsageError(`${command}: invalid --${name} '${value}' (expected a number ≥ 0)`);
  return n;
}

export function fixed(x: number, digits: number, width: number): string {
  return x.toFixed(digits).padStart(width);
}

/** The `train-demo` command: returns the exit code (lib/cli.ts maps UsageError to 2, RunError to 1). */
export function runTrainDemo(args: readonly string[]): number {
  const flags = parseFlags('train-demo', args,
    ['steps', 'seed', 'backend', 'lr', 'group-size', 'epochs', 'mini-batches', 'kl-coef', 'entropy-coef', 'every', 'chart'], ['json', 'help']);
  if (flags.has('help')) {
    console.log(HELP_TRAIN_DEMO);
    return 0;
  }
  const backend = flags.get('backend') ?? 'auto';
  if (backend !== 'auto' && backend !== 'cpu' && backend !== 'js') {
    throw new UsageError(`train-demo: invalid --backend '${backend}' (expected one of: auto, cpu, js)`);
  }
  if (backend === 'cpu' && !backendInfo().native.loaded) {
    throw new RunError(`train-demo: the cpu backend is not available (${backendInfo().skipped.cpu ?? 'native addon not loaded'})`);
  }
  const config: TrainConfig = {
    ...DEFAULT_CONFIG,
    backend,
    steps: intFlag(flags.get('steps'), 'steps', 1) ?? DEFAULT_CONFIG.steps,
    seed: intFlag(flags.get('seed'), 'seed', 0) ?? DEFAULT_CONFIG.seed,
    lr: numberFlag(flags.get('lr'), 'lr') ?? DEFAULT_CONFIG.lr,
    groupSize: intFlag(flags.get('group-size'), 'group-size', 2) ?? DEFAULT_CONFIG.groupSize,
    epochs: intFlag(flags.get('epochs'), 'epochs', 1) ?? DEFAULT_CONFIG.epochs,
    miniBatches: intFlag(flags.get('mini-batches'), 'mini-batches', 1) ?? DEFAULT_CONFIG.miniBatches,
    klCoef: numberFlag(flags.get('kl-coef'), 'kl-coef') ?? DEFAULT_CONFIG.klCoef,
    entropyCoef: numberFlag(flags.get('entropy-coef'), 'entropy-coef') ?? DEFAULT_CONFIG.entropyCoef,
  };
  if (!(config.lr > 0)) throw new UsageError(`train-demo: invalid --lr '${flags.get('lr')}' (expected a number > 0)`);
  if (config.seed >= 2 ** 32) throw new UsageError(`train-demo: invalid --seed '${config.seed}' (expected a uint32)`);
  if (config.promptsPerStep % config.miniBatches !== 0) {
    throw new UsageError(`train-demo: invalid --mini-batches '${config.miniBatches}' (expected a divisor of ${config.promptsPerStep})`);
  }
  const every = intFlag(flags.get('every'), 'every', 0) ?? 10;
  const json = flags.has('json');
  const chart = flags.get('chart');

  const info = backendInfo();
  const engineOn = backend === 'auto' ? `auto (${info.active}; inputs below ${info.smallInputThreshold.sync} elements on js)` : backend;
  const { prompts: P, positions: T, vocab: V, groupSize: G, promptsPerStep: k } = config;
  if (!json) {
    console.log(`GRPO on a contextual sequence task: P=${P} prompts, T=${T} tokens, V=${V}, G=${G} (B=${k * G} completions, ${k * G * T} logits rows a step)`);
    console.log(`engine backend: ${engineOn}; ${config.steps} steps, seed ${config.seed}, lr ${config.lr}, ${config.epochs} epoch(s) × ${config.miniBatches} mini-batches, clip ${config.clipLow}/${config.clipHigh}, entropy ${config.entropyCoef}, kl ${config.klCoef}`);
    console.log(`random policy reward: 1/V = ${(1 / V).toFixed(4)}\n`);
    console.log(' step  reward  entropy  clipfrac  approx-kl  grad-norm  engine ms  step ms');
  }
  const started = process.hrtime.bigint();
  const history = trainGrpo(config, (log) => {
    if (json) console.log(JSON.stringify(log));
    else if (every > 0 && (log.step % every === every - 1 || log.step === 0)) {
      console.log(`${fixed(log.step + 1, 0, 5)}  ${fixed(log.reward, 3, 6)}  ${fixed(log.entropy, 3, 7)}  ${fixed(log.clipFraction, 3, 8)}  ${log.approxKl.toExponential(2).padStart(9)}  ${fixed(log.gradNorm, 3, 9)}  ${fixed(log.engineMs, 2, 9)}  ${fixed(log.stepMs, 2, 7)}`);
    }
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const engineMs = history.map((h) => h.engineMs).sort((a, b) => a - b);
  const engineTotal = engineMs.reduce((a, b) => a + b, 0);
  const last10 = mean(history.slice(-10).map((h) => h.reward));
  const reached = stepsToReward(history, 0.9);
  const summary = {
    steps: history.length,
    backend: backend === 'auto' ? `auto:${info.active}` : backend,
    seed: config.seed,
    firstReward: history[0].reward,
    last10Reward: last10,
    stepsTo09: reached === null ? null : reached + 1,
    engineMsPerStepMedian: engineMs[engineMs.length >> 1],
    engineSeconds: engineTotal / 1e3,
    totalSeconds: seconds,
  };
  if (chart !== undefined && chart !== true) {
    fs.writeFileSync(chart, trainingChartSvg(history, { title: `GRPO on the engine's signals: P=${P} T=${T} V=${V} G=${G}, seed ${config.seed}, ${backend === 'auto' ? info.active : backend} backend`, randomReward: 1 / V }));
  }
  if (json) {
    console.log(JSON.stringify(summary));
    return 0;
  }
  const per = Math.ceil(history.length / 60);
  console.log(`\nreward, ${per === 1 ? 'one character a step' : `one character per ${per} steps`} (0 → 1): ${sparkline(history.map((h) => h.reward))}`);
  console.log(`reward: ${summary.firstReward.toFixed(3)} at step 1 → ${last10.toFixed(3)} mean over the last 10 steps` +
    (reached === null ? ` (0.9 not reached in ${history.length} steps)` : `; the 10-step mean reached 0.9 at step ${reached + 1}`));
  console.log(`engine: ${summary.engineMsPerStepMedian.toFixed(2)} ms a step (median), ${summary.engineSeconds.toFixed(2)} s of ${seconds.toFixed(2)} s in all` +
    ` (${((100 * summary.engineSeconds) / seconds).toFixed(0)}%; the rest is the MLP, sampling and Adam in plain JS)`);
  if (chart !== undefined && chart !== true) console.log(`chart: ${chart}`);
  return 0;
}
