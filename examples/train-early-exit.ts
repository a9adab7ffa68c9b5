/**
 * Early exit, trained: a small policy learns to stop thinking once its thoughts agree, at equal accuracy
 * (issue 8 part 3; SPEC §5.1 serialGroupRewards and §5.4 kimiLength for the reward, §6 createExitMonitor for
 * the sampling). The model, the optimiser and the RL step are those of examples/train-grpo.ts.
 *
 * Task: a prompt p ∈ [0, P) has a hidden answer f(p) ∈ [0, A) (a seeded table). A completion is
 *   thoughts x_1 … x_L (each names a candidate answer, x ∈ [0, A)), the forced </think>, one answer token y;
 * it is correct when y = f(p). The answer is read from the thinking, not from the prompt: the answer head sees
 * only the thinking's state s = (vote, margin) — vote = the candidate named most often so far (ties keep the
 * earlier leader), margin = its count minus the runner-up's. So thinking is how the policy gets to the answer,
 * and more of it helps exactly while the thoughts are noisy: a vote of many noisy thoughts is more often right
 * than a vote of few (self-consistency inside one chain).
 *
 * Policy: one PolicyMlp (examples/policy_mlp.ts) over V = A tokens with two kinds of rows:
 *   thinking row  (p, t)              → the distribution of thought t + 1 of prompt p, t ∈ [0, budget)
 *   answer row    (P + vote, margin)  → the answer it would give if it stopped now, margin ∈ [0, budget]
 * Start (warm start, supervised, also through the engine): a slow reasoner. Thoughts name f(p) with
 * probability q (default 0.3, the rest spread evenly) and the answer head is calibrated — its max-prob at
 * margin m is the chance that the vote at margin m is right — so it needs a long chain to be sure.
 *
 * Sampling, driven by the exit monitor: after each thought the monitor is pushed the answer rows of the live
 * completions (the "if I stopped now" probe, as in confidence-based early exit) and exits a completion when
 * the probe's max-prob exceeds `exitThreshold` (maxProbAbove), or at `budget` thoughts (budget rule). A probe
 * answer is sampled at every step; the one at the exit is the completion's answer.
 *
 * Reward ('sgrpo', default): the exits of one completion form S-GRPO's serial group (arXiv:2505.07686): probe
 * e is exit e, correct or not; serialGroupRewards gives the k-th correct exit decay^(k−1), wrong exits 0, and
 * advantages r − mean over the completion's exits, which train the probe answers (earlier correct answers
 * gain). The thoughts and the final answer also get GRPO advantages over the G completions of a prompt of each
 * completion's serial-group mean reward (a chain that is right sooner and exits sooner scores higher).
 * Reward ('length'): the answer's correctness shaped by kimiLength (Kimi k1.5: + w·λ within the group,
 * λ = 0.5 − (L − L_min)/(L_max − L_min)); GRPO advantages train the thoughts and the final answer.
 * ('outcome': correctness alone, the control that shows what the shaping adds.)
 *
 * Each step: tokenStats (old log-probs, entropy) → advantages → per mini-batch of whole groups tokenStats,
 * policyLoss (ppo, clip-higher, token-mean, token-level advantages) and tokenStatsBackward → the MLP's
 * backward pass → Adam. Thinking length falls because the thoughts sharpen on f(p) (the vote's margin grows
 * faster) and the answer head grows confident at smaller margins where the vote is right; accuracy holds
 * because the monitor only exits where the answer head is confident.
 *
 *   advantage-engine train-early-exit                         # 200 steps on the default seed
 *   advantage-engine train-early-exit --shaping length --chart docs/train-early-exit.svg
 */
import * as fs from 'fs';
import {
  advantagesSync,
  backendInfo,
  createExitMonitor,
  policyLossSync,
  rewards as rewardFns,
  tensor,
  tokenStatsBackwardSync,
  tokenStatsSync,
} from '../lib';
import { Sfc32 } from '../lib/prng';
import { PROGRAM, RunError, UsageError, parseFlags } from '../lib/cli_args';
import { Adam, PolicyMlp, l2Norm } from './policy_mlp';
import { EngineClock, choosePrompts, fixed, intFlag, mean, numberFlag, sparkline } from './train-grpo';
import { chartSvg, trailing } from './chart_svg';

/**
 * Adam learning rate of the warm start: 100 full-batch steps at 0.03 fit the targets to a mean KL of 0.005
 * nats (300 steps at 0.01: 0.003), a start indistinguishable in thinking length and accuracy.
 */
const WARM_LR = 0.03;

export type Shaping = 'sgrpo' | 'length' | 'outcome';

