/**
 * The `bench` command of `advantage-engine` (lib/cli.ts holds its help text and dispatches to it): option
 * resolution (parseBench), timing with benchmark.js (timeSync, timeAsync), the throughput runs of the
 * token-statistics ops against the read bandwidth measured around them (runThroughput), the per-call overhead
 * and cpu/js break-even runs (runCallOverhead), and result printing (table rows, JSON lines, notes).
 */
import * as os from 'os';
import Benchmark from 'benchmark';
import { backendInfo, nativeAddon } from './backend';
import { cudaStatus } from './cuda';
import { DTYPE_BYTES, type DType } from './tensor';
import { CALL_OVERHEAD_VOCABS, DTYPES, breakEven, callOverheadCases, type CallCase } from '../bench/token_stats.bench';
import { OPS, secondsPerRow, type Backend, type Case } from '../bench/ops';
import { CUDA_BENCH_DTYPES, CUDA_BENCH_OPS, runCudaBench, type CudaBenchCase, type CudaBenchResult } from '../bench/cuda.bench';
import {
  Progress,
  Table,
  cacheNote,
  fixed,
  formatBytes,
  formatSeconds,
  formatSi,
  machineSummary,
  measureReadBandwidth,
  median,
  MIN_BANDWIDTH_BYTES,
  type Bandwidth,
} from '../bench/report';
import { PROGRAM, RunError, UsageError, choices, integers, list, parseFlags, positiveNumber } from './cli_args';

/** Every op `--op` accepts: the throughput ops of bench/ops.ts and the per-call overhead sweep. */
export const BENCH_OPS: readonly string[] = [...Object.keys(OPS), 'call-overhead'];

export interface BenchOptions {
  ops: string[];
  backends: Backend[];
  /** --backend cuda: the CUDA token statistics on the device (bench/cuda.bench.ts). */
  cuda: boolean;
  dtypes?: DType[];
  rows?: number[];
  cols?: number[];
  /** Values given for the ops' own flags (e.g. --mode), by flag name. */
  params: Record<string, string[]>;
  threads?: number[];
  isas?: string[];
  minTime?: number;
  seed: number;
  json: boolean;
}

interface Result {
  op: string;
  backend: Backend;
  dtype: DType;
  rows: number;
  cols: number;
  /** Logits ops only: the vocabulary, = cols. */
  vocab?: number;
  params?: Record<string, string>;
  threads: number;
  medianMs: number;
  elementsPerSec: number;
  gbPerSec: number;
  readBandwidthGbPerSec: number | null;
  bandwidthFraction: number | null;
  isa: string | null;
  samples: number;
}

const DEFAULT_MIN_TIME = 2;
const DEFAULT_CALL_MIN_TIME = 0.5;
const MIN_SAMPLES = 5;

