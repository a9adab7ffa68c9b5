/**
 * Benchmarks of the advantage family (SPEC §4): `advantages` (outcome estimators over groups, rows = B
 * responses, cols = 1; `--estimator`, `--group` responses per prompt, ids shuffled so that groups are found by
 * hashing) and `gae` (the whitened GAE scan on [rows, cols] = [B, T], a mask with trailing padding and holes).
 * Run with `advantage-engine bench --op advantages --estimator grpo --rows 1000000 --group 16` or
 * `--op gae --rows 4096 --cols 8192`.
 */
import { advantagesSync, gaeSync, type Estimator } from '../lib';
import { Sfc32 } from '../lib/prng';
import type { Case, OpDefinition } from './ops';

const ESTIMATOR_NAMES = ['grpo', 'rloo', 'reinforceBaseline', 'remax', 'opo', 'gpg', 'passk', 'bnpo', 'ngrpo'] as const;
const bytesOf = (c: Case) => (c.dtype === 'f64' ? 8 : 4);

/** Per row: reward, int32 group id, length and baseline read; advantages, groupMean, groupStd written. */
const advantageBytes = (c: Case) => c.rows * (bytesOf(c) + 4 + 8 + 8 + 3 * bytesOf(c));
/** Per token: reward, value and mask read; advantages and returns written. */
const gaeBytes = (c: Case) => c.rows * c.cols * (2 * bytesOf(c) + 1 + 2 * bytesOf(c));

function floats(c: Case, n: number, draw: () => number): Float32Array | Float64Array {
  const a = c.dtype === 'f64' ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = draw();
  return a;
}

export const ADVANTAGE_OPS: Readonly<Record<string, OpDefinition>> = {
  advantages: {
    description: 'advantagesSync over B responses in groups of --group (shuffled int32 ids, hashed), binary rewards, one --estimator',
    dtypes: ['f32', 'f64'],
    defaultRows: { cpu: 1_000_000, js: 1_000_000 },
    defaultCols: 1,
    params: {
      estimator: { default: 'grpo', choices: ESTIMATOR_NAMES, help: 'advantage estimator' },
      group: { default: '16', help: 'responses per prompt (group size)' },
    },
    inputBytes: (c) => c.rows * (bytesOf(c) + 4 + 16),
    allocatedBytes: (c) => advantageBytes(c) + c.rows * 40,
    prepare(c, seed) {
      const rng = new Sfc32(seed ?? 1);
      const size = Number(c.params.group);
      const B = c.rows - (c.rows % size);
      const groupIds = new Int32Array(B);
      for (let i = 0; i < B; i++) groupIds[i] = (i / size) | 0;
      for (let i = B - 1; i > 0; i--) {
        const j = rng.uint32() % (i + 1);
        [groupIds[i], groupIds[j]] = [groupIds[j], groupIds[i]];
      }
      const rewards = floats(c, B, () => rng.uint32() & 1);
      const lengths = Float64Array.from({ length: B }, () => 1 + (rng.uint32() % 4096));
      const baselines = Float64Array.from({ length: B }, () => rng.uint32() & 1);
      const inputs = { rewards, groupIds, lengths, baselines };
      const options = { estimator: c.params.estimator as Estimator, backend: c.backend, ...(c.dtype === 'f64' ? { precision: 'f64' as const } : {}) };
      const cc = { ...c, rows: B };
      return { fn: () => void advantagesSync(inputs, options), elements: B, bytesMoved: advantageBytes(cc), inputBytes: cc.rows * (bytesOf(c) + 20) };
    },
  },
  gae: {
    description: 'gaeSync on [B, T] (γ 0.99, λ 0.95, whitened), rewards, values and a multi-turn mask',
    dtypes: ['f32', 'f64'],
    defaultRows: { cpu: 4096, js: 256 },
    defaultCols: 8192,
    inputBytes: (c) => c.rows * c.cols * (2 * bytesOf(c) + 1),
    allocatedBytes: gaeBytes,
    prepare(c, seed) {
      const rng = new Sfc32(seed ?? 1);
      const n = c.rows * c.cols;
      const rewards = floats(c, n, () => (rng.uint32() % 64 === 0 ? 1 : 0));
      const values = floats(c, n, () => rng.uniform(-1, 1));
      const mask = new Uint8Array(n);
      for (let b = 0; b < c.rows; b++) {
        const length = 1 + (rng.uint32() % c.cols);
        for (let t = 0; t < length; t++) mask[b * c.cols + t] = rng.uint32() % 8 === 0 ? 0 : 1;
      }
      const inputs = { rewards, values, mask, shape: [c.rows, c.cols] as [number, number] };
      const options = { gamma: 0.99, lambda: 0.95, backend: c.backend, ...(c.dtype === 'f64' ? { precision: 'f64' as const } : {}) };
      return { fn: () => void gaeSync(inputs, options), elements: n, bytesMoved: gaeBytes(c), inputBytes: n * (2 * bytesOf(c) + 1) };
    },
  },
};