export interface EarlyExitConfig {
  /** Number of prompts P. */
  prompts: number;
  /** Candidate answers A: the vocabulary of thoughts and answers (V = A). */
  answers: number;
  /** Most thoughts a completion may have (the monitor's budget rule). */
  budget: number;
  /** Completions per prompt G (the parallel group). */
  groupSize: number;
  /** Prompts per step, drawn without replacement (B = promptsPerStep·G completions). */
  promptsPerStep: number;
  /** Embedding width D and hidden width H of the policy. */
  embed: number;
  hidden: number;
  steps: number;
  /** Adam learning rate of the RL steps. */
  lr: number;
  /** Updates per step, each on promptsPerStep / miniBatches whole groups. */
  miniBatches: number;
  clipLow: number;
  clipHigh: number;
  entropyCoef: number;
  /** Gradient clipping by global L2 norm. */
  maxGradNorm: number;
  /** 'sgrpo': serialGroupRewards over each completion's exits; 'length': correctness + kimiLength. */
  shaping: Shaping;
  /** S-GRPO decay of the k-th correct exit's reward, decay^(k−1). */
  decay: number;
  /** kimiLength weight w. */
  lengthWeight: number;
  /** The monitor exits when the answer probe's max-prob exceeds this (maxProbAbove). */
  exitThreshold: number;
  /** Warm start: probability q that a thought names the right answer. */
  thoughtAccuracy: number;
  /** Warm start: full-batch Adam steps of the supervised fit. */
  warmSteps: number;
  seed: number;
  /** Engine backend for every call: 'cpu' (native addon), 'js', or 'auto'. */
  backend: 'auto' | 'cpu' | 'js';
}

/**
 * Defaults, chosen by measurement (seeds 1–5, js and cpu): the warm start needs most of its 16-thought budget
 * (about 11.5 thoughts over the first 10 steps, accuracy ≈ 0.6); 200 steps take 3–5 s on 2 cores. lr 0.003
 * shortened thinking within 10 steps (too fast to see on a chart); hidden width 16 learned less (last-10
 * accuracy 0.57–0.69 at step 60 against 0.76–0.93 with 32).
 */
export const EARLY_EXIT_DEFAULTS: Readonly<EarlyExitConfig> = Object.freeze({
  prompts: 16,
  answers: 8,
  budget: 16,
  groupSize: 8,
  promptsPerStep: 16,
  embed: 32,
  hidden: 32,
  steps: 200,
  lr: 0.001,
  miniBatches: 2,
  clipLow: 0.2,
  clipHigh: 0.28,
  entropyCoef: 0,
  maxGradNorm: 1,
  shaping: 'sgrpo',
  decay: 0.5,
  lengthWeight: 1,
  exitThreshold: 0.8,
  thoughtAccuracy: 0.3,
  warmSteps: 100,
  seed: 1,
  backend: 'auto',
});

/** What one step logs. */
export interface EarlyExitLog {
  step: number;
  /** Fraction of the step's B completions whose answer is right. */
  accuracy: number;
  /** Mean thoughts per completion (its thinking length L). */
  thinking: number;
  /** Fraction of completions the monitor exited on confidence (the rest hit the budget). */
  confidentExits: number;
  /** Mean shaped reward of the completions (S-GRPO: the serial-group mean; length: c + w·λ). */
  reward: number;
  /** Mean entropy of the sampled thoughts, nats. */
  entropy: number;
  /** Means over the step's updates of policyLoss's metrics and of the gradient norm before clipping. */
  clipFraction: number;
  approxKl: number;
  gradNorm: number;
  /** Milliseconds inside engine calls (tokenStats, the monitor, rewards, advantages, policyLoss, backward). */
  engineMs: number;
  stepMs: number;
}

/** The hidden answers f(p) and the thinking state (vote, margin) of a chain of thoughts. */
export class AnswerTask {
  readonly answer: Int32Array;

  constructor(readonly prompts: number, readonly answers: number, seed: number) {
    const r = new Sfc32(seed);
    this.answer = Int32Array.from({ length: prompts }, () => r.int(answers));
  }
}

/**
 * Running vote over a chain's thoughts: `add` one thought, then `vote` (the candidate named most often; a tie
 * keeps the earlier leader) and `margin` (its count minus the runner-up's, 0 on a tie).
 */
export class ThoughtVote {
  private readonly counts: Int32Array;
  vote = -1;
  margin = 0;

  constructor(readonly answers: number) {
    this.counts = new Int32Array(answers);
  }

