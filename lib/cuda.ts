/**
 * The CUDA backend from TypeScript: finding and loading the CUDA addon (a second .node, built by cmake-js into
 * build-cuda/ and loaded by explicit path only), device memory (`toDevice` → {@link DeviceTensor},
 * `fromDevice`, `dispose()` with a FinalizationRegistry as the safety net), and the token statistics ops
 * (SPEC §1.1, §1.2, §1.3 shard states, §1.4) on device or host logits. Kernels: cuda/token_stats_kernels.cuh; host side:
 * cuda/token_stats.cu; glue: cuda/addon/. The per-token and per-row families (policy loss, KL, rollout
 * correction, advantages, rewards: cuda/<family>.cu) are reached through their public ops (`backend: 'cuda'`),
 * which call {@link CudaDevice.kernel} with the cpu addon's arguments.
 *
 * Where data lives: logits (and the backward's gradient) may be a DeviceTensor or a host tensor. Host logits
 * are streamed to the device in row chunks through pinned buffers, copies overlapping kernels. The f32 value
 * arrays of the statistics (`resultOn: 'device'`), of the backward's upstream gradients, and of policyLoss and
 * klPenalty may be DeviceTensors too (the glue reads a handle where an array may be; runtime.h passes device
 * memory through), so tokenStats → policyLoss → tokenStatsBackward keeps every per-token value array on the
 * device. Token ids, masks and per-row arrays are host arrays (bytes or B values, uploaded per call).
 *
 * The same code drives the emulation addon (the kernels compiled for the CPU emulation of the CUDA execution
 * model, cuda/emu/), opened with {@link openCudaAddon}; that is how it is tested on machines without a GPU.
 *
 * Decisions: the CUDA backend computes precision 'f32' only and reads f32 / bf16 / f16 logits (f64 and
 * precision 'f64' stay on the cpu backend); results are deterministic for a given shape and device, and
 * within the SPEC §1.1 bound of the float64 reference, but not bitwise equal to the cpu backend's.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EngineError, ErrorCode, argError } from './errors';
import * as is from './is';
import { DTYPE_BYTES, DTYPE_CODE, checkTensor, logitRows, type DType, type Tensor, type TensorData } from './tensor';
import { asyncForm, nonFiniteError, nonFiniteOf, precisionOf, rowMaskOf, syncForm, temperatureOf, type NonFinite } from './ops/run';
import { STAT_NAMES, type StatName, type TokenIds, type TokenStatsResult } from './ops/token_stats';
import type { TokenStatsPartial } from './ops/token_stats_shards';
import type { NativeAddon } from './native';

type F32 = Float32Array | null;
/** A per-row f32 array argument of the token-statistics glue: a host array, or a DeviceTensor's handle. */
type RowArg = F32 | number;

/** What the CUDA addon reports about its build and the device. */
export interface CudaInfo {
  /** 'cuda': compiled by nvcc for the GPU; 'emulation': the same kernels compiled for the CPU emulation. */
  build: 'cuda' | 'emulation';
  deviceCount: number;
  name?: string;
  multiprocessors?: number;
  computeCapability?: string;
  totalMemory?: number;
  driverVersion: number;
  runtimeVersion: number;
  /** Why no device can be used (the driver's error), when deviceCount is 0. */
  error?: string;
  errorName?: string;
  liveBuffers: number;
}

/** The CUDA addon's functions (cuda/addon/*.cc); positional arguments mirror the cuda::*Job structs. */
export interface CudaAddon {
  info(): CudaInfo;
  alloc(bytes: number): number;
  free(handle: number): boolean;
  copy(handle: number, data: ArrayBufferView, byteOffset: number, toDevice: boolean): void;
  setStagingChunkBytes(bytes: number): void;
  lastDeviceMs(): number;
  deviceBandwidth(bytes: number, repeats: number): { medianGbPerSec: number; bestGbPerSec: number; bytes: number; repeats: number };
  tokenStats<A extends boolean>(
    logits: number | TensorData, dtype: number, rows: number, vocab: number, tokens: Int32Array | null, temperature: number,
    rowMask: Uint8Array | null, entropy: RowArg, logprob: RowArg, logsumexp: RowArg, sumPiSquared: RowArg, maxProb: RowArg,
    splits: number, async: A,
  ): A extends true ? Promise<number> : number;
  tokenStatsBackward<A extends boolean>(
    logits: number | TensorData, dtype: number, rows: number, vocab: number, tokens: Int32Array | null, temperature: number,
    gradLogprob: RowArg, gradEntropy: RowArg, logsumexp: RowArg, entropy: RowArg, rowMask: Uint8Array | null, out: number | TensorData,
    outDtype: number, splits: number, async: A,
  ): A extends true ? Promise<number> : number;
  tokenStatsPartial<A extends boolean>(
    logits: number | TensorData, dtype: number, rows: number, vocab: number, tokens: Int32Array | null, vocabOffset: number,
    temperature: number, rowMask: Uint8Array | null, max: Float64Array, sumExp: Float64Array, sumExpU: Float64Array,
    sumExp2: Float64Array, targetLogit: Float64Array, splits: number, async: A,
  ): A extends true ? Promise<number> : number;
  fullKl<A extends boolean>(
    logits: number | TensorData, refLogits: number | TensorData, dtype: number, rows: number, vocab: number,
    temperature: number, rowMask: Uint8Array | null, out: RowArg, splits: number, async: A,
  ): A extends true ? Promise<number> : number;
  /** The CPU addon's policyLoss arguments, f32 only (`exact` is refused): cuda/addon/policy_loss.cc. */
  policyLoss: NativeAddon['policyLoss'];
  /** The CPU addon's klPenalty arguments, f32 only (`exact` is refused): cuda/addon/kl_penalty.cc. */
  klPenalty: NativeAddon['klPenalty'];
  /** The CPU addon's rolloutCorrection arguments, f32 only (`exact` is refused): cuda/addon/rollout_correction.cc. */
  rolloutCorrection: NativeAddon['rolloutCorrection'];
  /** The CPU addon's token-level advantage arguments, f32 or f64: cuda/addon/token_advantages.cc. */
  tokenAdvantages: NativeAddon['tokenAdvantages'];
  momentsPartial: NativeAddon['momentsPartial'];
  placeOutcome: NativeAddon['placeOutcome'];
  optimalTokenBaseline: NativeAddon['optimalTokenBaseline'];
  /** The CPU addon's advantages arguments, f32 or f64 outputs: cuda/addon/advantages.cc. */
  advantages: NativeAddon['advantages'];
  /** The CPU addon's process-reward and phase-entropy arguments, f32 or f64 inputs: cuda/addon/process_rewards.cc,
   * cuda/addon/phase_entropy.cc. */
  scatterSteps: NativeAddon['scatterSteps'];
  implicitProcessReward: NativeAddon['implicitProcessReward'];
  phaseEntropy: NativeAddon['phaseEntropy'];
}

