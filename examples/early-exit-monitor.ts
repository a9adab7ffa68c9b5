/**
 * Early exit during decoding (SPEC §6 with §5.1): a simulated decode loop over a synthetic batch, with the
 * streaming monitor deciding per token whether each sequence goes on thinking, exits its thinking now, or is
 * rejected; then S-GRPO rewards over each sequence's exit points and their advantages.
 *
 *   npm run build:ts && node dist/examples/early-exit-monitor.js
 *   ADVANTAGE_ENGINE_BACKEND=js node dist/examples/early-exit-monitor.js      # pure JavaScript
 *
 * The logits are seeded noise [live, V]; from a per-sequence onset step one token's logit grows, so those
 * sequences become confident (entropy falls) and the monitor exits them early. The answer extracted at a
 * checkpoint (every CHECKPOINT tokens) is correct once the sequence has been confident for a while, or by luck.
 * A partial-reward model (here: a noisy score) lets the monitor reject a hopeless sequence early.
 */
import { advantagesSync, backendInfo, createExitMonitor, rewards, tensor } from '../lib';
import { Sfc32 } from '../lib/prng';

const BATCH = 8;
const VOCAB = 8192;
const MAX_TOKENS = 512; // the thinking budget every sequence would otherwise use
const CHECKPOINT = 64; // tokens between exit points (where an answer is extracted and scored)
const SEED = 2024;

interface Sequence {
  /** Decode step from which the sequence becomes confident, or Infinity. */
  onset: number;
  /** The token it becomes confident about. */
  target: number;
  /** Hopeless: its partial reward stays low. */
  hopeless: boolean;
}

const rng = new Sfc32(SEED);
const sequences: Sequence[] = Array.from({ length: BATCH }, (_, b) => ({
  onset: b % 4 === 3 ? Infinity : 40 + rng.int(200),
  target: rng.int(VOCAB),
  hopeless: b === 6,
}));

/** Next-token logits of the live sequences at decode step t. */
function stepLogits(live: Int32Array, t: number): Float32Array {
  const data = new Float32Array(live.length * VOCAB);
  live.forEach((b, row) => {
    const o = row * VOCAB;
    for (let j = 0; j < VOCAB; j++) data[o + j] = 1.5 * rng.normal();
    const { onset, target } = sequences[b];
    // After its onset the sequence's margin grows by 0.25 per token: entropy falls towards 0.
    if (t >= onset) data[o + target] += Math.min(20, 4 + 0.25 * (t - onset));
  });
  return data;
}

/** Partial reward of a live sequence at step t (scored every CHECKPOINT tokens, NaN otherwise). */
function partialReward(b: number, t: number): number {
  if ((t + 1) % CHECKPOINT !== 0) return NaN;
  return sequences[b].hopeless ? 0.05 * rng.float() : 0.3 + 0.7 * rng.float();
}

/** Is the answer extracted after `tokens` tokens correct? */
function answerCorrect(b: number, tokens: number): boolean {
  return tokens >= sequences[b].onset + 24 || rng.float() < 0.15;
}

function main(): void {
  const monitor = createExitMonitor({
    batch: BATCH,
    rules: {
      entropyBelow: { threshold: 0.5, k: 8 },
      partialReward: { threshold: 0.1, minTokens: 2 * CHECKPOINT },
      budget: { maxTokens: MAX_TOKENS },
    },
  });
  const ended: { step: number; decision: string; rule: string | null }[] = new Array(BATCH);
  const started = process.hrtime.bigint();
  for (let t = 0; monitor.live().length > 0; t++) {
    const live = monitor.live();
    const logits = tensor(stepLogits(live, t), [live.length, VOCAB]);
    const out = monitor.push({ logits, partialReward: Array.from(live, (b) => partialReward(b, t)) });
    out.decisions.forEach((decision, k) => {
      if (decision !== 'continue') ended[out.ids[k]] = { step: t, decision, rule: out.rules[k] };
    });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  // Exit points: every CHECKPOINT tokens up to the sequence's end, plus the end itself (the forced exit).
  const summary = monitor.summary();
  const exits = summary.map(({ id, tokens }) => {
    const points: number[] = [];
    for (let p = CHECKPOINT; p < tokens; p += CHECKPOINT) points.push(p);
    points.push(tokens);
    return points.map((p) => ({ tokens: p, correct: answerCorrect(id, p) }));
  });
  // S-GRPO over each sequence's serial group of exits (padded to the longest with an exit mask).
  const width = Math.max(...exits.map((e) => e.length));
  const correct = new Uint8Array(BATCH * width);
  const exitMask = new Uint8Array(BATCH * width);
  exits.forEach((points, b) => points.forEach((p, e) => {
    correct[b * width + e] = p.correct ? 1 : 0;
    exitMask[b * width + e] = 1;
  }));
  const serial = rewards.serialGroupRewards({ correct, shape: [BATCH, width], exitMask }, { decay: 0.5 });
  // The same advantages from the estimator: the exits of one sequence form its group, Dr.GRPO (no std division).
  const valid = Array.from(exitMask.keys()).filter((i) => exitMask[i]);
  const estimator = advantagesSync(
    { rewards: valid.map((i) => serial.rewards[i]), groupIds: valid.map((i) => Math.floor(i / width)) },
    { estimator: 'grpo', scale: 'none' },
  );

  const info = backendInfo();
  console.log(`early-exit monitor: ${BATCH} sequences × ${VOCAB} vocabulary, budget ${MAX_TOKENS} tokens, backend ${info.active}${info.isa ? ` (${info.isa})` : ''}`);
  console.log(`rules: entropy < 0.5 for 8 tokens → exit; partial reward < 0.1 after ${2 * CHECKPOINT} tokens → reject; ${MAX_TOKENS} tokens → exit\n`);
  let saved = 0;
  let k = 0;
  for (const s of summary) {
    const end = ended[s.id];
    const tokensSaved = MAX_TOKENS - s.tokens;
    saved += tokensSaved;
    const onset = Number.isFinite(sequences[s.id].onset) ? `confident from token ${sequences[s.id].onset}` : 'never confident';
    console.log(`seq ${s.id}: ${end.decision.padEnd(6)} at token ${String(s.tokens).padStart(3)} by ${String(end.rule).padEnd(13)} saved ${String(tokensSaved).padStart(3)} tokens  (${onset})`);
    const cells = exits[s.id].map((p, e) => {
      const i = s.id * width + e;
      const viaEstimator = estimator.advantages[k++];
      return `@${p.tokens}:${p.correct ? '✓' : '✗'} r=${serial.rewards[i].toFixed(3)} A=${serial.advantages[i].toFixed(3)}` +
        (Math.abs(viaEstimator - serial.advantages[i]) > 1e-6 ? ` (estimator ${viaEstimator.toFixed(3)})` : '');
    });
    console.log(`        exits ${cells.join('  ')}`);
  }
  console.log(`\ntokens saved: ${saved} of ${BATCH * MAX_TOKENS} (${((100 * saved) / (BATCH * MAX_TOKENS)).toFixed(1)}%); monitor + logits statistics took ${(1e3 * seconds).toFixed(0)} ms`);
  console.log('S-GRPO advantages equal advantages({estimator: "grpo", scale: "none"}) over each sequence\'s exits.');
}

main();