  add(thought: number): void {
    const c = this.counts;
    c[thought]++;
    if (this.vote < 0 || c[thought] > c[this.vote]) this.vote = thought;
    let second = 0;
    for (let a = 0; a < this.answers; a++) if (a !== this.vote && c[a] > second) second = c[a];
    this.margin = c[this.vote] - second;
  }
}

/** Inverse-CDF draw from softmax(logits[from .. from + V)) with one uniform. */
function sampleRow(logits: Float32Array, from: number, V: number, r: Sfc32): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[from + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[from + v] - max);
  const u = r.float() * sum;
  let acc = 0;
  for (let v = 0; v < V - 1; v++) {
    acc += Math.exp(logits[from + v] - max);
    if (u < acc) return v;
  }
  return V - 1;
}

/**
 * The calibrated answer head of the warm start: c[m] = P(vote is right | margin m) for chains whose thoughts
 * name the answer with probability q (the others equally likely), over every prefix length 1 … budget (Monte
 * Carlo, `chains` chains), made non-decreasing in m: a wider margin is never weaker evidence.
 */
export function voteAccuracyByMargin(answers: number, budget: number, q: number, chains: number, seed: number): Float64Array {
  const r = new Sfc32(seed);
  const hits = new Float64Array(budget + 1);
  const seen = new Float64Array(budget + 1);
  for (let n = 0; n < chains; n++) {
    const vote = new ThoughtVote(answers);
    for (let t = 0; t < budget; t++) {
      // Answer 0 stands for f(p): by symmetry the accuracy does not depend on which answer is right.
      vote.add(r.float() < q ? 0 : 1 + r.int(answers - 1));
      seen[vote.margin]++;
      if (vote.vote === 0) hits[vote.margin]++;
    }
  }
  // A margin never seen takes the value below it (1/A, a guess, for margin 0).
  const c = new Float64Array(budget + 1);
  for (let m = 0; m <= budget; m++) {
    const below = m > 0 ? c[m - 1] : 1 / answers;
    c[m] = seen[m] > 0 ? Math.max(below, hits[m] / seen[m]) : below;
  }
  return c;
}

/**
 * Supervised warm start through the engine: minimises the cross-entropy Σ_rows Σ_a −target[a]·log π(a) / rows
 * by full-batch Adam. Each (row, a) pair is one engine row scoring token a with ∂L/∂logprob = −target[a]/rows,
 * so tokenStatsBackward returns (softmax − target)/rows summed over a row's copies. Returns the final mean KL
 * from the targets to the policy, nats.
 */
function warmStart(
  policy: PolicyMlp, rowPrompt: Int32Array, rowPosition: Int32Array, targets: Float64Array, c: EarlyExitConfig, clock: EngineClock,
): number {
  const A = c.answers;
  const rows = rowPrompt.length;
  const adam = new Adam(policy.params.length, { lr: WARM_LR });
  const logits = new Float32Array(rows * A * A);
  const tokens = Int32Array.from({ length: rows * A }, (_, i) => i % A);
  const gradLogprob = Float32Array.from({ length: rows * A }, (_, i) => -targets[i] / rows);
  const grad = new Float32Array(rows * A * A);
  const gradRows = new Float64Array(rows * A);
  const expand = (z: Float64Array) => {
    for (let i = 0; i < rows; i++) for (let a = 0; a < A; a++) for (let v = 0; v < A; v++) logits[(i * A + a) * A + v] = z[i * A + v];
  };
  const logitsTensor = tensor(logits, [rows * A, A], 'f32');
  for (let s = 0; s < c.warmSteps; s++) {
    expand(policy.forward(rowPrompt, rowPosition));
    clock.time(() => tokenStatsBackwardSync(logitsTensor, { tokens, gradLogprob, out: grad, backend: c.backend }));
    gradRows.fill(0);
    for (let i = 0; i < rows * A; i++) for (let v = 0; v < A; v++) gradRows[Math.floor(i / A) * A + v] += grad[i * A + v];
    policy.backward(gradRows);
    adam.step(policy.params, policy.grads);
  }
  expand(policy.forward(rowPrompt, rowPosition));
  const { logprob } = clock.time(() => tokenStatsSync(logitsTensor, { tokens, outputs: ['logprob'], backend: c.backend }));
  let kl = 0;
  for (let i = 0; i < rows * A; i++) if (targets[i] > 0) kl += targets[i] * (Math.log(targets[i]) - logprob![i]);
  return kl / rows;
}

/** The policy's logits of the rows at `slots` (row i = (prompt[i], position[i])), written to out[i·V …]. */
function forwardSlots(policy: PolicyMlp, slots: Int32Array, prompt: Int32Array, position: Int32Array, out: Float32Array, V: number): void {
  const z = policy.forward(Int32Array.from(slots, (i) => prompt[i]), Int32Array.from(slots, (i) => position[i]));
  slots.forEach((i, j) => out.set(z.subarray(j * V, (j + 1) * V), i * V));
}

