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