/**
 * A kernel's positional arguments as the CUDA glue takes them: the CPU addon's, where each f32 value array may
 * also be a DeviceTensor's handle (glue::value_array reads the device buffer in place).
 */
export type CudaKernelArgs<K extends CudaKernelOp> = WithHandles<Parameters<NativeAddon[K]>>;
type WithHandles<P extends unknown[]> = { [I in keyof P]: Float32Array extends P[I] ? P[I] | number : P[I] };

/** The ops whose CUDA glue takes the CPU addon's arguments (see {@link CudaDevice.kernel}). */
export type CudaKernelOp =
  | 'policyLoss' | 'rolloutCorrection' | 'klPenalty' | 'advantages' | 'tokenAdvantages' | 'momentsPartial' | 'placeOutcome'
  | 'optimalTokenBaseline' | 'scatterSteps' | 'implicitProcessReward' | 'phaseEntropy';

const CUDA_DTYPES: readonly DType[] = ['f32', 'bf16', 'f16'];

/** Native errors carry the addon's codes: ERR_AE_CUDA (a CUDA call failed) becomes ERR_AE_NATIVE. */
function rethrow(error: unknown): never {
  const e = error as Error & { code?: string; cudaError?: string };
  if (e?.code === 'ERR_AE_CUDA') {
    const wrapped = new EngineError(ErrorCode.NATIVE, `CUDA: ${e.message}`);
    Object.defineProperty(wrapped, 'cudaError', { value: e.cudaError, enumerable: true });
    throw wrapped;
  }
  if (e?.code === 'ERR_AE_DISPOSED') throw new EngineError(ErrorCode.INVALID_ARG_VALUE, e.message);
  throw error;
}

// A DeviceTensor that is garbage-collected without dispose() frees its device buffer here. The held value is the
// handle and its addon, never the tensor itself.
const finalizer = new FinalizationRegistry<{ addon: CudaAddon; handle: number }>(({ addon, handle }) => {
  addon.free(handle);
});

/**
 * A tensor in device memory: shape and dtype like a {@link Tensor}, data on the GPU. Free it with
 * `dispose()` (idempotent); one that is garbage-collected undisposed is freed by a finalizer, later.
 */
