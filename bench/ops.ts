/**
 * The registry of benchmarked ops: every family's bench/<family>.bench.ts exports its op definitions and
 * they are listed here once. `advantage-engine bench --op <name>` (lib/cli_bench.ts) times `prepare(...).fn`
 * with benchmark.js and reports it against the read bandwidth measured around it (bench/report.ts).
 *
 * An op is benchmarked on a [rows, cols] problem (cols = the vocabulary for logits ops, the sequence length
 * for token-level ops, 1 for sequence-level ops) in one dtype, with its own extra flags (`params`, e.g.
 * `--mode ppo`), on one backend.
 */
import type { DType } from '../lib/tensor';
import { TOKEN_STATS_OPS } from './token_stats.bench';
import { EXIT_MONITOR_OPS } from './exit_monitor.bench';
import { POLICY_LOSS_OPS } from './policy_loss.bench';
import { ADVANTAGE_OPS } from './advantages.bench';

export type Backend = 'cpu' | 'js';

export interface Case {
  op: string;
  backend: Backend;
  dtype: DType;
  rows: number;
  cols: number;
  /** Values of the op's own flags (defaults applied), by flag name. */
  params: Readonly<Record<string, string>>;
}

export interface Prepared {
  /** The timed function (one call of the op on the whole input). */
  fn: () => void;
  /** The elements one call processes (the elementsPerSec numerator). */
  elements: number;
  /** Bytes the op moves per call: inputs read once + outputs written once (the gbPerSec numerator). */
  bytesMoved: number;
  /** Bytes of the op's inputs (sizes the bandwidth measurement). */
  inputBytes: number;
}

/** An op-specific flag: `--name value`, one of `choices` when given, else a positive integer. */
export interface ParamDefinition {
  default: string;
  choices?: readonly string[];
  help: string;
}

export interface OpDefinition {
  description: string;
  /** Logit / input dtypes the op is benchmarked in; the first is the default. */
  dtypes: readonly DType[];
  defaultRows: Readonly<Record<Backend, number>>;
  defaultCols: number;
  /** Set for ops on logits [rows, vocab]: their JSON lines also give cols as `vocab`. */
  colsAreVocab?: true;
  params?: Readonly<Record<string, ParamDefinition>>;
  /** Bytes allocated for a configuration (inputs + outputs), for the memory check. */
  allocatedBytes(c: Case): number;
  /** Bytes of the inputs, known before the data is made (sizes the bandwidth measurement). */
  inputBytes(c: Case): number;
  prepare(c: Case, seed?: number): Prepared;
}

export const OPS: Readonly<Record<string, OpDefinition>> = {
  ...TOKEN_STATS_OPS,
  ...EXIT_MONITOR_OPS,
  ...POLICY_LOSS_OPS,
  ...ADVANTAGE_OPS,
};

/**
 * Seconds per row of one call of an op on a backend, from a few timed calls on a small input after a warm-up
 * call (so that JIT compilation is not counted). Used to shrink JS runs to the time budget before the full
 * input is generated.
 */
export function secondsPerRow(c: Case): number {
  const rows = Math.max(1, Math.min(8, Math.ceil(2_000_000 / c.cols)));
  const { fn } = OPS[c.op].prepare({ ...c, rows });
  fn();
  const times: number[] = [];
  for (let k = 0; k < 3; k++) {
    const start = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  times.sort((a, b) => a - b);
  return times[1] / rows;
}
