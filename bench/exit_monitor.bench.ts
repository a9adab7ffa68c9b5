/**
 * Benchmark of the streaming early-exit monitor (SPEC §6): the per-decode-step cost of `push({logits})` on a
 * [live, V] logits batch — tokenStats' fused entropy + max-prob pass (native when built) plus the O(live) rule
 * update — reported against the read bandwidth (bytes: the logits read once). The figure is
 * `advantage-engine bench --op exit-monitor` at the default [256, 151936].
 *
 * The rules never fire here (an unreachable entropy threshold and no budget), so every timed call is one full
 * step of all `rows` sequences; the logits are bench/token_stats.bench.ts' LM-like rows.
 */
import { createExitMonitor, DTYPE_BYTES } from '../lib';
import type { Case, OpDefinition } from './ops';
import { DTYPES, makeLogits } from './token_stats.bench';

const logitBytes = (c: Case) => c.rows * c.cols * DTYPE_BYTES[c.dtype];

export const EXIT_MONITOR_OPS: Readonly<Record<string, OpDefinition>> = {
  'exit-monitor': {
    description: 'createExitMonitor(...).push({logits}): entropy + max-prob of every live row and the rule update, one decode step (bytes: logits read)',
    dtypes: DTYPES,
    defaultRows: { cpu: 256, js: 16 },
    defaultCols: 151936,
    colsAreVocab: true,
    inputBytes: logitBytes,
    allocatedBytes: logitBytes,
    prepare(c, seed) {
      const { logits } = makeLogits(c.rows, c.cols, c.dtype, { seed });
      const monitor = createExitMonitor({
        batch: c.rows,
        rules: { entropyBelow: { threshold: -1, k: 1 }, maxProbAbove: { threshold: 1, k: 1 } },
        backend: c.backend,
      });
      const step = { logits };
      return { fn: () => void monitor.push(step), elements: c.rows * c.cols, bytesMoved: logitBytes(c), inputBytes: logitBytes(c) };
    },
  },
};
