/**
 * Backend selection: `cuda` → `cpu` (native addon) → `js`, chosen once at load and overridable globally
 * (`setBackend`, env ADVANTAGE_ENGINE_BACKEND) or per call (`backend` option). Importing never throws: every
 * failed attempt to load the addon is recorded with its code and message and reported by `backendInfo()`.
 * An explicitly requested backend that cannot run throws ERR_AE_BACKEND_UNAVAILABLE listing those attempts.
 *
 * cuda: only per call (`backend: 'cuda'`) on the ops of {@link CUDA_OPS}; `auto` never picks it, and neither
 * setBackend nor ADVANTAGE_ENGINE_BACKEND selects it engine-wide (the host-side ops — merges, entropyMask,
 * rewards without per-token kernels — have no CUDA kernels, and a global switch that some ops ignored would be
 * a silent surprise).
 */
import * as fs from 'fs';
import * as path from 'path';
import { EngineError, ErrorCode, argError } from './errors';
import type { NativeAddon } from './native';
import { cudaDevice, cudaStatus, type CudaDevice, type CudaKernelArgs, type CudaKernelOp, type CudaStatus } from './cuda';

export type BackendName = 'auto' | 'cuda' | 'cpu' | 'js';
export type ActiveBackend = 'cpu' | 'js';
const BACKEND_NAMES: readonly BackendName[] = ['auto', 'cuda', 'cpu', 'js'];

export interface LoadAttempt {
  candidate: string;
  code: string;
  message: string;
}

/**
 * Inputs with fewer elements than this go to the JS backend under 'auto': below it the fixed cost of a
 * native call (argument checks, thread hand-off) exceeds the work. Measured with
 * `advantage-engine bench --op call-overhead` (README, "Backends"): over six runs on the 2-core development
 * machine cpu overtook js at 220–630 elements for sync calls and 2.9k–7.8k for async ones (an AsyncWorker
 * hop costs 30–200 µs there).
 */
export const SMALL_INPUT_ELEMENTS = { sync: 512, async: 8192 } as const;

/** The directory holding our package.json: dist/lib/ when compiled, lib/ when run from source (ts-jest). */
function findPackageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..', '..');
  }
}
const packageRoot = findPackageRoot();

interface LoadState {
  addon?: NativeAddon;
  path?: string;
  attempts: LoadAttempt[];
}

function errorCode(error: unknown): string {
  return (error as { code?: string })?.code ?? 'ERR_DLOPEN_FAILED';
}