export class DeviceTensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly length: number;
  readonly byteLength: number;
  readonly device: CudaDevice;
  #handle: number;

  /** @internal Use {@link CudaDevice.toDevice} or {@link CudaDevice.empty}. */
  constructor(device: CudaDevice, handle: number, shape: readonly number[], dtype: DType) {
    this.device = device;
    this.#handle = handle;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.length = shape.reduce((a, b) => a * b, 1);
    this.byteLength = this.length * DTYPE_BYTES[dtype];
    finalizer.register(this, { addon: device.addon, handle }, this);
  }

  get disposed(): boolean {
    return this.#handle === 0;
  }

  /** Frees the device memory now. Ops still running on this tensor keep it alive until they finish. */
  dispose(): void {
    if (this.#handle === 0) return;
    finalizer.unregister(this);
    this.device.addon.free(this.#handle);
    this.#handle = 0;
  }

  /** @internal The addon's handle; throws for a disposed tensor. */
  handle(param: string): number {
    if (this.#handle === 0) {
      throw new EngineError(ErrorCode.INVALID_ARG_VALUE, `Expected a DeviceTensor that is not disposed for ${param} but received a disposed one`, {
        param, expected: 'a DeviceTensor that is not disposed', received: 'a disposed DeviceTensor',
      });
    }
    return this.#handle;
  }
}

export interface CudaTokenStatsOptions {
  tokens?: TokenIds;
  temperature?: number;
  outputs?: readonly StatName[];
  rowMask?: Uint8Array;
  nonFinite?: NonFinite;
  /** Caller-provided outputs of N: Float32Arrays, or DeviceTensors with `resultOn: 'device'`. */
  out?: TokenStatsResult | DeviceTokenStats;
  /**
   * Where the statistics go: 'host' (default; Float32Arrays) or 'device' (f32 DeviceTensors of N, which
   * tokenStatsBackward, policyLoss and klPenalty take as they are).
   */
  resultOn?: ResultOn;
  /** Only 'f32' (the default) on the CUDA backend. */
  precision?: 'f32';
  /**
   * Chunks each row is split into across thread blocks (merged with the SPEC §1.3 state). Default: chosen
   * from the shape and the device (≥ V/32768, more when there are too few rows to fill the device).
   */
  blockSplit?: number;
}

/** Per-row statistics kept on the device (`resultOn: 'device'`). */
export type DeviceTokenStats = Partial<Record<StatName, DeviceTensor>>;
export type ResultOn = 'host' | 'device';

export interface CudaBackwardOptions {
  tokens?: TokenIds;
  temperature?: number;
  /** Per-row arrays of N: Float32Arrays or f32 DeviceTensors (e.g. policyLoss's gradLogprob on the device). */
  gradLogprob?: Float32Array | DeviceTensor;
  gradEntropy?: Float32Array | DeviceTensor;
  logsumexp?: Float32Array | DeviceTensor;
  entropy?: Float32Array | DeviceTensor;
  rowMask?: Uint8Array;
  /** Where the gradient goes: a DeviceTensor or a host array (f32, or the logits' dtype). Default: a new
   * f32 DeviceTensor for device logits, a new Float32Array for host logits. */
  out?: DeviceTensor | TensorData;
  /** Write the gradient over the logits (in their dtype), on the device or on the host. */
  inPlace?: boolean;
  precision?: 'f32';
  blockSplit?: number;
}

export interface CudaTokenStatsPartialOptions {
  /** Global token ids (any integer ≥ 0; those outside the shard give NaN targetLogit). */
  tokens?: TokenIds;
  /** Global vocabulary index of this shard's column 0. */
  vocabOffset: number;
  temperature?: number;
  rowMask?: Uint8Array;
  precision?: 'f32';
  blockSplit?: number;
}

export interface CudaFullKlOptions {
  temperature?: number;
  rowMask?: Uint8Array;
  nonFinite?: NonFinite;
  /** 'host' (default): a Float32Array; 'device': an f32 DeviceTensor of N. */
  resultOn?: ResultOn;
  precision?: 'f32';
  blockSplit?: number;
}

type Logits = { source: number | TensorData; dtype: DType; rows: number; vocab: number; shape: readonly number[] };

const FORWARD_KEYS = ['tokens', 'temperature', 'outputs', 'rowMask', 'nonFinite', 'out', 'resultOn', 'precision', 'blockSplit'] as const;
const BACKWARD_KEYS = [
  'tokens', 'temperature', 'gradLogprob', 'gradEntropy', 'logsumexp', 'entropy', 'rowMask', 'out', 'inPlace', 'precision',
  'blockSplit',
] as const;
const PARTIAL_KEYS = ['tokens', 'vocabOffset', 'temperature', 'rowMask', 'precision', 'blockSplit'] as const;
const KL_KEYS = ['temperature', 'rowMask', 'nonFinite', 'resultOn', 'precision', 'blockSplit'] as const;

function resultOnOf(value: unknown): ResultOn {
  return value === undefined ? 'host' : is.oneOf(value, 'opts.resultOn', ['host', 'device'] as const);
}

function splitOf(value: unknown): number {
  if (value === undefined) return 0;
  const n = is.numberInRange(value, 'opts.blockSplit', 1, 65536);
  if (!Number.isInteger(n)) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.blockSplit', 'an integer in [1, 65536]', value);
  return n;
}

function f32Only(value: unknown): void {
  if (precisionOf(value) !== 'f32') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.precision', "'f32' on the cuda backend (use the cpu backend for 'f64')", value);
  }
}

/** One CUDA addon (the GPU build or the emulation) and the device behind it. */
export class CudaDevice {
  /** @internal */ readonly addon: CudaAddon;
  readonly path: string;

  constructor(addon: CudaAddon, file: string) {
    this.addon = addon;
    this.path = file;
  }

  info(): CudaInfo {
    return this.addon.info();
  }

  /** Device time (ms) of the kernels of the last op (CUDA events around them on the compute stream). */
  lastDeviceMs(): number {
    return this.addon.lastDeviceMs();
  }

  /**
   * The device's memory bandwidth, measured by device-to-device copies of `bytes` (GB/s of bytes read plus
   * bytes written, median and best of `repeats`): the yardstick for the kernels' figures.
   */
  measureBandwidth(bytes = 1 << 30, repeats = 20): { medianGbPerSec: number; bestGbPerSec: number; bytes: number; repeats: number } {
    try {
      return this.addon.deviceBandwidth(bytes, repeats);
    } catch (error) {
      rethrow(error);
    }
  }

