/**
 * What every CUDA emulation test file shares: whether it can run here, and the addon it runs on. Without a GPU
 * the kernels are built for the CPU emulation of the CUDA execution model (scripts/build_cuda.js --emulation,
 * cuda/emu/) and the public ops reach them through ADVANTAGE_ENGINE_CUDA_ADDON; with AE_CUDA_TEST=gpu
 * (`npm run test:gpu`) the same cases run on the GPU build. The emulation's thread schedule (forward, reverse,
 * random) is a test parameter: a kernel whose result depends on it has a race.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { cudaDevice, cudaStatus } from '../lib/cuda';

const ROOT = path.resolve(__dirname, '..');
export const GPU = process.env.AE_CUDA_TEST === 'gpu';
/** The emulation needs cmake and a C++ compiler (the GPU run needs neither here). */
export const TOOLCHAIN = GPU || ['cmake', 'c++'].every((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);

export interface EmulatorControls {
  emuSetSchedule(schedule: number, seed: number): void;
  /** Kernel launches so far (and more counters; test/cuda_emulation.test.ts reads them all). */
  emuCounters(): { launches: number };
}
export const SCHEDULES = [{ name: 'forward', kind: 0 }, { name: 'reverse', kind: 1 }, { name: 'random', kind: 2 }] as const;

/**
 * Builds the emulation addon (incremental; serialised across jest workers) and makes this module instance's
 * lib/cuda use it; returns the emulator's controls, or undefined on a GPU run. Throws when no device answers.
 */
export function loadCudaBackend(): EmulatorControls | undefined {
  const saved = process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
  if (!GPU) {
    const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build_cuda.js'), '--emulation'], {
      cwd: ROOT, encoding: 'utf8', timeout: 900_000,
    });
    if (build.status !== 0) throw new Error(`emulation build failed:\n${build.stdout}\n${build.stderr}`);
    process.env.ADVANTAGE_ENGINE_CUDA_ADDON = build.stdout.trim().split('\n').pop()!;
  }
  try {
    // The probe runs once per module instance and is cached: this file's ops use the addon found here.
    const status = cudaStatus();
    if (!status.available) throw new Error(`no cuda device: ${status.code}: ${status.message}`);
  } finally {
    if (saved === undefined) delete process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
    else process.env.ADVANTAGE_ENGINE_CUDA_ADDON = saved;
  }
  return GPU ? undefined : (cudaDevice().addon as unknown as EmulatorControls);
}

/**
 * Runs `fn` under each emulated thread schedule (once on a GPU) and returns the first result. Every later result
 * must carry the same bits in each typed array and the same value in every other field, nested objects
 * included: a difference means the kernel's result depends on the order its threads run in (a race).
 */
export function underEverySchedule<T>(emu: EmulatorControls | undefined, seed: number, label: string, fn: () => T): T {
  if (!emu) return fn();
  let first: T | undefined;
  for (const s of SCHEDULES) {
    emu.emuSetSchedule(s.kind, seed);
    const got = fn();
    if (first === undefined) first = got;
    else expectSameBits(got, first, `${label}: ${s.name} vs forward schedule`);
  }
  return first as T;
}

function expectSameBits(got: unknown, want: unknown, what: string): void {
  if (ArrayBuffer.isView(want) && !(want instanceof DataView)) {
    expect(got as ArrayLike<number>).toEqualBitwise(want as unknown as ArrayLike<number>, what);
  } else if (want !== null && typeof want === 'object') {
    for (const [key, value] of Object.entries(want)) expectSameBits((got as Record<string, unknown>)[key], value, `${what}.${key}`);
  } else {
    expect([what, got]).toEqual([what, want]);
  }
}
