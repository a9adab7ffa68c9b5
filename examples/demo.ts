/**
 * advantage-engine demo: token statistics of a bundled rollout batch (64 × 32768 bf16 logits and their
 * sampled tokens, made by examples/make-rollout.ts).
 *
 *   npm run demo                                  # native cpu backend when built, else js
 *   ADVANTAGE_ENGINE_BACKEND=js npm run demo      # pure JavaScript
 */
import {
  backendInfo,
  entropyMask,
  tokenStats,
  tokenStatsBackward,
  tokenStatsSync,
  type Tensor,
} from '../lib';
import { loadRollout } from './rollout';

function summary(values: Float32Array): string {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => {
    const p = q * (sorted.length - 1);
    const lo = Math.floor(p);
    return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (p - lo);
  };
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const f = (x: number) => x.toFixed(3).padStart(7);
  return `mean ${f(mean)}  min ${f(sorted[0])}  p50 ${f(at(0.5))}  p90 ${f(at(0.9))}  max ${f(sorted[sorted.length - 1])}`;
}

/** Elements per second of tokenStatsSync on one backend: median of timed calls after a warm-up call. */
function throughput(logits: Tensor, tokens: Int32Array, backend: 'cpu' | 'js'): { perSec: number; calls: number } {
  tokenStatsSync(logits, { tokens, backend });
  const times: number[] = [];
  const deadline = Date.now() + 300;
  while (times.length < 5 || (Date.now() < deadline && times.length < 200)) {
    const start = process.hrtime.bigint();
    tokenStatsSync(logits, { tokens, backend });
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  times.sort((a, b) => a - b);
  return { perSec: logits.data.length / times[times.length >> 1], calls: times.length };
}

function rate(perSec: number): string {
  return perSec >= 1e9 ? `${(perSec / 1e9).toFixed(2)} G` : `${(perSec / 1e6).toFixed(1)} M`;
}

async function main(): Promise<void> {
  const { meta, logits, tokens } = loadRollout();
  const [rows, vocab] = meta.shape;
  const info = backendInfo();
  console.log(`advantage-engine demo: rollout batch ${rows} × ${vocab} ${meta.dtype} (seed ${meta.seed}, examples/${meta.file})`);
  console.log(info.active === 'cpu'
    ? `backend: cpu (native addon, ${info.isa}, ${info.threads} thread${info.threads === 1 ? '' : 's'})`
    : `backend: js (cpu skipped: ${info.skipped.cpu ?? 'not loaded'})`);

  const stats = await tokenStats(logits, { tokens });
  const entropy = stats.entropy!;
  const { mask, threshold } = entropyMask(entropy, null, { topQuantile: 0.2 });
  const high = mask.reduce((a, b) => a + b, 0);
  const meanMaxProb = stats.maxProb!.reduce((a, b) => a + b, 0) / rows;
  console.log('\nper-token statistics (tokenStats, temperature 1):');
  console.log(`  entropy (nats)  ${summary(entropy)}`);
  console.log(`  log-prob        ${summary(stats.logprob!)}`);
  console.log(`  mean maxProb    ${meanMaxProb.toFixed(3)}`);
  console.log(`  high-entropy tokens (entropyMask top 20%): ${high} of ${rows} (${((100 * high) / rows).toFixed(1)}%), H ≥ ${threshold.toFixed(3)}`);

  console.log(`\nforward throughput (tokenStatsSync, ${logits.data.length} elements a call):`);
  const rates: Partial<Record<'cpu' | 'js', number>> = {};
  for (const backend of ['cpu', 'js'] as const) {
    if (backend === 'cpu' && !info.native.loaded) {
      console.log('  cpu  skipped (native addon not loaded)');
      continue;
    }
    const { perSec, calls } = throughput(logits, tokens, backend);
    rates[backend] = perSec;
    console.log(`  ${backend.padEnd(4)} ${rate(perSec).padStart(8)} elements/s  (median of ${calls} calls)`);
  }
  if (rates.cpu && rates.js) console.log(`  cpu / js: ${(rates.cpu / rates.js).toFixed(1)}×`);

  // Policy-gradient style loss: L = −mean(logprob) − 0.01·mean(entropy); its gradient into the logits.
  const gradLogprob = new Float32Array(rows).fill(-1 / rows);
  const gradEntropy = new Float32Array(rows).fill(-0.01 / rows);
  const start = process.hrtime.bigint();
  const grad = await tokenStatsBackward(logits, {
    tokens, gradLogprob, gradEntropy, logsumexp: stats.logsumexp, entropy,
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  let sq = 0;
  for (let k = 0; k < grad.length; k++) sq += grad[k] * grad[k];
  console.log('\nbackward (tokenStatsBackward of L = −mean logprob − 0.01·mean entropy):');
  console.log(`  ‖∂L/∂logits‖₂ = ${Math.sqrt(sq).toExponential(4)}  (f32 gradient ${rows} × ${vocab}, ${ms.toFixed(1)} ms on ${info.active})`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