  /**
   * Bytes of host logits staged per chunk (default 32 MiB): chunk c is copied while chunk c − 1 computes.
   * Larger chunks amortise per-chunk costs; smaller ones start the kernels sooner.
   */
  setStagingChunkBytes(bytes: number): void {
    this.addon.setStagingChunkBytes(Math.floor(is.numberInRange(bytes, 'bytes', 1, Number.MAX_SAFE_INTEGER)));
  }

  /** An uninitialised device tensor of `shape` and `dtype` (f32, bf16 or f16). */
  empty(shape: readonly number[], dtype: DType): DeviceTensor {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, 'shape', 'an array of non-negative integers', shape);
    }
    if (!CUDA_DTYPES.includes(dtype)) throw argError(ErrorCode.DTYPE, 'dtype', `one of ${CUDA_DTYPES.join(' | ')}`, dtype);
    const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    try {
      return new DeviceTensor(this, this.addon.alloc(bytes), shape, dtype);
    } catch (error) {
      rethrow(error);
    }
  }

  /**
   * Copies a host tensor (f32, bf16 or f16; any shape) to a new device tensor of the same shape and dtype; a
   * Float32Array (a per-token array such as logprob) becomes one of shape [length].
   */
  toDevice(t: Tensor | Float32Array): DeviceTensor {
    const tensor: Tensor = t instanceof Float32Array ? { data: t, shape: [t.length], dtype: 'f32' } : t;
    checkTensor(tensor, 'tensor');
    if (!CUDA_DTYPES.includes(tensor.dtype)) {
      throw argError(ErrorCode.DTYPE, 'tensor.dtype', `one of ${CUDA_DTYPES.join(' | ')} on the cuda backend`, tensor.dtype);
    }
    const d = this.empty(tensor.shape, tensor.dtype);
    try {
      this.addon.copy(d.handle('tensor'), tensor.data, 0, true);
    } catch (error) {
      d.dispose();
      rethrow(error);
    }
    return d;
  }

  /** Copies a device tensor back to the host (into `out` when given: an array of its dtype's kind and length). */
  fromDevice(d: DeviceTensor, out?: TensorData): Tensor {
    this.own(d, 'deviceTensor');
    const data = out ?? (d.dtype === 'f32' ? new Float32Array(d.length) : new Uint16Array(d.length));
    const kind = d.dtype === 'f32' ? Float32Array : Uint16Array;
    if (!(data instanceof kind) || data.length !== d.length) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, 'out', `a ${kind.name} of ${d.length} elements`, out);
    }
    try {
      this.addon.copy(d.handle('deviceTensor'), data, 0, false);
    } catch (error) {
      rethrow(error);
    }
    return { data, shape: d.shape, dtype: d.dtype };
  }

  private own(d: unknown, param: string): DeviceTensor {
    if (!(d instanceof DeviceTensor)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a DeviceTensor', d);
    if (d.device !== this) throw argError(ErrorCode.INVALID_ARG_VALUE, param, 'a DeviceTensor of this device', d);
    d.handle(param);
    return d;
  }

  private logits(value: unknown, param: string): Logits {
    if (value instanceof DeviceTensor) {
      this.own(value, param);
      const shape = value.shape;
      if (shape.length < 2 || shape.length > 3 || shape[shape.length - 1] === 0) {
        throw argError(ErrorCode.SHAPE_MISMATCH, `${param}.shape`, '[N, V] or [B, T, V] with V ≥ 1', `[${shape.join(', ')}]`);
      }
      const vocab = shape[shape.length - 1];
      return { source: value.handle(param), dtype: value.dtype, rows: value.length / vocab, vocab, shape };
    }
    const { tensor, rows, vocab } = hostTensor(value, param);
    return { source: tensor.data, dtype: tensor.dtype, rows, vocab, shape: tensor.shape };
  }

  /** @internal */
  tokenStatsImpl(
    async: boolean, logits: Tensor | DeviceTensor, options?: CudaTokenStatsOptions,
  ): TokenStatsResult | DeviceTokenStats | Promise<TokenStatsResult | DeviceTokenStats> {
    const opts = is.options(options, 'opts', FORWARD_KEYS);
    const z = this.logits(logits, 'logits');
    f32Only(opts.precision);
    const temperature = temperatureOf(opts.temperature);
    const rowMask = rowMaskOf(opts.rowMask, z.rows);
    const tokens = opts.tokens === undefined ? null : is.tokenIds(opts.tokens, 'opts.tokens', z.rows, z.vocab, rowMask ?? undefined);
    const nonFinite = nonFiniteOf(opts.nonFinite);
    let wanted: readonly StatName[] = tokens ? STAT_NAMES : STAT_NAMES.filter((n) => n !== 'logprob');
    if (opts.outputs !== undefined) {
      if (!Array.isArray(opts.outputs) || opts.outputs.length === 0) {
        throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.outputs', `a non-empty array of ${STAT_NAMES.join(', ')}`, opts.outputs);
      }
      wanted = opts.outputs.map((name, k) => is.oneOf(name, `opts.outputs[${k}]`, STAT_NAMES));
      if (wanted.includes('logprob') && !tokens) {
        throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.outputs', "'logprob' only together with opts.tokens", 'logprob');
      }
    }
    const given = opts.out === undefined ? {} : is.options(opts.out, 'opts.out', STAT_NAMES);
    const onDevice = resultOnOf(opts.resultOn) === 'device';
    const out: Partial<Record<StatName, Float32Array | DeviceTensor>> = {};
    for (const name of wanted) {
      if (given[name] === undefined) continue;
      const param = `opts.out.${name}`;
      out[name] = onDevice ? this.values(given[name], param, z.rows, 'device') : is.float32Of(given[name], param, z.rows);
    }
    // New outputs once every given one has passed (no device memory is allocated for a call that fails its checks).
    for (const name of wanted) out[name] ??= onDevice ? this.empty([z.rows], 'f32') : new Float32Array(z.rows);
    const splits = splitOf(opts.blockSplit);
    const finish = (bad: number) => {
      if (bad >= 0 && nonFinite === 'throw') throw nonFiniteError(bad, 'tokenStats');
      return out as TokenStatsResult | DeviceTokenStats;
    };
    const arg = (name: StatName) => (out[name] === undefined ? null : kernelArg(out[name], `opts.out.${name}`));
    return this.call(async, finish, (a) => this.addon.tokenStats(
      z.source, DTYPE_CODE[z.dtype], z.rows, z.vocab, tokens, temperature, rowMask,
      arg('entropy'), arg('logprob'), arg('logsumexp'), arg('sumPiSquared'), arg('maxProb'), splits, a,
    ));
  }

  /**
   * @internal A per-row / per-token f32 array on this device: a live f32 DeviceTensor of `length` elements (any
   * shape), or with `where` 'any' also a host Float32Array.
   */
  values(value: unknown, param: string, length: number, where: 'device' | 'any'): DeviceTensor | Float32Array {
    if (!(value instanceof DeviceTensor)) {
      if (where === 'any') return is.float32Of(value, param, length);
      throw argError(ErrorCode.INVALID_ARG_TYPE, param, `a DeviceTensor of ${length} f32 elements`, value);
    }
    this.own(value, param);
    if (value.dtype !== 'f32') throw argError(ErrorCode.DTYPE, `${param}.dtype`, "'f32'", value.dtype);
    if (value.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `a DeviceTensor of ${length} elements`, `${value.length}`);
    return value;
  }

  /** @internal */
  tokenStatsBackwardImpl(
    async: boolean, logits: Tensor | DeviceTensor, options: CudaBackwardOptions,
  ): DeviceTensor | TensorData | Promise<DeviceTensor | TensorData> {
    const opts = is.options(options, 'opts', BACKWARD_KEYS);
    const z = this.logits(logits, 'logits');
    f32Only(opts.precision);
    const temperature = temperatureOf(opts.temperature);
    const rowMask = rowMaskOf(opts.rowMask, z.rows);
    const row = (name: 'gradLogprob' | 'gradEntropy' | 'logsumexp' | 'entropy') =>
      opts[name] === undefined ? null : kernelArg(this.values(opts[name], `opts.${name}`, z.rows, 'any'), `opts.${name}`);
    const gradLogprob = row('gradLogprob');
    const gradEntropy = row('gradEntropy');
    if (!gradLogprob && !gradEntropy) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts', 'at least one of gradLogprob, gradEntropy', options);
    if (gradLogprob && opts.tokens === undefined) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.tokens', 'token ids (gradLogprob needs them)', undefined);
    }
    const tokens = opts.tokens === undefined ? null : is.tokenIds(opts.tokens, 'opts.tokens', z.rows, z.vocab, rowMask ?? undefined);
    const logsumexp = row('logsumexp');
    const entropy = row('entropy');
    if (entropy && !logsumexp) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.entropy', 'only together with opts.logsumexp', 'given');
    const inPlace = opts.inPlace ?? false;
    if (typeof inPlace !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.inPlace', 'a boolean', inPlace);
    let result: DeviceTensor | TensorData;
    let target: number | TensorData;
    let outDtype: DType;
    const elements = z.rows * z.vocab;
    if (inPlace) {
      if (opts.out !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.out', 'no out buffer with inPlace', opts.out);
      result = logits instanceof DeviceTensor ? logits : (logits as Tensor).data;
      target = z.source;
      outDtype = z.dtype;
    } else if (opts.out instanceof DeviceTensor) {
      const d = this.own(opts.out, 'opts.out');
      if (d.length !== elements) throw argError(ErrorCode.SHAPE_MISMATCH, 'opts.out', `${elements} elements (N·V)`, `${d.length}`);
      if (d.dtype !== 'f32' && d.dtype !== z.dtype) throw argError(ErrorCode.DTYPE, 'opts.out.dtype', `'f32' or '${z.dtype}'`, d.dtype);
      result = d;
      target = d.handle('opts.out');
      outDtype = d.dtype;
    } else if (opts.out !== undefined) {
      const given = opts.out;
      const own = z.dtype === 'f32' ? Float32Array : Uint16Array;
      if (!(given instanceof Float32Array) && !(given instanceof own)) {
        throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.out', `a DeviceTensor, Float32Array or ${own.name} of ${elements} elements`, given);
      }
      if (given.length !== elements) throw argError(ErrorCode.SHAPE_MISMATCH, 'opts.out', `${elements} elements (N·V)`, given);
      result = given;
      target = given;
      outDtype = given instanceof Float32Array ? 'f32' : z.dtype;
    } else if (logits instanceof DeviceTensor) {
      const d = this.empty(z.shape, 'f32');
      result = d;
      target = d.handle('out');
      outDtype = 'f32';
    } else {
      const host = new Float32Array(elements);
      result = host;
      target = host;
      outDtype = 'f32';
    }
    const splits = splitOf(opts.blockSplit);
    const finish = (bad: number) => {
      if (bad >= 0) throw nonFiniteError(bad, 'tokenStatsBackward');
      return result;
    };
    return this.call(async, finish, (a) => this.addon.tokenStatsBackward(
      z.source, DTYPE_CODE[z.dtype], z.rows, z.vocab, tokens, temperature, gradLogprob, gradEntropy, logsumexp, entropy,
      rowMask, target, DTYPE_CODE[outDtype], splits, a,
    ));
  }

  /** @internal */
  tokenStatsPartialImpl(async: boolean, shard: Tensor | DeviceTensor, options: CudaTokenStatsPartialOptions): TokenStatsPartial | Promise<TokenStatsPartial> {
    const opts = is.options(options, 'opts', PARTIAL_KEYS);
    const z = this.logits(shard, 'logitsShard');
    const vocabOffset = is.nonNegativeInteger(opts.vocabOffset, 'opts.vocabOffset');
    f32Only(opts.precision);
    const temperature = temperatureOf(opts.temperature);
    const rowMask = rowMaskOf(opts.rowMask, z.rows);
    // Global ids: any int32 ≥ 0 (ids past the shard give NaN targets), as on the cpu backend.
    const tokens = opts.tokens === undefined ? null : is.tokenIds(opts.tokens, 'opts.tokens', z.rows, 2147483647, rowMask ?? undefined);
    const out: TokenStatsPartial = {
      rows: z.rows, max: new Float64Array(z.rows), sumExp: new Float64Array(z.rows), sumExpU: new Float64Array(z.rows),
      sumExp2: new Float64Array(z.rows), targetLogit: new Float64Array(z.rows),
    };
    const splits = splitOf(opts.blockSplit);
    const finish = (bad: number) => {
      if (bad >= 0) throw nonFiniteError(bad, 'tokenStatsPartial');
      return out;
    };
    return this.call(async, finish, (a) => this.addon.tokenStatsPartial(
      z.source, DTYPE_CODE[z.dtype], z.rows, z.vocab, tokens, vocabOffset, temperature, rowMask,
      out.max, out.sumExp, out.sumExpU, out.sumExp2, out.targetLogit, splits, a,
    ));
  }

  /** @internal */
  fullKlImpl(
    async: boolean, logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options?: CudaFullKlOptions,
  ): Float32Array | DeviceTensor | Promise<Float32Array | DeviceTensor> {
    const opts = is.options(options, 'opts', KL_KEYS);
    const p = this.logits(logits, 'logits');
    const q = this.logits(refLogits, 'refLogits');
    if (q.dtype !== p.dtype) throw argError(ErrorCode.DTYPE, 'refLogits.dtype', `'${p.dtype}' (the dtype of logits)`, q.dtype);
    if (q.rows !== p.rows || q.vocab !== p.vocab) {
      throw argError(ErrorCode.SHAPE_MISMATCH, 'refLogits.shape', `[${p.shape.join(', ')}]`, `[${q.shape.join(', ')}]`);
    }
    f32Only(opts.precision);
    const temperature = temperatureOf(opts.temperature);
    const rowMask = rowMaskOf(opts.rowMask, p.rows);
    const nonFinite = nonFiniteOf(opts.nonFinite);
    const out = resultOnOf(opts.resultOn) === 'device' ? this.empty([p.rows], 'f32') : new Float32Array(p.rows);
    const splits = splitOf(opts.blockSplit);
    const finish = (bad: number) => {
      if (bad >= 0 && nonFinite === 'throw') throw nonFiniteError(bad, 'fullKl');
      return out;
    };
    return this.call(async, finish, (a) => this.addon.fullKl(
      p.source, q.source, DTYPE_CODE[p.dtype], p.rows, p.vocab, temperature, rowMask, kernelArg(out, 'out'), splits, a,
    ));
  }

  private call<T>(async: boolean, finish: (bad: number) => T, job: (async: boolean) => number | Promise<number>): T | Promise<T> {
    if (!async) {
      let bad: number;
      try {
        bad = job(false) as number;
      } catch (error) {
        rethrow(error);
      }
      return finish(bad);
    }
    let pending: Promise<number>;
    try {
      pending = job(true) as Promise<number>;
    } catch (error) {
      rethrow(error);
    }
    return pending.then(finish, rethrow);
  }

  /**
   * @internal The kernel of an op whose CUDA glue takes the CPU addon's positional arguments (lib/ops/* build
   * them once for either backend; the last one is `async`); CUDA failures become ERR_AE_NATIVE like the other ops'.
   */
  kernel<K extends CudaKernelOp>(op: K, ...args: CudaKernelArgs<K>): number | Promise<number> {
    const fn = this.addon[op] as unknown as (...a: CudaKernelArgs<K>) => number | Promise<number>;
    return this.call(args[args.length - 1] === true, (bad) => bad, () => fn(...args));
  }

  /**
   * Token statistics (SPEC §1.1) of device or host logits [N, V] / [B, T, V] in f32, bf16 or f16: entropy,
   * logprob (with tokens), logsumexp, sumPiSquared, maxProb, as Float32Array(N) each. Same options as
   * `tokenStats` (precision 'f32' only), plus `blockSplit`.
   */
  tokenStats = asyncForm((async: boolean, logits: Tensor | DeviceTensor, options?: CudaTokenStatsOptions) =>
    this.tokenStatsImpl(async, logits, options)) as {
    (logits: Tensor | DeviceTensor, options: CudaTokenStatsOptions & { resultOn: 'device' }): Promise<DeviceTokenStats>;
    (logits: Tensor | DeviceTensor, options?: CudaTokenStatsOptions): Promise<TokenStatsResult>;
  };
  tokenStatsSync = syncForm((async: boolean, logits: Tensor | DeviceTensor, options?: CudaTokenStatsOptions) =>
    this.tokenStatsImpl(async, logits, options)) as {
    (logits: Tensor | DeviceTensor, options: CudaTokenStatsOptions & { resultOn: 'device' }): DeviceTokenStats;
    (logits: Tensor | DeviceTensor, options?: CudaTokenStatsOptions): TokenStatsResult;
  };

  /**
   * The gradient with respect to the logits (SPEC §1.2), written in one pass: into a new f32 DeviceTensor for
   * device logits (a new Float32Array for host logits), into `out`, or over the logits with `inPlace`.
   */
  tokenStatsBackward = asyncForm((async: boolean, logits: Tensor | DeviceTensor, options: CudaBackwardOptions) =>
    this.tokenStatsBackwardImpl(async, logits, options));
  tokenStatsBackwardSync = syncForm((async: boolean, logits: Tensor | DeviceTensor, options: CudaBackwardOptions) =>
    this.tokenStatsBackwardImpl(async, logits, options));

  /**
   * The mergeable softmax state of one vocabulary shard (SPEC §1.3) of device or host logits [N, Vshard] /
   * [B, T, Vshard] in f32, bf16 or f16: per row M, Σ exp(u−M), Σ exp(u−M)·u, Σ exp(2(u−M)) and u_y (NaN when
   * token y is outside the shard), Float64Array(N) each. Same options as `tokenStatsPartial` (precision 'f32'
   * only), plus `blockSplit`; merge the shards' states with `mergeTokenStats`.
   */
  tokenStatsPartial = asyncForm((async: boolean, shard: Tensor | DeviceTensor, options: CudaTokenStatsPartialOptions) =>
    this.tokenStatsPartialImpl(async, shard, options));
  tokenStatsPartialSync = syncForm((async: boolean, shard: Tensor | DeviceTensor, options: CudaTokenStatsPartialOptions) =>
    this.tokenStatsPartialImpl(async, shard, options));

  /** Full-vocabulary KL(p‖q) per row (SPEC §1.4), one pass over both inputs; Float32Array(N) (or a DeviceTensor). */
  fullKl = asyncForm((async: boolean, logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options?: CudaFullKlOptions) =>
    this.fullKlImpl(async, logits, refLogits, options)) as {
    (logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options: CudaFullKlOptions & { resultOn: 'device' }): Promise<DeviceTensor>;
    (logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options?: CudaFullKlOptions): Promise<Float32Array>;
  };
  fullKlSync = syncForm((async: boolean, logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options?: CudaFullKlOptions) =>
    this.fullKlImpl(async, logits, refLogits, options)) as {
    (logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options: CudaFullKlOptions & { resultOn: 'device' }): DeviceTensor;
    (logits: Tensor | DeviceTensor, refLogits: Tensor | DeviceTensor, options?: CudaFullKlOptions): Float32Array;
  };
}

/** @internal Whether any of `values` is a DeviceTensor: a per-token op then runs on the cuda backend. */
export function anyOnDevice(...values: unknown[]): boolean {
  return values.some((v) => v instanceof DeviceTensor);
}

/**
 * @internal The checks of a call with DeviceTensor value arrays: it runs on the cuda backend in f32, so another
 * backend option or precision 'f64' is ERR_INVALID_ARG_VALUE.
 */
export function checkDeviceCall(backend: unknown, precision: unknown): void {
  if (backend !== undefined && backend !== 'auto' && backend !== 'cuda') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.backend', "'cuda' (or none) with DeviceTensor inputs", backend);
  }
  if (precisionOf(precision) !== 'f32') throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.precision', "'f32' with DeviceTensor inputs (the cuda backend)", precision);
}

