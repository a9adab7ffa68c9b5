/**
 * The Python bridge's benchmark (`advantage-engine bench-bridge`): the median round trip of a tiny request
 * from Python (target ≤ 100 µs) and tokenStats on rows × vocab f32 logits called from Python through the
 * bridge with shared memory, against the same async call made directly in Node (target ≥ 0.7 of its
 * speed). The Python half is python/advantage_engine/bench.py, run with `python3` (--python) on this
 * checkout's package; both halves run in this command, one after the other, on the same machine.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { tokenStats } from '../lib/ops/token_stats';
import { tensor } from '../lib/tensor';
import { Sfc32 } from '../lib/prng';

export interface BridgeBenchOptions {
  rows: number;
  vocab: number;
  repeats: number;
  tiny: number;
  python: string;
  json: boolean;
}

export const BRIDGE_BENCH_DEFAULTS: BridgeBenchOptions = { rows: 1024, vocab: 151936, repeats: 10, tiny: 2000, python: 'python3', json: false };

async function directMs(rows: number, vocab: number, repeats: number): Promise<number> {
  const r = new Sfc32(1);
  const data = new Float32Array(rows * vocab);
  for (let i = 0; i < data.length; i++) data[i] = r.normal();
  const tokens = Int32Array.from({ length: rows }, () => r.int(vocab));
  const logits = tensor(data, [rows, vocab]);
  await tokenStats(logits, { tokens });
  const times: number[] = [];
  for (let k = 0; k < repeats; k++) {
    const start = process.hrtime.bigint();
    await tokenStats(logits, { tokens });
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export async function runBridgeBench(o: BridgeBenchOptions): Promise<number> {
  const root = path.resolve(__dirname, '..', '..');
  const py = spawnSync(
    o.python,
    ['-m', 'advantage_engine.bench', '--json', '--rows', String(o.rows), '--vocab', String(o.vocab), '--repeats', String(o.repeats),
      '--tiny', String(o.tiny), '--node', process.execPath, '--cli', path.join(root, 'dist', 'lib', 'cli.js')],
    { cwd: root, encoding: 'utf8', env: { ...process.env, PYTHONPATH: path.join(root, 'python') }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  if (py.status !== 0) {
    console.error(`bench-bridge: the Python half failed (${o.python}: exit ${py.status}${py.error ? `, ${py.error.message}` : ''})`);
    return 1;
  }
  const bridge = JSON.parse(py.stdout.trim().split('\n').pop()!) as Record<string, number | boolean | string>;
  const direct = await directMs(o.rows, o.vocab, o.repeats);
  const result = { ...bridge, directTokenStatsMs: direct, bridgeSpeedFraction: direct / (bridge.bridgeTokenStatsMs as number) };
  if (o.json) console.log(JSON.stringify(result));
  else for (const [k, v] of Object.entries(result)) console.log(`${k.padEnd(28)} ${typeof v === 'number' && !Number.isInteger(v) ? +v.toPrecision(4) : v}`);
  return 0;
}
