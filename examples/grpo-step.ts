/**
 * One full GRPO / DAPO step on the bundled rollout batch, every signal from the engine:
 *
 *   logits ──tokenStats──▶ logprob, entropy ──policyLoss(advantages)──▶ loss, ∂loss/∂logprob, ∂loss/∂entropy
 *          ◀──────────────────────── tokenStatsBackward ───────────────────────────┘  ∂loss/∂logits
 *
 * The 64 rows of examples/rollout-64x32768.bf16.bin are read as B = 8 responses of T = 8 tokens: 2 prompts × a
 * group of G = 4. The rest of a rollout is made up, from a seeded PRNG: each response's length (the mask), its
 * 0/1 reward, and the behaviour policy's log-probs (the current ones moved by up to ±0.3, as after a first
 * mini-batch update, so that some tokens clip).
 *
 *   npm run build:ts && node dist/examples/grpo-step.js      # ADVANTAGE_ENGINE_BACKEND=js for pure JS
 */
import { advantagesSync, backendInfo, policyLossSync, tokenStatsBackwardSync, tokenStatsSync } from '../lib';
import { Sfc32 } from '../lib/prng';
import { loadRollout } from './rollout';

const GROUPS = 2;
const GROUP_SIZE = 4;
const SEED = 7;

function main(): void {
  const { logits, tokens } = loadRollout();
  const [rows, vocab] = logits.shape;
  const B = GROUPS * GROUP_SIZE;
  const T = rows / B;
  const rng = new Sfc32(SEED);
  const start = process.hrtime.bigint();

  // 1. Token statistics of the current policy (temperature 1).
  const stats = tokenStatsSync(logits, { tokens, outputs: ['logprob', 'entropy', 'logsumexp'] });
  const logprob = stats.logprob!;
  const entropy = stats.entropy!;

  // The made-up rest of the rollout.
  const mask = new Uint8Array(rows);
  const rewards = new Float32Array(B);
  const oldLogprob = new Float32Array(rows);
  for (let b = 0; b < B; b++) {
    const length = 2 + (rng.uint32() % (T - 1));
    for (let t = 0; t < T; t++) mask[b * T + t] = t < length ? 1 : 0;
    rewards[b] = rng.float() < 0.5 ? 1 : 0;
  }
  for (let i = 0; i < rows; i++) oldLogprob[i] = logprob[i] + 0.6 * (rng.float() - 0.5);

  // 2. Group advantages (GRPO z-score within each prompt's group), one per response.
  const adv = advantagesSync({ rewards, groupSize: GROUP_SIZE }, { estimator: 'grpo' });

  // 3. The DAPO policy loss: clip-higher 0.2 / 0.28, token-mean, a small entropy bonus.
  const loss = policyLossSync(
    { logprob, oldLogprob, advantages: adv.advantages, mask, shape: [B, T], entropy },
    { mode: 'ppo', clipLow: 0.2, clipHigh: 0.28, aggregation: 'token-mean', entropyCoef: 0.001 },
  );

  // 4. Back into the logits: ∂loss/∂logits = Σ_t ∂loss/∂logprob_t·∂logprob_t/∂logits + the entropy term's.
  const grad = tokenStatsBackwardSync(logits, {
    tokens, gradLogprob: Float32Array.from(loss.gradLogprob), gradEntropy: Float32Array.from(loss.gradEntropy!),
    logsumexp: stats.logsumexp, entropy,
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;

  let norm = 0;
  for (let k = 0; k < grad.length; k++) norm += grad[k] * grad[k];
  const fmt = (x: number) => (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4) : x.toExponential(3));
  console.log(`advantage-engine GRPO step — backend ${backendInfo().active}, batch ${B} responses × ${T} tokens ` +
    `(${GROUPS} prompts × ${GROUP_SIZE}), vocabulary ${vocab}, bf16 logits`);
  console.log(`rewards     ${Array.from(rewards).join(' ')}`);
  console.log(`advantages  ${Array.from(adv.advantages, (a) => a.toFixed(3)).join(' ')}`);
  console.log(`loss        ${fmt(loss.loss)}`);
  for (const [name, value] of Object.entries(loss.metrics)) {
    if (typeof value === 'number') console.log(`  ${name.padEnd(18)}${fmt(value)}`);
  }
  console.log(`‖∂loss/∂logits‖₂  ${Math.sqrt(norm).toExponential(4)}  (${rows} × ${vocab} f32)`);
  console.log(`time in the engine ${ms.toFixed(1)} ms`);
}

main();
