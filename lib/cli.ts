#!/usr/bin/env node
/**
 * The `advantage-engine` command: `info` (which backend runs, and why the others do not) and `bench`
 * (benchmark.js suites from bench/, reported against the machine's read bandwidth measured in the same
 * process). Exit codes: 0 success, 1 a run-time failure (e.g. the cpu backend is not loadable), 2 a usage
 * error (unknown command, flag or value).
 *
 * This file is the entry point: help texts, the `info` command, dispatch and exit codes. The `bench` command
 * is in lib/cli_bench.ts, flag parsing and the error classes in lib/cli_args.ts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { backendInfo, nativeAddon } from './backend';
import { CALL_OVERHEAD_VOCABS, LOGITS_MODEL } from '../bench/token_stats.bench';
import { OPS } from '../bench/ops';
import { formatBytes, machineSummary, MIN_BANDWIDTH_BYTES } from '../bench/report';
import { PROGRAM, RunError, UsageError, parseFlags } from './cli_args';
import { parseBench, runBench } from './cli_bench';
import { HELP_SERVE, runServe } from './bridge/serve';
import { BRIDGE_BENCH_DEFAULTS, runBridgeBench } from '../bench/bridge.bench';
import { HELP_TRAIN_DEMO, runTrainDemo } from '../examples/train-grpo';
import { HELP_TRAIN_EARLY_EXIT, runTrainEarlyExit } from '../examples/train-early-exit';

function packageVersion(): string {
  try {
    const file = path.resolve(__dirname, '..', '..', 'package.json');
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// ---- help ----

const HELP_MAIN = `Usage: ${PROGRAM} <command> [options]

Commands:
  info [--json]        which backend runs (cpu / js), its SIMD level and threads, and why others are skipped
  bench [options]      benchmarks of the token-statistics ops against the measured memory read bandwidth
  serve --stdio        serve the API to the Python package advantage_engine over stdin / stdout
  bench-bridge [--rows N --vocab V --repeats K --tiny M --python P --json]
                       the Python bridge: tiny-request round trip, tokenStats through shared memory vs direct
  train-demo [options] train a small policy with GRPO on the engine's signals (reward curve, SVG chart)
  train-early-exit [options]
                       train a policy to stop thinking early (S-GRPO or length reward, exit monitor)
  help [command]       this text, or a command's

Options:
  -h, --help           help (also after a command: ${PROGRAM} bench --help)
  -v, --version        the package version

Environment: ADVANTAGE_ENGINE_BACKEND (auto | cpu | js), ADVANTAGE_ENGINE_THREADS, ADVANTAGE_ENGINE_SIMD.
Exit codes: 0 success, 1 run-time failure, 2 usage error.`;

const HELP_INFO = `Usage: ${PROGRAM} info [--json]

Prints backendInfo(): the active backend (cpu = native addon, js = pure JavaScript), the requested one, the
SIMD level in use and those available, the thread pool size, the small-input threshold below which 'auto'
runs on js, where the native addon was loaded from (or why each load attempt failed), and why each other
backend is skipped.

Options:
  --json       the backendInfo() object as JSON
  -h, --help   this text`;

/** The --op lines of the bench help: every registered op with its description, defaults and own flags. */
function benchOpHelp(): string {
  const lines: string[] = [];
  for (const [name, def] of Object.entries(OPS)) {
    lines.push(`${name}: ${def.description}`);
    lines.push(`  dtype ${def.dtypes.join(' | ')}; default rows ${def.defaultRows.cpu} (cpu) / ${def.defaultRows.js} (js), cols ${def.defaultCols}`);
    for (const [flag, p] of Object.entries(def.params ?? {})) {
      lines.push(`  --${flag} ${p.choices ? p.choices.join(' | ') : 'N'} (default ${p.default}): ${p.help}`);
    }
  }
  lines.push(`call-overhead: per-call time of tokenStats at rows = 1, vocab ${CALL_OVERHEAD_VOCABS.join(', ')}`);
  lines.push('  (or --cols), cpu vs js, sync and async; prints the break-even element counts');
  lines.push('  where cpu becomes faster than js (lib/backend.ts SMALL_INPUT_ELEMENTS)');
  return lines.map((l) => `                   ${l}`).join('\n').trimStart();
}