function checkConfig(c: EarlyExitConfig): void {
  const positiveInts: (keyof EarlyExitConfig)[] = ['prompts', 'answers', 'budget', 'groupSize', 'promptsPerStep', 'embed', 'hidden', 'miniBatches'];
  for (const name of positiveInts) {
    if (!Number.isInteger(c[name]) || (c[name] as number) < 1) throw new RangeError(`train-early-exit: ${name} must be a positive integer, got ${c[name]}`);
  }
  for (const name of ['steps', 'warmSteps'] as const) {
    if (!Number.isInteger(c[name]) || c[name] < 0) throw new RangeError(`train-early-exit: ${name} must be an integer ≥ 0, got ${c[name]}`);
  }
  if (c.answers < 2) throw new RangeError('train-early-exit: answers must be ≥ 2');
  if (c.groupSize < 2) throw new RangeError('train-early-exit: groupSize must be ≥ 2 (a group of one has no advantage)');
  if (c.promptsPerStep > c.prompts) throw new RangeError(`train-early-exit: promptsPerStep ${c.promptsPerStep} > prompts ${c.prompts}`);
  if (c.promptsPerStep % c.miniBatches !== 0) {
    throw new RangeError(`train-early-exit: promptsPerStep ${c.promptsPerStep} is not a multiple of miniBatches ${c.miniBatches}`);
  }
  if (!['sgrpo', 'length', 'outcome'].includes(c.shaping)) throw new RangeError(`train-early-exit: shaping must be 'sgrpo', 'length' or 'outcome', got ${c.shaping}`);
  for (const name of ['lr', 'maxGradNorm'] as const) if (!(c[name] > 0)) throw new RangeError(`train-early-exit: ${name} must be > 0, got ${c[name]}`);
  for (const name of ['clipLow', 'clipHigh', 'entropyCoef', 'lengthWeight'] as const) {
    if (!(c[name] >= 0)) throw new RangeError(`train-early-exit: ${name} must be ≥ 0, got ${c[name]}`);
  }
  for (const name of ['decay', 'exitThreshold', 'thoughtAccuracy'] as const) {
    if (!(c[name] >= 0 && c[name] <= 1)) throw new RangeError(`train-early-exit: ${name} must be in [0, 1], got ${c[name]}`);
  }
}

/**
 * Warm-starts the slow reasoner, then trains it for `config.steps` RL steps (defaults:
 * {@link EARLY_EXIT_DEFAULTS}); returns the per-step logs, `onStep` sees each as it is made. Deterministic for
 * a given config and backend.
 */
