/**
 * Generates the bundled rollout batch used by examples/demo.ts: 64 × 32768 bf16 logits from a synthetic
 * LM-like distribution, and one token per row sampled from its softmax. Deterministic (lib/prng.ts sfc32,
 * IEEE-exact arithmetic plus V8's fdlibm-derived Math.log/exp/cos), so that anyone can regenerate the
 * committed files bit for bit:
 *
 *   npx tsc -p tsconfig.json && node dist/examples/make-rollout.js          # (re)write the files
 *   node dist/examples/make-rollout.js --check                              # regenerate and compare
 *
 * Recipe per row i (RECIPE below has the numbers):
 *   prior_j   = −s·ln(rank_j + 1)                   Zipf prior; rank = a seeded permutation of the vocabulary
 *   noise_ij  ~ N(0, σ_i²),  σ_i ~ U(σ_lo, σ_hi)      per-row Gaussian noise (the "context")
 *   boost_ij  = b_i·d^k for the k-th of K context tokens (drawn from the Zipf prior), b_i ~ U(b_lo, b_hi)
 *   z_ij      = (prior_j + noise_ij + boost_ij) / τ_i, τ_i ~ U(τ_lo, τ_hi)   temperature-scaled
 * stored as bf16 (round to nearest even); token_i ~ softmax(bf16 z_i) by inverse CDF in f64.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Sfc32 } from '../lib/prng';
import { bf16ToNumber, numberToBf16 } from '../lib/tensor';

export const RECIPE = {
  seed: 20250611,
  rows: 64,
  vocab: 32768,
  zipfExponent: 1.1,
  noiseScale: [0.8, 2.2],
  contextTokens: 8,
  boost: [3, 15],
  boostDecay: 0.75,
  temperature: [0.5, 1.0],
} as const;

export const BIN_NAME = `rollout-${RECIPE.rows}x${RECIPE.vocab}.bf16.bin`;
export const JSON_NAME = 'rollout.json';

export interface Rollout {
  logits: Uint16Array;
  tokens: number[];
}

export function makeRollout(): Rollout {
  const { rows, vocab } = RECIPE;
  const rng = new Sfc32(RECIPE.seed);
  // Zipf prior over a shuffled vocabulary, and its CDF over ranks to draw context tokens from it.
  const byRank = new Int32Array(vocab);
  for (let j = 0; j < vocab; j++) byRank[j] = j;
  for (let j = vocab - 1; j > 0; j--) {
    const k = rng.int(j + 1);
    const t = byRank[j];
    byRank[j] = byRank[k];
    byRank[k] = t;
  }
  const prior = new Float64Array(vocab);
  const rankCdf = new Float64Array(vocab);
  let total = 0;
  for (let r = 0; r < vocab; r++) {
    prior[byRank[r]] = -RECIPE.zipfExponent * Math.log(r + 1);
    total += Math.exp(-RECIPE.zipfExponent * Math.log(r + 1));
    rankCdf[r] = total;
  }
  const drawByPrior = () => {
    const u = rng.float() * total;
    let lo = 0, hi = vocab - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (rankCdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return byRank[lo];
  };

  const logits = new Uint16Array(rows * vocab);
  const tokens: number[] = [];
  const z = new Float64Array(vocab);
  for (let i = 0; i < rows; i++) {
    const sigma = rng.uniform(...RECIPE.noiseScale);
    const boost = rng.uniform(...RECIPE.boost);
    const tau = rng.uniform(...RECIPE.temperature);
    for (let j = 0; j < vocab; j++) z[j] = prior[j] + sigma * rng.normal();
    for (let k = 0, b = boost; k < RECIPE.contextTokens; k++, b *= RECIPE.boostDecay) z[drawByPrior()] += b;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) {
      const h = numberToBf16(z[j] / tau); // via f32, then to nearest even
      logits[i * vocab + j] = h;
      z[j] = bf16ToNumber(h); // sample from what is stored
      if (z[j] > max) max = z[j];
    }
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(z[j] - max);
    let u = rng.float() * sum;
    let token = vocab - 1;
    for (let j = 0; j < vocab; j++) {
      u -= Math.exp(z[j] - max);
      if (u < 0) {
        token = j;
        break;
      }
    }
    tokens.push(token);
  }
  return { logits, tokens };
}

/** Raw little-endian bytes of the bf16 bit patterns. */
export function littleEndianBytes(data: Uint16Array): Buffer {
  const out = Buffer.alloc(data.length * 2);
  for (let k = 0; k < data.length; k++) out.writeUInt16LE(data[k], 2 * k);
  return out;
}

function describe(bytes: Buffer, tokens: number[]): Record<string, unknown> {
  return {
    file: BIN_NAME,
    shape: [RECIPE.rows, RECIPE.vocab],
    dtype: 'bf16',
    byteOrder: 'little-endian',
    format: 'raw Uint16 bf16 bit patterns, row-major, no header',
    bytes: bytes.length,
    sha256: crypto.createHash('sha256').update(bytes).digest('hex'),
    seed: RECIPE.seed,
    prng: 'sfc32 (32-bit), 53-bit floats from two outputs; Box–Muller normals',
    generator: 'examples/make-rollout.ts (node dist/examples/make-rollout.js; --check to verify)',
    recipe: {
      ...RECIPE,
      description:
        'z_ij = (prior_j + noise_ij + boost_ij) / tau_i: Zipf prior −zipfExponent·ln(rank+1) over a seeded permutation ' +
        'of the vocabulary; per-row Gaussian noise of scale sigma_i ~ U(noiseScale); contextTokens tokens drawn from ' +
        'the prior raised by b_i·boostDecay^k, b_i ~ U(boost); per-row temperature tau_i ~ U(temperature); stored as ' +
        'bf16 (round to nearest even). tokens[i] is sampled from softmax of the stored bf16 row (inverse CDF, f64).',
    },
    tokens,
  };
}

function main(args: string[]): number {
  const unknown = args.filter((a) => a !== '--check' && !a.startsWith('--out='));
  if (unknown.length) {
    console.error(`make-rollout: unknown argument ${unknown[0]} (usage: make-rollout [--check] [--out=DIR])`);
    return 2;
  }
  const dir = args.find((a) => a.startsWith('--out='))?.slice(6) ?? path.resolve(__dirname, '..', '..', 'examples');
  if (os.endianness() !== 'LE') console.error('make-rollout: big-endian host; writing little-endian anyway');
  const { logits, tokens } = makeRollout();
  const bytes = littleEndianBytes(logits);
  const json = `${JSON.stringify(describe(bytes, tokens), null, 2)}\n`;
  const binPath = path.join(dir, BIN_NAME);
  const jsonPath = path.join(dir, JSON_NAME);
  if (args.includes('--check')) {
    const sameBin = fs.existsSync(binPath) && Buffer.compare(fs.readFileSync(binPath), bytes) === 0;
    const sameJson = fs.existsSync(jsonPath) && fs.readFileSync(jsonPath, 'utf8') === json;
    console.log(`${BIN_NAME}: ${sameBin ? 'identical' : 'DIFFERS'}; ${JSON_NAME}: ${sameJson ? 'identical' : 'DIFFERS'}`);
    return sameBin && sameJson ? 0 : 1;
  }
  fs.writeFileSync(binPath, bytes);
  fs.writeFileSync(jsonPath, json);
  console.log(`wrote ${binPath} (${bytes.length} bytes) and ${jsonPath}`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
