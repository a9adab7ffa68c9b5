/**
 * The GPU benchmark of the CUDA token statistics (`advantage-engine bench --backend cuda --op …`): each op on
 * device-resident logits, timed on the device (CUDA events around its kernels, CudaDevice.lastDeviceMs),
 * against the device's bandwidth measured in the same process by device-to-device copies (bytes read + written
 * per second). Results are in the fields of `bench --json`. Targets (issue 7): forward ≥ 0.85 of the measured
 * bandwidth at 16384 × 151936 bf16, backward ≥ 0.75. ADVANTAGE_ENGINE_CUDA_ADDON selects another build of the
 * addon (the CPU emulation, to check this path on a machine without a GPU; its times mean nothing).
 */
import { cudaDevice, type CudaDevice, type DeviceTensor } from '../lib/cuda';
import { numberToBf16, numberToF16, type DType } from '../lib/tensor';
import { Sfc32 } from '../lib/prng';

export const CUDA_BENCH_OPS = ['token-stats', 'token-stats-backward', 'full-kl'] as const;
export type CudaBenchOp = (typeof CUDA_BENCH_OPS)[number];
export const CUDA_BENCH_DTYPES: readonly DType[] = ['bf16', 'f16', 'f32'];

export interface CudaBenchCase {
  op: CudaBenchOp;
  dtype: DType;
  rows: number;
  cols: number;
  repeats: number;
}

export interface CudaBenchResult {
  op: CudaBenchOp;
  backend: 'cuda';
  dtype: DType;
  rows: number;
  cols: number;
  /** = cols: every CUDA bench op takes logits [rows, vocab]. */
  vocab: number;
  threads: 1;
  medianMs: number;
  elementsPerSec: number;
  gbPerSec: number;
  readBandwidthGbPerSec: number;
  bandwidthFraction: number;
  isa: null;
  samples: number;
  device: string;
}

/** A device tensor of rows × cols N(0, 3²) logits, uploaded in blocks of ≤ 64 MiB (the host never holds all). */
function deviceLogits(device: CudaDevice, c: CudaBenchCase, seed: number): DeviceTensor {
  const bytes = c.dtype === 'f32' ? 4 : 2;
  const d = device.empty([c.rows, c.cols], c.dtype);
  const blockRows = Math.max(1, Math.min(c.rows, Math.floor((64 << 20) / (c.cols * bytes))));
  const rng = new Sfc32(seed);
  const encode = c.dtype === 'bf16' ? numberToBf16 : c.dtype === 'f16' ? numberToF16 : (x: number) => x;
  const block = c.dtype === 'f32' ? new Float32Array(blockRows * c.cols) : new Uint16Array(blockRows * c.cols);
  for (let i = 0; i < block.length; i++) block[i] = encode(3 * rng.normal());
  for (let r = 0; r < c.rows; r += blockRows) {
    const n = Math.min(blockRows, c.rows - r);
    device.addon.copy(d.handle('logits'), block.subarray(0, n * c.cols), r * c.cols * bytes, true);
  }
  return d;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Runs each case on the process's CUDA device (ERR_AE_BACKEND_UNAVAILABLE saying why when there is none). */
export function runCudaBench(cases: readonly CudaBenchCase[], seed: number, emit: (r: CudaBenchResult) => void): void {
  const device = cudaDevice();
  const info = device.info();
  const name = info.name ?? `${info.build} device`;
  for (const c of cases) {
    const logitBytes = c.rows * c.cols * (c.dtype === 'f32' ? 4 : 2);
    const bandwidth = device.measureBandwidth(Math.min(1 << 30, logitBytes), c.repeats);
    const logits = deviceLogits(device, c, seed);
    const tokens = new Int32Array(c.rows).map((_, i) => (i * 7919) % c.cols);
    let extra: DeviceTensor | null = null;
    let run: () => void;
    let bytesMoved = logitBytes;
    if (c.op === 'token-stats') {
      const out = { entropy: new Float32Array(c.rows), logprob: new Float32Array(c.rows), logsumexp: new Float32Array(c.rows),
        sumPiSquared: new Float32Array(c.rows), maxProb: new Float32Array(c.rows) };
      run = () => void device.tokenStatsSync(logits, { tokens, out });
    } else if (c.op === 'token-stats-backward') {
      const forward = device.tokenStatsSync(logits, { tokens, outputs: ['logsumexp', 'entropy'] });
      const out = (extra = device.empty([c.rows, c.cols], 'f32'));
      const options = {
        tokens, gradLogprob: new Float32Array(c.rows).fill(-1 / c.rows), gradEntropy: new Float32Array(c.rows).fill(-0.01 / c.rows),
        logsumexp: forward.logsumexp, entropy: forward.entropy, out,
      };
      run = () => void device.tokenStatsBackwardSync(logits, options);
      bytesMoved = logitBytes + c.rows * c.cols * 4;
    } else {
      const ref = (extra = deviceLogits(device, c, seed + 1));
      run = () => void device.fullKlSync(logits, ref, { nonFinite: 'nan' });
      bytesMoved = 2 * logitBytes;
    }
    run(); // warm-up
    const samples: number[] = [];
    for (let k = 0; k < c.repeats; k++) {
      run();
      samples.push(device.lastDeviceMs());
    }
    extra?.dispose();
    logits.dispose();
    const ms = median(samples);
    const gbPerSec = bytesMoved / (ms / 1e3) / 1e9;
    emit({
      op: c.op, backend: 'cuda', dtype: c.dtype, rows: c.rows, cols: c.cols, vocab: c.cols, threads: 1, medianMs: ms,
      elementsPerSec: (c.rows * c.cols) / (ms / 1e3), gbPerSec, readBandwidthGbPerSec: bandwidth.medianGbPerSec,
      bandwidthFraction: gbPerSec / bandwidth.medianGbPerSec, isa: null, samples: samples.length, device: name,
    });
  }
}