export function trainEarlyExit(config: Partial<EarlyExitConfig> = {}, onStep?: (log: EarlyExitLog) => void): EarlyExitLog[] {
  const c: EarlyExitConfig = { ...EARLY_EXIT_DEFAULTS, ...config };
  checkConfig(c);
  const { prompts: P, answers: A, budget: T, groupSize: G, promptsPerStep: k, backend } = c;
  const seeds = new Sfc32(c.seed);
  const task = new AnswerTask(P, A, seeds.uint32());
  const policy = new PolicyMlp({ prompts: P + A, positions: T + 1, vocab: A, embed: c.embed, hidden: c.hidden }, seeds.uint32());
  const sampler = new Sfc32(seeds.uint32());

  // Warm start: every thinking row (p, t) and every answer row (P + v, m) fitted to its target distribution.
  const voteAccuracy = voteAccuracyByMargin(A, T, c.thoughtAccuracy, 4000, seeds.uint32());
  const warmRows = P * T + A * (T + 1);
  const warmPrompt = new Int32Array(warmRows);
  const warmPosition = new Int32Array(warmRows);
  const targets = new Float64Array(warmRows * A);
  let row = 0;
  const target = (right: number, p: number) => {
    for (let a = 0; a < A; a++) targets[row * A + a] = a === right ? p : (1 - p) / (A - 1);
    row++;
  };
  for (let p = 0; p < P; p++) {
    for (let t = 0; t < T; t++) {
      [warmPrompt[row], warmPosition[row]] = [p, t];
      target(task.answer[p], c.thoughtAccuracy);
    }
  }
  for (let v = 0; v < A; v++) {
    for (let m = 0; m <= T; m++) {
      [warmPrompt[row], warmPosition[row]] = [P + v, m];
      target(v, voteAccuracy[m]);
    }
  }
  warmStart(policy, warmPrompt, warmPosition, targets, c, new EngineClock());

  const adam = new Adam(policy.params.length, { lr: c.lr });
  const B = k * G;
  const S = 2 * T; // slots: thoughts 0 … T−1, then the probe answer after t + 1 thoughts at T + t
  const N = B * S;
  const tokens = new Int32Array(N);
  const mask = new Uint8Array(N);
  const rowPrompt = new Int32Array(N);
  const rowPosition = new Int32Array(N);
  const tokenAdvantages = new Float32Array(N);
  const lengths = new Int32Array(B);
  const exitCorrect = new Uint8Array(B * T);
  const exitMask = new Uint8Array(B * T);
  const correct = new Uint8Array(B);
  const groupIds = Int32Array.from({ length: B }, (_, b) => Math.floor(b / G));
  const logits = new Float32Array(N * A);
  const logitsTensor = tensor(logits, [N, A], 'f32');
  const thinkPrompt = new Int32Array(k * T);
  const thinkPosition = Int32Array.from({ length: k * T }, (_, i) => i % T);
  const answerPrompt = Int32Array.from({ length: A * (T + 1) }, (_, i) => P + Math.floor(i / (T + 1)));
  const answerPosition = Int32Array.from({ length: A * (T + 1) }, (_, i) => i % (T + 1));
  const rules = { maxProbAbove: { threshold: c.exitThreshold }, budget: { maxTokens: T } };
  const history: EarlyExitLog[] = [];

  for (let step = 0; step < c.steps; step++) {
    const stepStart = process.hrtime.bigint();
    const clock = new EngineClock();
    const chosen = choosePrompts(P, k, sampler);
    for (let i = 0; i < k * T; i++) thinkPrompt[i] = chosen[Math.floor(i / T)];
    // The policy is fixed while sampling: its thinking rows for the step's prompts and its answer rows.
    const think = Float32Array.from(policy.forward(thinkPrompt, thinkPosition));
    const answer = Float32Array.from(policy.forward(answerPrompt, answerPosition));

    // 1. Decode: one thought per live completion, then the monitor sees each one's answer probe.
    mask.fill(0);
    tokens.fill(0);
    exitMask.fill(0);
    exitCorrect.fill(0);
    const votes = Array.from({ length: B }, () => new ThoughtVote(A));
    const monitor = createExitMonitor({ batch: B, rules, backend });
    for (let t = 0; t < T; t++) {
      const live = monitor.live();
      if (live.length === 0) break;
      const probes = new Float32Array(live.length * A);
      live.forEach((b, j) => {
        const i = Math.floor(b / G);
        const thought = sampleRow(think, (i * T + t) * A, A, sampler);
        const at = b * S + t;
        [tokens[at], rowPrompt[at], rowPosition[at]] = [thought, chosen[i], t];
        votes[b].add(thought);
        const answerRow = votes[b].vote * (T + 1) + votes[b].margin;
        probes.set(answer.subarray(answerRow * A, (answerRow + 1) * A), j * A);
        const probe = sampleRow(answer, answerRow * A, A, sampler);
        const slot = b * S + T + t;
        [tokens[slot], rowPrompt[slot], rowPosition[slot]] = [probe, P + votes[b].vote, votes[b].margin];
        exitMask[b * T + t] = 1;
        exitCorrect[b * T + t] = probe === task.answer[chosen[i]] ? 1 : 0;
      });
      const { ids, decisions } = clock.time(() => monitor.push({ logits: tensor(probes, [live.length, A], 'f32'), ids: live }));
      ids.forEach((b, j) => {
        if (decisions[j] === 'continue') return;
        lengths[b] = t + 1;
        correct[b] = exitCorrect[b * T + t];
      });
    }
    const confident = monitor.summary().filter((s) => s.rule === 'maxProbAbove').length;

    // 2. Rewards and token-level advantages: the thoughts of completion b (slots 0 … L−1) share its GRPO
    //    advantage; the answers (slots T …) get S-GRPO's per-exit advantages (plus the GRPO advantage on the
    //    final one), or with 'length' / 'outcome' the GRPO advantage on the final answer alone.
    let shaped: Float32Array;
    let serial: Float32Array | null = null;
    if (c.shaping === 'sgrpo') {
      const result = clock.time(() => rewardFns.serialGroupRewards({ correct: exitCorrect, shape: [B, T], exitMask }, { decay: c.decay }));
      shaped = result.mean;
      serial = result.advantages;
    } else if (c.shaping === 'length') {
      shaped = clock.time(() => rewardFns.kimiLength({ correct, lengths, groupIds }, { weight: c.lengthWeight })).rewards;
    } else {
      shaped = Float32Array.from(correct);
    }
    const { advantages } = clock.time(() => advantagesSync({ rewards: shaped, groupSize: G }, { estimator: 'grpo', backend }));
    tokenAdvantages.fill(0);
    for (let b = 0; b < B; b++) {
      const L = lengths[b];
      mask.fill(1, b * S, b * S + L);
      tokenAdvantages.fill(advantages[b], b * S, b * S + L);
      if (serial) {
        mask.fill(1, b * S + T, b * S + T + L);
        tokenAdvantages.set(serial.subarray(b * T, b * T + L), b * S + T);
        // The final answer is also the completion's answer: it takes the parallel advantage too. Without it, a
        // chain that exits after one thought is a serial group of one (advantage 0) and the answer head stops
        // learning once thinking is short (measured, seeds 1–3: accuracy settled at 0.90 instead of 0.98).
        tokenAdvantages[b * S + T + L - 1] += advantages[b];
      } else {
        mask[b * S + T + L - 1] = 1;
        tokenAdvantages[b * S + T + L - 1] = advantages[b];
      }
    }

    // 3. Old log-probs and entropy of the sampling policy, then PPO updates over mini-batches of whole groups.
    //    Only the valid slots go through the MLP; padding slots keep logits 0 (mask 0: gradient 0).
    logits.fill(0);
    const valid: number[] = [];
    for (let i = 0; i < N; i++) if (mask[i]) valid.push(i);
    forwardSlots(policy, Int32Array.from(valid), rowPrompt, rowPosition, logits, A);
    const sampled = clock.time(() => tokenStatsSync(logitsTensor, { tokens, outputs: ['logprob', 'entropy'], backend }));
    const oldLogprob = sampled.logprob!;
    let thoughtEntropy = 0;
    let thoughtCount = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < lengths[b]; t++) thoughtEntropy += sampled.entropy![b * S + t];
      thoughtCount += lengths[b];
    }
    const mbTokens = N / c.miniBatches;
    const mbSamples = B / c.miniBatches;
    const gradLogits = new Float32Array(mbTokens * A);
    let clipFraction = 0;
    let approxKl = 0;
    let gradNorm = 0;
    for (let mb = 0; mb < c.miniBatches; mb++) {
      const tok = [mb * mbTokens, (mb + 1) * mbTokens] as const;
      const mbLogits = logits.subarray(tok[0] * A, tok[1] * A);
      const mbTensor = tensor(mbLogits, [mbTokens, A], 'f32');
      const mbTokenIds = tokens.subarray(...tok);
      // Slots of this mini-batch, relative to its first token.
      const slots = Int32Array.from(valid.filter((i) => i >= tok[0] && i < tok[1]), (i) => i - tok[0]);
      forwardSlots(policy, slots, rowPrompt.subarray(...tok), rowPosition.subarray(...tok), mbLogits, A);
      const stats = clock.time(() => tokenStatsSync(mbTensor, { tokens: mbTokenIds, outputs: ['logprob', 'entropy', 'logsumexp'], backend }));
      const result = clock.time(() => policyLossSync(
        {
          logprob: stats.logprob!,
          oldLogprob: oldLogprob.subarray(...tok),
          advantages: tokenAdvantages.subarray(...tok),
          mask: mask.subarray(...tok),
          shape: [mbSamples, S],
          entropy: stats.entropy,
        },
        { mode: 'ppo', clipLow: c.clipLow, clipHigh: c.clipHigh, aggregation: 'token-mean', entropyCoef: c.entropyCoef, backend },
      ));
      clock.time(() => tokenStatsBackwardSync(mbTensor, {
        tokens: mbTokenIds,
        gradLogprob: result.gradLogprob as Float32Array,
        gradEntropy: c.entropyCoef > 0 ? (result.gradEntropy as Float32Array) : undefined,
        logsumexp: stats.logsumexp,
        entropy: stats.entropy,
        out: gradLogits,
        backend,
      }));
      const gradSlots = new Float64Array(slots.length * A);
      slots.forEach((i, j) => gradSlots.set(gradLogits.subarray(i * A, (i + 1) * A), j * A));
      policy.backward(gradSlots); // the last forward was forwardSlots on these slots
      const norm = l2Norm(policy.grads);
      adam.step(policy.params, policy.grads, norm > c.maxGradNorm ? c.maxGradNorm / norm : 1);
      clipFraction += result.metrics.clipFraction / c.miniBatches;
      approxKl += result.metrics.approxKl / c.miniBatches;
      gradNorm += norm / c.miniBatches;
    }

    const log: EarlyExitLog = {
      step,
      accuracy: mean(correct),
      thinking: mean(lengths),
      confidentExits: confident / B,
      reward: mean(shaped),
      entropy: thoughtCount > 0 ? thoughtEntropy / thoughtCount : 0,
      clipFraction,
      approxKl,
      gradNorm,
      engineMs: Number(clock.ns) / 1e6,
      stepMs: Number(process.hrtime.bigint() - stepStart) / 1e6,
    };
    history.push(log);
    onStep?.(log);
  }
  return history;
}