export function parseBench(args: readonly string[]): BenchOptions | null {
  const paramNames = [...new Set(Object.values(OPS).flatMap((def) => Object.keys(def.params ?? {})))];
  const flags = parseFlags(
    'bench', args, ['op', 'backend', 'dtype', 'rows', 'cols', 'vocab', 'threads', 'isa', 'min-time', 'seed', ...paramNames],
    ['json', 'help'],
  );
  if (flags.has('help')) return null;
  const loaded = backendInfo().native.loaded;
  const requested = choices<Backend | 'cuda'>(flags, 'backend', ['cpu', 'js', 'cuda']);
  const cuda = requested?.includes('cuda') ?? false;
  const backends: Backend[] = requested ? requested.filter((b): b is Backend => b !== 'cuda') : [loaded ? 'cpu' : 'js'];
  const isas = choices(flags, 'isa', ['scalar', 'avx2', 'avx512']);
  if (backends.includes('cpu') && !loaded) {
    const attempts = backendInfo().native.attempts.map((a) => `  ${a.candidate}: ${a.code}: ${a.message}`).join('\n');
    throw new RunError(`bench: the cpu backend is not available (the native addon did not load):\n${attempts}\n` +
      'Build it with `npm run build:native`, or pass --backend js.');
  }
  if (isas && loaded) {
    const available = nativeAddon().info().isaAvailable;
    const missing = isas.filter((l) => !available.includes(l));
    if (missing.length) throw new RunError(`bench: --isa ${missing.join(',')} is not available on this machine (available: ${available.join(', ')})`);
  }
  const seed = integers(flags, 'seed', 0, 0xffffffff);
  if (seed && seed.length > 1) throw new UsageError('bench: --seed takes one value');
  const ops = choices<string>(flags, 'op', BENCH_OPS) ?? ['token-stats'];
  if (cuda) {
    const other = ops.filter((op) => !(CUDA_BENCH_OPS as readonly string[]).includes(op));
    if (other.length) throw new UsageError(`bench: --backend cuda runs ${CUDA_BENCH_OPS.join(', ')}, not ${other.join(', ')}`);
    const status = cudaStatus();
    if (!status.available) throw new RunError(`bench: the cuda backend is not available: ${status.code}: ${status.message}`);
  }
  const params: Record<string, string[]> = {};
  for (const name of paramNames) {
    const values = list(flags, name);
    if (!values) continue;
    const owners = ops.filter((op) => OPS[op]?.params?.[name]);
    if (owners.length === 0) throw new UsageError(`bench: --${name} applies to ${opsWithParam(name).join(', ')}, not to --op ${ops.join(',')}`);
    for (const op of owners) {
      const def = OPS[op].params![name];
      const bad = values.filter((v) => (def.choices ? !def.choices.includes(v) : !/^[1-9][0-9]*$/.test(v)));
      if (bad.length) throw new UsageError(`bench: --${name} for ${op} expects ${def.choices ? def.choices.join(' | ') : 'a positive integer'}, got ${bad.join(',')}`);
    }
    params[name] = values;
  }
  if (flags.has('cols') && flags.has('vocab')) throw new UsageError('bench: --cols and --vocab are the same option; give one');
  return {
    ops,
    backends,
    cuda,
    dtypes: choices<DType>(flags, 'dtype', DTYPES),
    rows: integers(flags, 'rows', 1, 1 << 24),
    cols: integers(flags, 'cols', 1, 1 << 26) ?? integers(flags, 'vocab', 1, 1 << 26),
    params,
    threads: integers(flags, 'threads', 1, 1024),
    isas,
    minTime: positiveNumber(flags, 'min-time'),
    seed: seed?.[0] ?? 1,
    json: flags.has('json'),
  };
}

function opsWithParam(name: string): string[] {
  return Object.keys(OPS).filter((op) => OPS[op].params?.[name]);
}

/** Every combination of the op's own flag values (the op's defaults where a flag was not given). */
function paramCombinations(op: string, given: Readonly<Record<string, string[]>>): Record<string, string>[] {
  let combos: Record<string, string>[] = [{}];
  for (const [name, def] of Object.entries(OPS[op].params ?? {})) {
    const values = given[name] ?? [def.default];
    combos = combos.flatMap((combo) => values.map((v) => ({ ...combo, [name]: v })));
  }
  return combos;
}

/** Runs one benchmark.js benchmark synchronously and returns its per-call samples (seconds). */
function timeSync(label: string, fn: () => void, minTime: number, progress: Progress): number[] {
  const start = Date.now();
  const bench = new Benchmark(label, fn, {
    defer: false,
    minTime: Math.max(minTime / 20, 0.05),
    maxTime: minTime,
    minSamples: MIN_SAMPLES,
    onCycle: () => progress.update(label, (Date.now() - start) / 1000 / minTime, `${bench.stats.sample.length} samples`),
  });
  bench.run({ async: false });
  progress.clear();
  if (bench.error) throw bench.error;
  return bench.stats.sample.slice();
}

/** Runs one deferred (Promise) benchmark with benchmark.js and returns its per-call samples (seconds). */
function timeAsync(label: string, fn: () => Promise<unknown>, minTime: number, progress: Progress): Promise<number[]> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const bench: Benchmark = new Benchmark(label, {
      defer: true,
      fn: (deferred: Benchmark.Deferred) => {
        fn().then(() => deferred.resolve(), (error: unknown) => {
          bench.abort();
          reject(error);
        });
      },
      minTime: Math.max(minTime / 20, 0.05),
      maxTime: minTime,
      minSamples: MIN_SAMPLES,
      onCycle: () => progress.update(label, (Date.now() - start) / 1000 / minTime, `${bench.stats.sample.length} samples`),
      onComplete: () => {
        progress.clear();
        if (bench.error) reject(bench.error);
        else resolve(bench.stats.sample.slice());
      },
    });
    bench.run({ async: true });
  });
}

/** Notes go to stderr at once with --json, else under the table they belong to. */
const pendingNotes: string[] = [];
function note(options: BenchOptions, text: string): void {
  if (options.json) console.error(`note: ${text}`);
  else pendingNotes.push(text);
}

