/**
 * `advantage-engine bench --json` on the cpu and js backends, end to end: one line per configuration with
 * the fields issue 2 names (op, backend, dtype, rows, vocab, threads, medianMs, elementsPerSec, gbPerSec,
 * readBandwidthGbPerSec, bandwidthFraction), and the figures consistent with each other. Times are not
 * checked (the machine is shared); only that the derived figures follow from the measured median.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { backendInfo } from '../lib';

const root = path.resolve(__dirname, '..');
const cli = path.join(root, 'dist', 'lib', 'cli.js');
const native = backendInfo().native.loaded;

function benchJson(args: string[]): Record<string, unknown>[] {
  const r = spawnSync(process.execPath, [cli, 'bench', ...args, '--min-time', '0.05', '--json'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench exited with ${r.status}:\n${r.stderr}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

const FIELDS = ['op', 'backend', 'dtype', 'rows', 'vocab', 'threads', 'medianMs', 'elementsPerSec', 'gbPerSec',
  'readBandwidthGbPerSec', 'bandwidthFraction'];

(fs.existsSync(cli) && native ? test : test.skip)('logits ops: every field, on cpu and js, consistent with the median', () => {
  const lines = benchJson(['--op', 'token-stats,token-stats-backward', '--backend', 'cpu,js', '--dtype', 'f32,bf16',
    '--rows', '4', '--vocab', '1000', '--threads', '2']);
  expect(lines.map((l) => `${l.op} ${l.backend} ${l.dtype}`).sort()).toEqual([
    'token-stats bf16', 'token-stats f32', 'token-stats-backward bf16', 'token-stats-backward f32',
  ].flatMap((s) => { const [op, dtype] = s.split(' '); return [`${op} cpu ${dtype}`, `${op} js ${dtype}`]; }).sort());
  for (const l of lines) {
    for (const f of FIELDS) expect(l).toHaveProperty(f);
    expect(l).toMatchObject({ rows: 4, cols: 1000, vocab: 1000, threads: l.backend === 'cpu' ? 2 : 1 });
    const seconds = (l.medianMs as number) / 1e3;
    expect(seconds).toBeGreaterThan(0);
    expect(l.elementsPerSec).toBeCloseTo(4000 / seconds, 3);
    // token-stats reads the logits; the backward also writes an f32 gradient of the same shape.
    const logitBytes = 4000 * (l.dtype === 'f32' ? 4 : 2);
    const moved = l.op === 'token-stats' ? logitBytes : logitBytes + 4000 * 4;
    expect(l.gbPerSec).toBeCloseTo(moved / seconds / 1e9, 9);
    expect(l.readBandwidthGbPerSec).toBeGreaterThan(0);
    expect(l.bandwidthFraction).toBeCloseTo((l.gbPerSec as number) / (l.readBandwidthGbPerSec as number), 12);
  }
});

(fs.existsSync(cli) && native ? test : test.skip)('token-level ops name their columns cols only', () => {
  const [line] = benchJson(['--op', 'gae', '--backend', 'cpu', '--rows', '8', '--cols', '64']);
  expect(line).toMatchObject({ op: 'gae', rows: 8, cols: 64 });
  expect(line).not.toHaveProperty('vocab');
});