/** Mean of a field over the steps [from, to) of a history. */
export function meanOver(history: readonly EarlyExitLog[], key: 'accuracy' | 'thinking', from: number, to: number): number {
  return mean(history.slice(from, to).map((h) => h[key]));
}

/** The chart: thinking length (with the budget) and accuracy (per step and 10-step mean) against step. */
export function earlyExitChartSvg(history: readonly EarlyExitLog[], title: string, budget: number): string {
  const thinking = history.map((h) => h.thinking);
  const accuracy = history.map((h) => h.accuracy);
  return chartSvg(title, history.length, [
    {
      label: 'thinking length (thoughts before </think>)',
      yMax: budget * 1.05,
      lines: [
        { values: thinking, color: '#7c3aed', width: 1, opacity: 0.45, name: 'per step' },
        { values: trailing(thinking, 10), color: '#6d28d9', width: 2, name: '10-step mean' },
      ],
      guides: [{ y: budget, text: `budget ${budget}` }],
    },
    {
      label: 'accuracy',
      yMax: 1,
      lines: [
        { values: accuracy, color: '#2563eb', width: 1, opacity: 0.45, name: 'per step' },
        { values: trailing(accuracy, 10), color: '#1d4ed8', width: 2, name: '10-step mean' },
      ],
      guides: [{ y: meanOver(history, 'accuracy', 0, Math.min(10, history.length)), text: 'first 10 steps' }],
    },
  ]);
}