function reduced(options: BenchOptions): string {
  return options.json ? '' : '* ';
}

function flushNotes(): void {
  if (pendingNotes.length === 0) return;
  console.log('notes:');
  for (const text of pendingNotes.splice(0)) console.log(`  ${text}`);
}

function memoryCheck(bytes: number, what: string): void {
  const limit = 0.8 * os.totalmem();
  if (bytes > limit) {
    throw new RunError(`bench: ${what} needs about ${formatBytes(bytes)}, over 80% of this machine's ${formatBytes(os.totalmem())}; use fewer --rows`);
  }
}

const RESULT_COLUMNS = [
  { title: 'op', width: 20, align: 'left' as const },
  { title: 'backend', width: 7, align: 'left' as const },
  { title: 'dtype', width: 5, align: 'left' as const },
  { title: 'rows×cols', width: 14, align: 'left' as const },
  { title: 'thr', width: 3 },
  { title: 'isa', width: 6, align: 'left' as const },
  { title: 'median', width: 9 },
  { title: 'elements/s', width: 10 },
  { title: 'GB/s', width: 6 },
  { title: 'read GB/s', width: 9 },
  { title: 'fraction', width: 8 },
  { title: 'samples', width: 7 },
];

/** Table cells of one result; `reduced` marks rows cut to the time budget (explained in the notes). */
function resultCells(r: Result, reduced: boolean): string[] {
  return [
    r.params ? `${r.op} ${Object.values(r.params).join(' ')}` : r.op, r.backend, r.dtype, `${r.rows}×${r.cols}${reduced ? '*' : ''}`, String(r.threads), r.isa ?? '-', formatSeconds(r.medianMs / 1000),
    formatSi(r.elementsPerSec), fixed(r.gbPerSec, 2), fixed(r.readBandwidthGbPerSec, 2), fixed(r.bandwidthFraction, 3),
    String(r.samples),
  ];
}

interface Native {
  threads: number;
  isa: string;
}

function currentNative(): Native | null {
  if (!backendInfo().native.loaded) return null;
  const info = nativeAddon().info();
  return { threads: info.threads, isa: info.isa };
}

function applyNative(threads: number, isa: string): void {
  const addon = nativeAddon();
  if (addon.info().threads !== threads) addon.setThreads(threads);
  if (addon.info().isa !== isa) addon.setIsa(isa);
}

export async function runBench(options: BenchOptions): Promise<number> {
  const progress = new Progress();
  const original = currentNative();
  const table = new Table(RESULT_COLUMNS, (line) => console.log(line));
  if (!options.json) {
    console.log(`${PROGRAM} bench — ${machineSummary()}`);
  }
  let headerShown = false;
  try {
    if (options.cuda) headerShown = runCuda(options, table);
    for (const op of options.backends.length ? options.ops : []) {
      if (op === 'call-overhead') {
        flushNotes();
        headerShown = false;
        await runCallOverhead(options, progress, original);
        flushNotes();
        continue;
      }
      const def = OPS[op];
      const dtypes = options.dtypes ?? [def.dtypes[0]];
      const unsupported = dtypes.filter((d) => !def.dtypes.includes(d));
      if (unsupported.length) throw new RunError(`bench: ${op} takes --dtype ${def.dtypes.join(' | ')}, not ${unsupported.join(',')}`);
      for (const backend of options.backends) {
        // js ignores the native pool and SIMD level: one configuration per (dtype, rows, cols, params).
        const threadList = backend === 'cpu' ? options.threads ?? [original!.threads] : [1];
        const isaList = backend === 'cpu' ? options.isas ?? [original!.isa] : [null];
        for (const dtype of dtypes) {
          for (const cols of options.cols ?? [def.defaultCols]) {
            for (const rows of options.rows ?? [def.defaultRows[backend]]) {
              for (const params of paramCombinations(op, options.params)) {
                for (const threads of threadList) {
                  for (const isa of isaList) {
                    if (!options.json && !headerShown) {
                      table.header();
                      headerShown = true;
                    }
                    const c: Case = { op, backend, dtype, rows, cols, params };
                    const result = runThroughput(options, progress, c, threads, isa);
                    if (options.json) console.log(JSON.stringify(result));
                    else table.row(resultCells(result, result.rows !== rows));
                  }
                }
              }
            }
          }
        }
      }
    }
    flushNotes();
  } finally {
    if (original) applyNative(original.threads, original.isa);
    progress.clear();
  }
  return 0;
}

