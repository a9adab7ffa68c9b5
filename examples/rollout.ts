/**
 * The bundled rollout batch of the examples: 64 × 32768 bf16 logits (examples/rollout-64x32768.bf16.bin) and the
 * token sampled in each row, described by examples/rollout.json and made by examples/make-rollout.ts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { tensor, type Tensor } from '../lib';

export interface RolloutMeta {
  file: string;
  shape: [number, number];
  dtype: 'bf16';
  seed: number;
  tokens: number[];
}

/** The examples/ folder of the source tree (this file runs from dist/examples/ or from examples/). */
function examplesDir(): string {
  for (const dir of [path.resolve(__dirname, '..', '..', 'examples'), __dirname]) {
    if (fs.existsSync(path.join(dir, 'rollout.json'))) return dir;
  }
  throw new Error('rollout.json not found: run from the package checkout (examples/ holds the bundled batch)');
}

export function loadRollout(): { meta: RolloutMeta; logits: Tensor; tokens: Int32Array } {
  const dir = examplesDir();
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'rollout.json'), 'utf8')) as RolloutMeta;
  const bytes = fs.readFileSync(path.join(dir, meta.file));
  const [rows, vocab] = meta.shape;
  if (bytes.length !== rows * vocab * 2) throw new Error(`${meta.file}: ${bytes.length} bytes, expected ${rows * vocab * 2}`);
  const data = new Uint16Array(rows * vocab);
  for (let k = 0; k < data.length; k++) data[k] = bytes.readUInt16LE(2 * k); // little-endian on any host
  return { meta, logits: tensor(data, [rows, vocab], 'bf16'), tokens: Int32Array.from(meta.tokens) };
}