// ---- command line: `advantage-engine train-early-exit` ----

const D = EARLY_EXIT_DEFAULTS;

export const HELP_TRAIN_EARLY_EXIT = `Usage: ${PROGRAM} train-early-exit [options]

Trains a small policy to stop thinking once its thoughts agree (examples/train-early-exit.ts). A completion
is thoughts (candidate answers), the forced </think>, then an answer read from the thinking's vote; the
exit monitor (createExitMonitor: maxProbAbove ${D.exitThreshold} on the answer the policy would give now, budget
${D.budget}) decides when thinking ends. Rewards: S-GRPO over each completion's exits (rewards.serialGroupRewards)
or correctness + the Kimi length reward (rewards.kimiLength); then advantages, policyLoss and
tokenStatsBackward as in train-demo. The start is a slow reasoner (thoughts right with probability
${D.thoughtAccuracy}); the run reports the thinking length falling while accuracy holds.

Options:
  --steps N          training steps (default: ${D.steps})
  --seed N           seed of the task, the weights and the sampling (default: ${D.seed})
  --backend B        engine backend: auto | cpu | js (default: auto)
  --shaping S        sgrpo | length | outcome (correctness alone, the control) (default: ${D.shaping})
  --lr X             Adam learning rate (default: ${D.lr})
  --threshold X      the monitor's max-prob exit threshold (default: ${D.exitThreshold})
  --every N          print every N-th step (default: 10; 0 prints none)
  --chart FILE       write an SVG chart of thinking length and accuracy against step
  --json             one JSON object per step (EarlyExitLog), then a summary object
  -h, --help         this text`;