/** The --backend cuda cases: every (op, dtype, rows, cols) on the device. Returns whether a table header was printed. */
function runCuda(options: BenchOptions, table: Table): boolean {
  const dtypes = options.dtypes ?? ['bf16'];
  const unsupported = dtypes.filter((d) => !CUDA_BENCH_DTYPES.includes(d));
  if (unsupported.length) throw new RunError(`bench: --backend cuda takes --dtype ${CUDA_BENCH_DTYPES.join(' | ')}, not ${unsupported.join(',')}`);
  const cases: CudaBenchCase[] = [];
  for (const op of options.ops as (typeof CUDA_BENCH_OPS)[number][]) {
    for (const dtype of dtypes) {
      for (const rows of options.rows ?? [16384]) {
        for (const cols of options.cols ?? [151936]) cases.push({ op, dtype, rows, cols, repeats: 20 });
      }
    }
  }
  if (!options.json) table.header();
  runCudaBench(cases, options.seed, (r: CudaBenchResult) => {
    if (options.json) console.log(JSON.stringify(r));
    else {
      table.row([r.op, 'cuda', r.dtype, `${r.rows}×${r.cols}`, '-', '-', formatSeconds(r.medianMs / 1000), formatSi(r.elementsPerSec),
        fixed(r.gbPerSec, 2), fixed(r.readBandwidthGbPerSec, 2), fixed(r.bandwidthFraction, 3), String(r.samples)]);
    }
  });
  note(options, `cuda: device time (CUDA events), against the device's copy bandwidth (read + written) measured in the same process`);
  return !options.json;
}

function runThroughput(options: BenchOptions, progress: Progress, requested: Case, threads: number, isa: string | null): Result {
  const { op, backend, dtype, cols } = requested;
  const minTime = options.minTime ?? DEFAULT_MIN_TIME;
  const paramText = Object.values(requested.params).map((v) => ` ${v}`).join('');
  const label = `${op}${paramText} ${backend} ${dtype} ${requested.rows}×${cols}${backend === 'cpu' ? ` ${threads}t ${isa}` : ''}`;
  if (backend === 'cpu') applyNative(threads, isa!);
  let rows = requested.rows;
  if (backend === 'js') {
    progress.update(label, 0, 'estimating the time per call');
    const perRow = secondsPerRow(requested);
    if (MIN_SAMPLES * perRow * rows > 2 * minTime) {
      rows = Math.max(1, Math.min(rows, Math.floor(minTime / 10 / perRow)));
      note(options, `${reduced(options)}${op}${paramText} js ${dtype}: ${requested.rows} rows would take about ` +
        `${formatSeconds(perRow * requested.rows)} a call; using ${rows} rows (--min-time ${minTime} s)`);
    }
  }
  const c: Case = { ...requested, rows };
  const def = OPS[op];
  memoryCheck(def.allocatedBytes(c) + Math.max(def.inputBytes(c), MIN_BANDWIDTH_BYTES), label);
  progress.update(label, 0, 'generating data');
  const prepared = def.prepare(c, options.seed);
  // The machine is shared: bandwidth drifts with other tenants' load. Measuring it just before and just after
  // the kernel's samples, and using the mean, ties the fraction to the conditions the kernel ran under.
  progress.update(label, 0, 'measuring read bandwidth');
  const bandwidthThreads = backend === 'cpu' ? threads : 1;
  const before: Bandwidth | null = measureReadBandwidth(prepared.inputBytes, bandwidthThreads);
  const samples = timeSync(label, prepared.fn, minTime, progress);
  progress.update(label, 1, 'measuring read bandwidth again');
  const after: Bandwidth | null = measureReadBandwidth(prepared.inputBytes, bandwidthThreads);
  const bandwidth: Bandwidth | null = before && after
    ? { ...before, gbPerSec: (before.gbPerSec + after.gbPerSec) / 2, bestGbPerSec: Math.max(before.bestGbPerSec, after.bestGbPerSec), repeats: before.repeats + after.repeats }
    : null;
  note(options, `${op}${paramText} ${backend} ${dtype} ${rows}×${cols}: ${cacheNote(bandwidth, prepared.inputBytes)}` +
    (before && after ? `; before ${before.gbPerSec.toFixed(2)} GB/s, after ${after.gbPerSec.toFixed(2)} GB/s` : ''));
  const seconds = median(samples);
  const gbPerSec = prepared.bytesMoved / seconds / 1e9;
  return {
    op,
    ...(Object.keys(c.params).length ? { params: c.params } : {}),
    backend,
    dtype,
    rows,
    cols,
    ...(OPS[op].colsAreVocab ? { vocab: cols } : {}),
    threads: backend === 'cpu' ? threads : 1,
    medianMs: seconds * 1e3,
    elementsPerSec: prepared.elements / seconds,
    gbPerSec,
    readBandwidthGbPerSec: bandwidth ? bandwidth.gbPerSec : null,
    bandwidthFraction: bandwidth ? gbPerSec / bandwidth.gbPerSec : null,
    isa: backend === 'cpu' ? isa : null,
    samples: samples.length,
  };
}