const HELP_BENCH = () => `Usage: ${PROGRAM} bench [options]

Times the engine's ops with benchmark.js (sync functions, synchronous runs) and reports each
configuration against the memory read bandwidth measured just before and after it, in the same process, by
the native addon's all-thread vectorised reader (the widest SIMD level) over a buffer the size of the
configuration's input but at least ${formatBytes(MIN_BANDWIDTH_BYTES)} and twice the last-level cache, median of 7 reads. The js
backend is compared with the read bandwidth of one thread (it runs on one).

Every option that takes a value also takes a comma list; every combination is run (e.g. --backend cpu,js
--dtype f32,bf16 gives four configurations).

Options:
  --op OP          token-stats (default), or one of:
                   ${benchOpHelp()}
  --backend B      cpu | js | cuda (default: cpu when the native addon is loaded, else js). cuda: the token
                   statistics ops on the GPU (device-resident bf16 / f16 / f32 logits, default 16384 × 151936
                   bf16, 20 repeats timed with CUDA events) against the device's copy bandwidth
  --dtype D        input dtype (default: the op's first)
  --rows N         rows (default: the op's). On js, fewer rows are used when five calls would take over
                   twice --min-time: rows are cut so that a call takes about --min-time / 10, and the rows
                   actually used are reported (a note says so).
  --cols C         columns: the vocabulary for logits ops, the sequence length T for token-level ops
                   (--vocab is the same option)
  --threads T      native thread pool size for cpu runs (default: the current pool, ${PROGRAM} info)
  --isa L          native SIMD level for cpu runs: scalar | avx2 | avx512 (default: the active one)
  --min-time S     seconds of sampling per configuration (default: 2; call-overhead: 0.5 per case).
                   benchmark.js samples until S seconds have passed and it has at least 5 samples
                   (its maxTime); each sample runs the op for at least S/20 s (its minTime, ≥ 0.05 s).
  --seed N         seed of the synthetic data (default: 1)
  --json           one JSON object per line and configuration: op, params (the op's own flags, when it
                   has any), backend, dtype, rows, cols, vocab (= cols, on the ops that take logits), threads,
                   medianMs, elementsPerSec, gbPerSec, readBandwidthGbPerSec, bandwidthFraction, isa, samples
                   (call-overhead lines add mode; a last line gives breakEvenElements). Notes go to stderr.
  -h, --help       this text

Reported figures:
  medianMs          median of benchmark.js samples (time per call)
  elementsPerSec    elements per call / median (rows × cols, unless the op says otherwise)
  gbPerSec          bytes moved per second: every input read once + every output written once (each op's
                    description says which)
  readBandwidthGbPerSec  vectorised all-thread streaming read (the addon's readBandwidth) of a buffer at
                    least the input's size and above the last-level cache, measured just before and just
                    after the kernel's samples (mean of the two medians of 7 reads)
  bandwidthFraction gbPerSec / readBandwidthGbPerSec (null when the native addon is not loaded)

Data of the logits ops: LM-like logits made once per configuration (not timed): Zipf prior over the
vocabulary (bias −${LOGITS_MODEL.zipfExponent}·ln(rank+1)), per-row Gaussian noise of scale ${LOGITS_MODEL.noiseScale.join('–')},
${LOGITS_MODEL.contextTokens} boosted context tokens per row; no −inf. full-kl's reference = logits + N(0, ${LOGITS_MODEL.refNoise}²) noise.
Other ops describe their data in bench/<family>.bench.ts.

Examples:
  ${PROGRAM} bench --op token-stats --backend cpu --dtype f32,bf16 --rows 1024 --vocab 151936
  ${PROGRAM} bench --op token-stats-backward --backend cpu,js --json
  ${PROGRAM} bench --op call-overhead`;

// ---- info ----