/** The `train-early-exit` command: returns the exit code (lib/cli.ts maps UsageError to 2, RunError to 1). */
export function runTrainEarlyExit(args: readonly string[]): number {
  const cmd = 'train-early-exit';
  const flags = parseFlags(cmd, args, ['steps', 'seed', 'backend', 'shaping', 'lr', 'threshold', 'every', 'chart'], ['json', 'help']);
  if (flags.has('help')) {
    console.log(HELP_TRAIN_EARLY_EXIT);
    return 0;
  }
  const backend = flags.get('backend') ?? 'auto';
  if (backend !== 'auto' && backend !== 'cpu' && backend !== 'js') {
    throw new UsageError(`${cmd}: invalid --backend '${backend}' (expected one of: auto, cpu, js)`);
  }
  const shaping = flags.get('shaping') ?? D.shaping;
  if (shaping !== 'sgrpo' && shaping !== 'length' && shaping !== 'outcome') {
    throw new UsageError(`${cmd}: invalid --shaping '${shaping}' (expected sgrpo, length or outcome)`);
  }
  if (backend === 'cpu' && !backendInfo().native.loaded) {
    throw new RunError(`${cmd}: the cpu backend is not available (${backendInfo().skipped.cpu ?? 'native addon not loaded'})`);
  }
  const config: EarlyExitConfig = {
    ...D,
    backend,
    shaping,
    steps: intFlag(flags.get('steps'), 'steps', 1, cmd) ?? D.steps,
    seed: intFlag(flags.get('seed'), 'seed', 0, cmd) ?? D.seed,
    lr: numberFlag(flags.get('lr'), 'lr', cmd) ?? D.lr,
    exitThreshold: numberFlag(flags.get('threshold'), 'threshold', cmd) ?? D.exitThreshold,
  };
  if (!(config.lr > 0)) throw new UsageError(`${cmd}: invalid --lr '${flags.get('lr')}' (expected a number > 0)`);
  if (config.exitThreshold > 1) throw new UsageError(`${cmd}: invalid --threshold '${flags.get('threshold')}' (expected a number in [0, 1])`);
  if (config.seed >= 2 ** 32) throw new UsageError(`${cmd}: invalid --seed '${config.seed}' (expected a uint32)`);
  const every = intFlag(flags.get('every'), 'every', 0, cmd) ?? 10;
  const json = flags.has('json');
  const chart = flags.get('chart');

  const info = backendInfo();
  const engineOn = backend === 'auto' ? `auto (${info.active}; small inputs on js)` : backend;
  if (!json) {
    console.log(`Early exit: P=${config.prompts} prompts, A=${config.answers} answers, budget ${config.budget} thoughts, G=${config.groupSize}, shaping ${shaping}, exit at max-prob > ${config.exitThreshold}`);
    console.log(`engine backend: ${engineOn}; ${config.steps} steps, seed ${config.seed}, lr ${config.lr}; start: thoughts right with probability ${config.thoughtAccuracy}\n`);
    console.log(' step  accuracy  thinking  confident  reward  entropy  clipfrac  engine ms  step ms');
  }
  const started = process.hrtime.bigint();
  const history = trainEarlyExit(config, (log) => {
    if (json) console.log(JSON.stringify(log));
    else if (every > 0 && (log.step % every === every - 1 || log.step === 0)) {
      console.log(`${fixed(log.step + 1, 0, 5)}  ${fixed(log.accuracy, 3, 8)}  ${fixed(log.thinking, 2, 8)}  ${fixed(log.confidentExits, 3, 9)}  ${fixed(log.reward, 3, 6)}  ${fixed(log.entropy, 3, 7)}  ${fixed(log.clipFraction, 3, 8)}  ${fixed(log.engineMs, 2, 9)}  ${fixed(log.stepMs, 2, 7)}`);
    }
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const n = history.length;
  const window = Math.min(20, n);
  const summary = {
    steps: n,
    backend: backend === 'auto' ? `auto:${info.active}` : backend,
    shaping,
    seed: config.seed,
    firstThinking: meanOver(history, 'thinking', 0, window),
    lastThinking: meanOver(history, 'thinking', n - window, n),
    firstAccuracy: meanOver(history, 'accuracy', 0, window),
    lastAccuracy: meanOver(history, 'accuracy', n - window, n),
    engineSeconds: history.reduce((a, h) => a + h.engineMs, 0) / 1e3,
    totalSeconds: seconds,
  };
  if (chart !== undefined && chart !== true) {
    const title = `Early exit (${shaping === 'sgrpo' ? 'S-GRPO' : 'Kimi length reward'}): P=${config.prompts} A=${config.answers} budget ${config.budget}, seed ${config.seed}, ${backend === 'auto' ? info.active : backend} backend`;
    fs.writeFileSync(chart, earlyExitChartSvg(history, title, config.budget));
  }
  if (json) {
    console.log(JSON.stringify(summary));
    return 0;
  }
  console.log(`\nthinking length (0 → ${config.budget}): ${sparkline(history.map((h) => h.thinking), 0, config.budget)}`);
  console.log(`accuracy        (0 → 1):  ${sparkline(history.map((h) => h.accuracy))}`);
  console.log(`first ${window} steps: thinking ${summary.firstThinking.toFixed(2)} thoughts, accuracy ${summary.firstAccuracy.toFixed(3)}; ` +
    `last ${window}: thinking ${summary.lastThinking.toFixed(2)}, accuracy ${summary.lastAccuracy.toFixed(3)}`);
  console.log(`engine: ${summary.engineSeconds.toFixed(2)} s of ${seconds.toFixed(2)} s in all`);
  if (chart !== undefined && chart !== true) console.log(`chart: ${chart}`);
  return 0;
}