async function runCallOverhead(options: BenchOptions, progress: Progress, original: Native | null): Promise<void> {
  const minTime = options.minTime ?? DEFAULT_CALL_MIN_TIME;
  const vocabs = options.cols ?? [...CALL_OVERHEAD_VOCABS];
  const backends: Backend[] = original ? ['cpu', 'js'] : ['js'];
  const threads = options.threads?.[0] ?? original?.threads ?? 1;
  const isa = options.isas?.[0] ?? original?.isa ?? null;
  if (original) applyNative(threads, isa!);
  if (options.rows) note(options, 'call-overhead always uses rows = 1 (--rows ignored)');
  if (!original) note(options, 'native addon not loaded: call-overhead measures js only; no break-even');
  for (const dtype of options.dtypes ?? ['f32' as const]) {
    const times: Record<string, number[]> = {};
    const table = new Table(
      [
        { title: 'elements', width: 8 },
        ...backends.flatMap((b) => (['sync', 'async'] as const).map((m) => ({ title: `${b} ${m}`, width: 10 }))),
        { title: 'faster (sync)', width: 13, align: 'left' as const },
        { title: 'faster (async)', width: 14, align: 'left' as const },
      ],
      (line) => console.log(line),
    );
    if (!options.json) {
      console.log(`\ncall-overhead: time per tokenStats call, rows = 1, ${dtype}, all outputs with tokens` +
        `${original ? `, cpu ${threads} thread${threads === 1 ? '' : 's'} ${isa}` : ''} (median of benchmark.js samples)`);
      table.header();
    }
    for (const vocab of vocabs) {
      const cases: CallCase[] = callOverheadCases(dtype, vocab, backends, options.seed);
      const perCase: Record<string, number> = {};
      for (const c of cases) {
        const key = `${c.backend} ${c.mode}`;
        const label = `call-overhead ${dtype} vocab ${vocab}: ${key}`;
        const samples = c.sync ? timeSync(label, c.sync, minTime, progress) : await timeAsync(label, c.async!, minTime, progress);
        const seconds = median(samples);
        perCase[key] = seconds;
        (times[key] ??= []).push(seconds);
        if (options.json) {
          console.log(JSON.stringify({
            op: 'call-overhead', backend: c.backend, mode: c.mode, dtype, rows: 1, cols: vocab, vocab,
            threads: c.backend === 'cpu' ? threads : 1, medianMs: seconds * 1e3, elementsPerSec: vocab / seconds,
            gbPerSec: (vocab * DTYPE_BYTES[dtype]) / seconds / 1e9, readBandwidthGbPerSec: null, bandwidthFraction: null,
            isa: c.backend === 'cpu' ? isa : null, samples: samples.length,
          }));
        }
      }
      if (!options.json) {
        const faster = (m: string) => (original ? (perCase[`cpu ${m}`] < perCase[`js ${m}`] ? 'cpu' : 'js') : '-');
        table.row([
          String(vocab),
          ...backends.flatMap((b) => ['sync', 'async'].map((m) => formatSeconds(perCase[`${b} ${m}`]))),
          faster('sync'),
          faster('async'),
        ]);
      }
    }
    if (original) {
      const sync = breakEven(vocabs, times['cpu sync'], times['js sync']);
      const async = breakEven(vocabs, times['cpu async'], times['js async']);
      if (options.json) {
        console.log(JSON.stringify({ op: 'call-overhead', dtype, threads, isa, breakEvenElements: { sync, async } }));
      } else {
        console.log(`break-even (elements where cpu becomes faster than js): sync ${sync}, async ${async}` +
          `  (lib/backend.ts SMALL_INPUT_ELEMENTS now ${JSON.stringify(backendInfo().smallInputThreshold)})`);
      }
    }
  }
}
