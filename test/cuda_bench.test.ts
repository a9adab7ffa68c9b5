/**
 * `advantage-engine bench --backend cuda` end to end on the CPU emulation of the CUDA addon (its times mean
 * nothing; the path does): one JSON line per case with the bench fields, device time and the device's copy
 * bandwidth; and a clean coded refusal when no device is found.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const cli = path.join(root, 'dist', 'lib', 'cli.js');

function bench(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [cli, 'bench', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
}

/** The emulation addon, built on first use as test/cuda_emulation.test.ts does (cmake and a C++ compiler needed). */
const TOOLCHAIN = ['cmake', 'c++'].every((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);
let addon = '';
beforeAll(() => {
  if (!TOOLCHAIN) return;
  const build = spawnSync(process.execPath, [path.join(root, 'scripts', 'build_cuda.js'), '--emulation'], { cwd: root, encoding: 'utf8', timeout: 900_000 });
  if (build.status !== 0) throw new Error(`emulation build failed:\n${build.stdout}\n${build.stderr}`);
  addon = build.stdout.trim().split('\n').pop()!;
}, 900_000);

(fs.existsSync(cli) && TOOLCHAIN ? test : test.skip)('bench --backend cuda on the emulation: one result per op and dtype', () => {
  const r = bench(['--backend', 'cuda', '--op', 'token-stats,token-stats-backward,full-kl', '--dtype', 'bf16,f32', '--rows', '3', '--cols', '1000', '--json'],
    { ADVANTAGE_ENGINE_CUDA_ADDON: addon });
  expect(r.status).toBe(0);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((l) => `${l.op} ${l.dtype}`)).toEqual([
    'token-stats bf16', 'token-stats f32', 'token-stats-backward bf16', 'token-stats-backward f32', 'full-kl bf16', 'full-kl f32',
  ]);
  for (const l of lines) {
    expect(l).toMatchObject({ backend: 'cuda', rows: 3, cols: 1000, vocab: 1000, samples: 20 });
    expect(l.medianMs).toBeGreaterThan(0);
    expect(l.bandwidthFraction).toBeCloseTo(l.gbPerSec / l.readBandwidthGbPerSec, 12);
    const bytes = 3 * 1000 * (l.dtype === 'f32' ? 4 : 2);
    const moved = l.op === 'token-stats' ? bytes : l.op === 'full-kl' ? 2 * bytes : bytes + 3 * 1000 * 4;
    expect(l.gbPerSec).toBeCloseTo(moved / (l.medianMs / 1e3) / 1e9, 9);
  }
});

(fs.existsSync(cli) ? test : test.skip)('bench --backend cuda without a device: a clean refusal naming the reason', () => {
  const r = bench(['--backend', 'cuda', '--op', 'token-stats'], { ADVANTAGE_ENGINE_CUDA_ADDON: path.join(root, 'no-such-addon.node') });
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/the cuda backend is not available: ERR_AE_NO_BINARY/);
  expect(bench(['--backend', 'cuda', '--op', 'policy-loss']).status).toBe(2);
});