function runInfo(args: readonly string[]): number {
  const flags = parseFlags('info', args, [], ['json', 'help']);
  if (flags.has('help')) {
    console.log(HELP_INFO);
    return 0;
  }
  const info = backendInfo();
  if (flags.has('json')) {
    console.log(JSON.stringify(info, null, 2));
    return 0;
  }
  let hardwareThreads: number | undefined;
  if (info.native.loaded) hardwareThreads = nativeAddon().info().hardwareThreads;
  const lines: [string, string][] = [
    ['version', `${PROGRAM} ${packageVersion()} (node ${process.version}, ${process.platform}-${process.arch})`],
    ['active backend', `${info.active} (requested: ${info.requested})`],
    ['SIMD', info.isa
      ? `${info.isa} (available: ${info.isaAvailable.join(', ')}; compiled: ${info.isaCompiled.join(', ')})`
      : 'none (native addon not loaded)'],
    ['threads', `${info.threads}${hardwareThreads !== undefined ? ` (hardware threads: ${hardwareThreads})` : ' (js runs on one)'}`],
    ['small inputs', `below ${info.smallInputThreshold.sync} elements (sync) / ${info.smallInputThreshold.async} (async) run on js under 'auto'`],
    ['native addon', info.native.loaded ? `loaded from ${info.native.path}` : 'not loaded'],
  ];
  for (const a of info.native.attempts) lines.push(['  attempt', `${a.candidate}: ${a.code}: ${a.message}`]);
  for (const [name, why] of Object.entries(info.skipped)) lines.push(['skipped', `${name}: ${why}`]);
  for (const w of info.warnings) lines.push(['warning', w]);
  lines.push(['machine', machineSummary()]);
  const width = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) console.log(`${k.padEnd(width)}  ${v}`);
  return 0;
}

// ---- main ----

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    console.error(HELP_MAIN);
    return 2;
  }
  if (command === '-h' || command === '--help') {
    console.log(HELP_MAIN);
    return 0;
  }
  if (command === '-v' || command === '--version') {
    console.log(packageVersion());
    return 0;
  }
  if (command === 'help') {
    const topic = rest[0];
    const text = topic === undefined ? HELP_MAIN : topic === 'info' ? HELP_INFO : topic === 'bench' ? HELP_BENCH() : topic === 'serve' ? HELP_SERVE : topic === 'train-demo' ? HELP_TRAIN_DEMO : topic === 'train-early-exit' ? HELP_TRAIN_EARLY_EXIT : undefined;
    if (text === undefined) throw new UsageError(`help: unknown command '${topic}'`);
    console.log(text);
    return 0;
  }
  if (command === 'info') return runInfo(rest);
  if (command === 'serve') return runServe(rest);
  if (command === 'train-demo') return runTrainDemo(rest);
  if (command === 'train-early-exit') return runTrainEarlyExit(rest);
  if (command === 'bench-bridge') {
    const flags = parseFlags('bench-bridge', rest, ['rows', 'vocab', 'repeats', 'tiny', 'python'], ['json']);
    const int = (name: 'rows' | 'vocab' | 'repeats' | 'tiny') => {
      const v = flags.get(name);
      if (v === undefined) return BRIDGE_BENCH_DEFAULTS[name];
      if (typeof v !== 'string' || !/^[1-9][0-9]*$/.test(v)) throw new UsageError(`bench-bridge: --${name} expects a positive integer`);
      return Number(v);
    };
    const python = flags.get('python');
    return runBridgeBench({
      rows: int('rows'), vocab: int('vocab'), repeats: int('repeats'), tiny: int('tiny'),
      python: typeof python === 'string' ? python : BRIDGE_BENCH_DEFAULTS.python, json: flags.has('json'),
    });
  }
  if (command === 'bench') {
    const options = parseBench(rest);
    if (!options) {
      console.log(HELP_BENCH());
      return 0;
    }
    return runBench(options);
  }
  throw new UsageError(`unknown command '${command}'`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      const command = ['info', 'bench', 'serve', 'train-demo', 'train-early-exit'].includes(process.argv[2]) ? `${process.argv[2]} ` : '';
      console.error(`${PROGRAM} ${error.message}\nRun '${PROGRAM} ${command}--help' for usage.`);
      process.exitCode = 2;
    } else if (error instanceof RunError) {
      console.error(`${PROGRAM} ${error.message}`);
      process.exitCode = 1;
    } else {
      console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
      process.exitCode = 1;
    }
  },
);
