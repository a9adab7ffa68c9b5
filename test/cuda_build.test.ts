/**
 * Finding and loading the CUDA addon (lib/cuda.ts) and what backend selection (lib/backend.ts) makes of it:
 * the addon is loaded by explicit path only, its absence or a missing device is reported by backendInfo()
 * with a reason, an explicit `backend: 'cuda'` throws ERR_AE_BACKEND_UNAVAILABLE naming that reason, and
 * 'auto' never picks cuda. Each scenario loads the library afresh with ADVANTAGE_ENGINE_CUDA_ADDON pointing at
 * a missing file, at the emulation build (a working "device"), or at the GPU build where one was built.
 *
 * The nvcc compile of every kernel for sm_80/86/89/90 with the spill report is .ci/run's step 5
 * (scripts/cuda_compile_check.js, ≈ 50 s on 2 cores): too slow for `npm test`.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// The library's modules this test needs (not lib/index: the families in progress elsewhere stay out of it).
type Lib = typeof import('../lib/backend') & typeof import('../lib/ops/token_stats');
type CudaLib = typeof import('../lib/cuda');

const ROOT = path.resolve(__dirname, '..');
const TOOLCHAIN = ['cmake', 'c++'].every((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);

/** A fresh copy of the library with ADVANTAGE_ENGINE_CUDA_ADDON set to `addon` while it loads and probes. */
function withAddonPath<T>(addon: string, fn: (lib: Lib, cuda: CudaLib) => T): T {
  const saved = process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
  process.env.ADVANTAGE_ENGINE_CUDA_ADDON = addon;
  try {
    let result: T | undefined;
    jest.isolateModules(() => {
      /* eslint-disable @typescript-eslint/no-require-imports */
      const lib = { ...require('../lib/backend'), ...require('../lib/ops/token_stats') } as Lib;
      result = fn(lib, require('../lib/cuda') as CudaLib);
      /* eslint-enable @typescript-eslint/no-require-imports */
    });
    return result as T;
  } finally {
    if (saved === undefined) delete process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
    else process.env.ADVANTAGE_ENGINE_CUDA_ADDON = saved;
  }
}

const logits = () => ({ data: Float32Array.of(1, 2, 3, 4, 5, 6), shape: [2, 3], dtype: 'f32' as const });

test('no CUDA addon: backendInfo says not built, auto is unchanged, explicit cuda throws with the reason', () => {
  const missing = path.join(os.tmpdir(), `ae-no-such-addon-${process.pid}.node`);
  withAddonPath(missing, (ae, cuda) => {
    const info = ae.backendInfo();
    expect(info.cuda).toMatchObject({ available: false, code: 'ERR_AE_NO_BINARY', path: missing });
    expect(info.skipped.cuda).toMatch(/^ERR_AE_NO_BINARY: CUDA addon not built/);
    expect(['cpu', 'js']).toContain(info.active);
    expect(() => ae.tokenStatsSync(logits(), { backend: 'cuda' as never })).toThrow(
      expect.objectContaining({ code: 'ERR_AE_BACKEND_UNAVAILABLE', message: expect.stringMatching(/ERR_AE_NO_BINARY/) }),
    );
    expect(() => ae.setBackend('cuda' as never)).toThrow(expect.objectContaining({ code: 'ERR_AE_BACKEND_UNAVAILABLE', param: 'backend' }));
    expect(() => cuda.cudaDevice()).toThrow(expect.objectContaining({ code: 'ERR_AE_BACKEND_UNAVAILABLE' }));
    // 'auto' still computes (on cpu or js).
    expect(ae.tokenStatsSync(logits()).logsumexp).toHaveLength(2);
  });
});

test('a file that is not a CUDA addon is reported, not thrown at import', () => {
  const bogus = path.join(os.tmpdir(), `ae-bogus-addon-${process.pid}.node`);
  fs.writeFileSync(bogus, 'not a shared object');
  try {
    withAddonPath(bogus, (ae) => {
      const info = ae.backendInfo();
      expect(info.cuda).toMatchObject({ available: false, code: 'ERR_DLOPEN_FAILED' });
      expect(info.skipped.cuda).toMatch(/did not load/);
    });
  } finally {
    fs.rmSync(bogus, { force: true });
  }
});

(TOOLCHAIN ? test : test.skip)('the emulation build as the addon: a device is found, auto does not pick it, explicit cuda uses it', () => {
  const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build_cuda.js'), '--emulation'], { cwd: ROOT, encoding: 'utf8', timeout: 900_000 });
  expect(build.status).toBe(0);
  const file = build.stdout.trim().split('\n').pop()!;
  withAddonPath(file, (ae, cuda) => {
    const info = ae.backendInfo();
    expect(info.cuda).toMatchObject({ available: true, path: file, info: { build: 'emulation', deviceCount: 1 } });
    expect(info.skipped.cuda).toMatch(/available per call/);
    expect(['cpu', 'js']).toContain(info.active);
    expect(ae.tokenStatsSync(logits(), { backend: 'cuda' }).logsumexp).toEqual(cuda.cudaDevice().tokenStatsSync(logits()).logsumexp);
    const stats = cuda.cudaDevice().tokenStatsSync(logits());
    const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
    expect(stats.logsumexp![0]).toBeCloseTo(lse, 5);
    expect(stats.logsumexp![1]).toBeCloseTo(lse + 3, 5);
  });
}, 900_000);

// Where `npm run build:cuda` has run (nvcc present), the GPU build must load and either find a device or report
// the driver's reason (ERR_CUDA_UNAVAILABLE): on this project's CI machines, no GPU, cudaErrorInsufficientDriver
// or cudaErrorNoDevice.
const GPU_BUILD = path.join(ROOT, 'build-cuda', 'Release', 'advantage_engine_cuda.node');
(fs.existsSync(GPU_BUILD) ? test : test.skip)('the GPU build loads; without a device it reports the driver error', () => {
  withAddonPath(GPU_BUILD, (ae) => {
    const { cuda } = ae.backendInfo();
    if (cuda.available) {
      expect(cuda.info).toMatchObject({ build: 'cuda' });
      expect(cuda.info!.deviceCount).toBeGreaterThan(0);
    } else {
      expect(cuda).toMatchObject({ code: 'ERR_CUDA_UNAVAILABLE', info: { build: 'cuda', deviceCount: 0 } });
      expect(cuda.message).toMatch(/^cudaError\w+: /);
    }
  });
});