/**
 * @internal A value array of a per-token / per-row op on the device: a live f32 DeviceTensor of this process's
 * device with `length` elements (any shape). Its data is read in place by the kernels.
 */
export function deviceValues(value: DeviceTensor, param: string, length: number): DeviceTensor {
  return cudaDevice().values(value, param, length, 'device') as DeviceTensor;
}

/**
 * @internal The outputs of a per-token op kept on the device, `given[name]` under `opts.out.<name>`: the caller's
 * DeviceTensors (checked as {@link deviceValues}, distinct, and none of `inputs`: the kernels read inputs while
 * writing outputs), and new f32 tensors of shape [length] for the rest, allocated once every check has passed.
 */
export function deviceOutputs<K extends string>(
  given: Partial<Record<K, unknown>>, names: readonly K[], length: number, inputs: readonly unknown[],
): Record<K, DeviceTensor> {
  const device = cudaDevice();
  const taken = [...inputs];
  for (const name of names) {
    if (given[name] === undefined) continue;
    const param = `opts.out.${name}`;
    const d = device.values(given[name], param, length, 'device');
    if (taken.includes(d)) throw argError(ErrorCode.INVALID_ARG_VALUE, param, 'a tensor that is neither an input nor another output', 'one of them');
    taken.push(d);
  }
  const out = {} as Record<K, DeviceTensor>;
  for (const name of names) out[name] = (given[name] as DeviceTensor | undefined) ?? device.empty([length], 'f32');
  return out;
}