function loadNative(): LoadState {
  const attempts: LoadAttempt[] = [];
  if (process.env.ADVANTAGE_ENGINE_BACKEND === 'js') {
    attempts.push({ candidate: 'native addon', code: 'ERR_AE_DISABLED', message: 'ADVANTAGE_ENGINE_BACKEND=js' });
    return { attempts };
  }
  // node-gyp-build looks in build/Release (a local build) and prebuilds/<platform>-<arch>/ (shipped).
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as { (dir: string): unknown; path(dir: string): string };
    const file = load.path(packageRoot);
    try {
      const addon = require(file) as NativeAddon;
      checkAddon(addon);
      return { addon, path: file, attempts };
    } catch (error) {
      attempts.push({ candidate: file, code: errorCode(error), message: (error as Error).message });
    }
  } catch (error) {
    attempts.push({
      candidate: path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`),
      code: errorCode(error) === 'ERR_DLOPEN_FAILED' ? 'ERR_AE_NO_BINARY' : errorCode(error),
      message: (error as Error).message.split('\n')[0] + ' (build it with `npm run build:native`, or use the js backend)',
    });
  }
  return { attempts };
}

/** Every function the native addon of this build exports (native/addon/*.cc). */
export const NATIVE_FUNCTIONS = [
  'info', 'setIsa', 'setThreads', 'readBandwidth', 'tokenStats', 'tokenStatsBackward', 'tokenStatsPartial',
  'fullKl', 'policyLoss', 'klPenalty', 'rolloutCorrection', 'shmCreate', 'shmMap', 'shmUnmap', 'shmUnlink',
  'phaseEntropy', 'scatterSteps', 'implicitProcessReward', 'advantages', 'tokenAdvantages', 'momentsPartial',
  'placeOutcome', 'optimalTokenBaseline',
] as const satisfies readonly (keyof NativeAddon)[];

/** A loaded binary must expose this build's functions: an older or foreign .node is rejected with a reason. */
function checkAddon(addon: NativeAddon): void {
  for (const name of NATIVE_FUNCTIONS) {
    if (typeof addon[name] !== 'function') {
      throw new EngineError(ErrorCode.BACKEND_UNAVAILABLE, `the native addon lacks ${name}(): rebuild it (npm run build:native)`);
    }
  }
}

let state: LoadState | undefined;
function native(): LoadState {
  if (!state) state = loadNative();
  return state;
}

function parseBackend(value: unknown, param: string): BackendName {
  if (typeof value !== 'string' || !BACKEND_NAMES.includes(value as BackendName)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, param, `one of ${BACKEND_NAMES.join(' | ')}`, value);
  }
  return value as BackendName;
}

let requested: BackendName | undefined;
let envError: string | undefined;
function requestedBackend(): BackendName {
  if (requested === undefined) {
    const env = process.env.ADVANTAGE_ENGINE_BACKEND;
    requested = 'auto';
    if (env !== undefined && env !== '') {
      try {
        requested = parseBackend(env, 'ADVANTAGE_ENGINE_BACKEND');
        // cuda is chosen per call only (see CUDA_OPS): the variable is reported as a warning, not obeyed.
        if (requested === 'cuda') {
          requested = 'auto';
          noEngineWideCuda('ADVANTAGE_ENGINE_BACKEND');
        }
      } catch (error) {
        envError = (error as Error).message;
      }
    }
  }
  return requested;
}

/** Sets the engine-wide backend; 'cpu' throws ERR_AE_BACKEND_UNAVAILABLE when the addon is not loaded. */
export function setBackend(name: BackendName): void {
  const parsed = parseBackend(name, 'backend');
  if (parsed === 'cpu') requireNative('backend');
  if (parsed === 'cuda') noEngineWideCuda('backend');
  requested = parsed;
}

function requireNative(param: string): NativeAddon {
  const { addon, attempts } = native();
  if (addon) return addon;
  const detail = attempts.map((a) => `  ${a.candidate}: ${a.code}: ${a.message}`).join('\n');
  throw new EngineError(
    ErrorCode.BACKEND_UNAVAILABLE,
    `The cpu backend was requested (${param}) but the native addon did not load:\n${detail}`,
    { param, expected: 'a loadable native addon', received: 'none' },
  );
}

/** The public ops with CUDA kernels: `backend: 'cuda'` runs them on the device (lib/cuda.ts). */
export const CUDA_OPS = ['tokenStats', 'tokenStatsBackward', 'tokenStatsPartial', 'fullKl', 'policyLoss', 'rolloutCorrection', 'klPenalty',
  'gae', 'discountedReturns', 'reinforcePlusPlus', 'placeOutcome', 'optimalTokenBaseline', 'whiten', 'momentsPartial', 'advantages', 'advantagesPartial',
  'scatterSteps', 'implicitProcessReward', 'phaseEntropy'] as const;
export type CudaOp = (typeof CUDA_OPS)[number];

/**
 * An explicit 'cuda' request: the device, or ERR_AE_BACKEND_UNAVAILABLE with the reason (ERR_CUDA_UNAVAILABLE
 * and the driver's error, ERR_AE_NO_BINARY when the CUDA addon is not built, ERR_DLOPEN_FAILED).
 */
export function requireCuda(param: string): CudaDevice {
  const s = cudaStatus();
  if (s.available) return cudaDevice();
  throw new EngineError(ErrorCode.BACKEND_UNAVAILABLE, `The cuda backend was requested (${param}) but ${s.code}: ${s.message}`, {
    param, expected: 'an available cuda backend', received: s.code ?? 'cuda',
  });
}

/** 'cuda' reaching the cpu / js resolution: a coded error listing the ops that have CUDA kernels. */
function noCudaKernels(param: string): never {
  throw new EngineError(
    ErrorCode.BACKEND_UNAVAILABLE,
    `This op has no CUDA kernels (${param} 'cuda' serves ${CUDA_OPS.join(', ')}): use 'auto', 'cpu' or 'js'`,
    { param, expected: "'auto' | 'cpu' | 'js'", received: 'cuda' },
  );
}

function noEngineWideCuda(param: string): never {
  throw new EngineError(
    ErrorCode.BACKEND_UNAVAILABLE,
    `The cuda backend cannot be selected engine-wide (${param}): pass backend: 'cuda' per call to ${CUDA_OPS.join(', ')}`,
    { param, expected: "'auto' | 'cpu' | 'js'", received: 'cuda' },
  );
}

/** The native addon, or throws ERR_AE_BACKEND_UNAVAILABLE (bench and tools that need it explicitly). */
export function nativeAddon(): NativeAddon {
  return requireNative('native');
}

/**
 * Resolves the backend for one call. `elements` is the input size: under 'auto', inputs below the measured
 * break-even go to JS. 'cuda' throws ERR_AE_BACKEND_UNAVAILABLE (every op with a `backend` option handles 'cuda'
 * first: {@link resolveCudaBackend}, or its device op through {@link requireCuda}).
 */
export function resolveBackend(option: unknown, elements: number, async: boolean): ActiveBackend {
  const choice = option === undefined ? requestedBackend() : parseBackend(option, 'opts.backend');
  if (choice === 'js') return 'js';
  if (choice === 'cuda') noCudaKernels('opts.backend');
  if (choice === 'cpu') {
    requireNative('opts.backend');
    return 'cpu';
  }
  if (!native().addon) return 'js';
  return elements < SMALL_INPUT_ELEMENTS[async ? 'async' : 'sync'] ? 'js' : 'cpu';
}

/**
 * For the ops of {@link CUDA_OPS}: the CUDA device when `backend: 'cuda'` is asked for (or
 * ERR_AE_BACKEND_UNAVAILABLE saying why there is none), else the cpu / js choice of {@link resolveBackend}.
 */
export function resolveCudaBackend(option: unknown, elements: number, async: boolean): ActiveBackend | CudaDevice {
  if (option === 'cuda') return requireCuda('opts.backend');
  return resolveBackend(option, elements, async);
}

/**
 * The kernel `op` runs on for a resolved backend: the CUDA device's (its glue takes the cpu addon's positional
 * arguments), else the cpu addon's. Looked up only when called, so that on the js backend — which run() never
 * sends to a kernel — the addon need not load.
 */
export function kernelOf<K extends CudaKernelOp>(backend: ActiveBackend | CudaDevice, op: K): (...args: CudaKernelArgs<K>) => number | Promise<number> {
  return (...args: CudaKernelArgs<K>) => {
    if (backend !== 'js' && backend !== 'cpu') return backend.kernel(op, ...args);
    // Device handles reach here only past the ops' checks (device inputs select the cuda backend); the cpu
    // addon would refuse one with ERR_INVALID_ARG_TYPE.
    return (nativeAddon()[op] as unknown as (...a: CudaKernelArgs<K>) => number | Promise<number>)(...args);
  };
}

export interface BackendInfo {
  /** The backend a large call with no `backend` option runs on. */
  active: ActiveBackend;
  requested: BackendName;
  isa: string | null;
  isaAvailable: string[];
  isaCompiled: string[];
  threads: number;
  smallInputThreshold: { sync: number; async: number };
  native: { loaded: boolean; path?: string; attempts: LoadAttempt[] };
  /** The CUDA addon and device probe (loaded only when build-cuda/ holds the addon). */
  cuda: CudaStatus;
  /** Why each backend that is not active was skipped. */
  skipped: Record<string, string>;
  warnings: string[];
}

export function backendInfo(): BackendInfo {
  const { addon, path: file, attempts } = native();
  const want = requestedBackend();
  const info = addon?.info();
  const active: ActiveBackend = want === 'js' || !addon ? 'js' : 'cpu';
  const cuda = cudaStatus();
  // 'auto' never picks cuda: it runs per call (backend: 'cuda') on the ops with CUDA kernels.
  const skipped: Record<string, string> = {
    cuda: cuda.available
      ? `available per call (backend: 'cuda') for ${CUDA_OPS.join(', ')}, and through cudaDevice(); never picked by 'auto'`
      : `${cuda.code}: ${cuda.message}`,
  };
  if (active !== 'cpu') {
    skipped.cpu = addon
      ? `not selected (requested '${want}')`
      : attempts.map((a) => `${a.code}: ${a.message}`).join('; ') || 'native addon not loaded';
  }
  if (active !== 'js') skipped.js = 'the native cpu backend is loaded; js serves small inputs below smallInputThreshold';
  const warnings = [envError, info?.simdEnvError, info?.threadsEnvError].filter((w): w is string => !!w);
  return {
    active,
    requested: want,
    isa: info?.isa ?? null,
    isaAvailable: info?.isaAvailable ?? [],
    isaCompiled: info?.isaCompiled ?? [],
    threads: info?.threads ?? 1,
    smallInputThreshold: { ...SMALL_INPUT_ELEMENTS },
    native: { loaded: !!addon, ...(file ? { path: file } : {}), attempts },
    cuda,
    skipped,
    warnings,
  };
}

/** Resizes the native thread pool (results do not depend on it; only speed does). */
export function setThreads(threads: number): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw argError(ErrorCode.OUT_OF_RANGE, 'threads', 'an integer in [1, 1024]', threads);
  }
  requireNative('threads').setThreads(threads);
}

/** Narrows the native SIMD level to one of backendInfo().isaAvailable (tests force each level by name). */
export function setSimd(level: string): void {
  const addon = requireNative('simd');
  const available = addon.info().isaAvailable;
  if (typeof level !== 'string' || !available.includes(level)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'simd', `one of ${available.join(' | ')}`, level);
  }
  addon.setIsa(level);
}