/** @internal What the CUDA glue reads for an array argument: a DeviceTensor's handle, a host array as it is. */
export function kernelArg<T>(value: T | DeviceTensor, param: string): T | number {
  return value instanceof DeviceTensor ? value.handle(param) : value;
}

function hostTensor(value: unknown, param: string): { tensor: Tensor; rows: number; vocab: number } {
  const { tensor, rows, vocab } = logitRows(value, param);
  if (!CUDA_DTYPES.includes(tensor.dtype)) {
    throw argError(ErrorCode.DTYPE, `${param}.dtype`, `one of ${CUDA_DTYPES.join(' | ')} on the cuda backend (f64 runs on cpu)`, tensor.dtype);
  }
  return { tensor, rows, vocab };
}

const REQUIRED = [
  'info', 'alloc', 'free', 'copy', 'setStagingChunkBytes', 'lastDeviceMs', 'deviceBandwidth', 'tokenStats', 'tokenStatsBackward', 'fullKl',
  'tokenStatsPartial', 'policyLoss', 'rolloutCorrection', 'klPenalty', 'tokenAdvantages', 'momentsPartial', 'placeOutcome',
  'optimalTokenBaseline', 'advantages', 'scatterSteps', 'implicitProcessReward', 'phaseEntropy',
] as const;

/**
 * Opens the CUDA addon at an explicit path (the GPU build, or the emulation build in tests). Throws
 * ERR_AE_BACKEND_UNAVAILABLE when it cannot be loaded or lacks this build's functions.
 */
export function openCudaAddon(file: string): CudaDevice {
  let addon: CudaAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(path.resolve(file)) as CudaAddon;
  } catch (error) {
    throw new EngineError(ErrorCode.BACKEND_UNAVAILABLE, `the CUDA addon ${file} did not load: ${(error as Error).message}`);
  }
  for (const name of REQUIRED) {
    if (typeof addon[name] !== 'function') {
      throw new EngineError(ErrorCode.BACKEND_UNAVAILABLE, `the CUDA addon ${file} lacks ${name}(): rebuild it (npm run build:cuda)`);
    }
  }
  return new CudaDevice(addon, file);
}

/** Where the GPU build of the CUDA addon lives: env ADVANTAGE_ENGINE_CUDA_ADDON, else build-cuda/Release/. */
export function cudaAddonPath(): string {
  const env = process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
  if (env) return path.resolve(env);
  let dir = __dirname;
  while (!(fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp')))) {
    if (path.dirname(dir) === dir) {
      dir = path.resolve(__dirname, '..', '..');
      break;
    }
    dir = path.dirname(dir);
  }
  return path.join(dir, 'build-cuda', 'Release', 'advantage_engine_cuda.node');
}

/** Whether the CUDA backend can run here, and if not, why (for backendInfo()). */
export interface CudaStatus {
  available: boolean;
  path: string;
  /** ERR_AE_NO_BINARY (not built), ERR_DLOPEN_FAILED, ERR_CUDA_UNAVAILABLE (no device / driver error). */
  code?: string;
  message?: string;
  info?: CudaInfo;
}

let status: CudaStatus | undefined;
let defaultDevice: CudaDevice | undefined;

/** Probes once: the addon is loaded only when its file exists, and used only when it finds a device. */
export function cudaStatus(): CudaStatus {
  if (status) return status;
  const file = cudaAddonPath();
  if (!fs.existsSync(file)) {
    status = { available: false, path: file, code: 'ERR_AE_NO_BINARY', message: `CUDA addon not built (${file}; npm run build:cuda needs nvcc)` };
    return status;
  }
  try {
    const device = openCudaAddon(file);
    const info = device.info();
    if (info.deviceCount > 0) {
      defaultDevice = device;
      status = { available: true, path: file, info };
    } else {
      // info.error names the driver's error ("cudaErrorNoDevice: no CUDA-capable device is detected").
      status = { available: false, path: file, code: 'ERR_CUDA_UNAVAILABLE', message: info.error ?? 'no CUDA device found', info };
    }
  } catch (error) {
    status = { available: false, path: file, code: 'ERR_DLOPEN_FAILED', message: (error as Error).message };
  }
  return status;
}

/** The CUDA device of this process, or ERR_AE_BACKEND_UNAVAILABLE saying why there is none. */
export function cudaDevice(): CudaDevice {
  const s = cudaStatus();
  if (!s.available || !defaultDevice) {
    throw new EngineError(ErrorCode.BACKEND_UNAVAILABLE, `The cuda backend is not available: ${s.code}: ${s.message}`, {
      param: 'backend', expected: 'a CUDA device and the CUDA addon', received: s.code,
    });
  }
  return defaultDevice;
}
