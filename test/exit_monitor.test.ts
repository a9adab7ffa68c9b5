/**
 * The streaming early-exit monitor (SPEC §6): every rule driven by a scripted stream with a known answer;
 * sequences that finish, are removed, or see a row of −∞ except one token; random streams against the
 * history-keeping reference in test/ref/rewards.ts; the logits path on every backend against the float64 token
 * statistics reference; async pushes; coded errors.
 */
import { createExitMonitor, fromNumbers, tensor, type ExitRules, type StepDecisions } from '../lib';
import { refMonitor, type RefMonitorRules, type RefRow } from './ref/rewards';
import { refTokenStats } from './ref/token_stats';
import { BackendCase, backendCases, makeLogits, rng, STATS_TOL, withBackend } from './helpers';

const BACKENDS: readonly BackendCase[] = backendCases();

/** Pushes precomputed entropies step by step; returns [step, id, decision, rule] of every non-continue. */
function drive(rules: ExitRules, batch: number, entropyPerStep: number[][], extra: (step: number) => object = () => ({})) {
  const monitor = createExitMonitor({ batch, rules });
  const events: [number, number, string, string | null][] = [];
  entropyPerStep.forEach((entropy, step) => {
    const out = monitor.push({ entropy, maxProb: entropy.map((h) => Math.exp(-h)), ...extra(step) });
    out.decisions.forEach((d, k) => {
      if (d !== 'continue') events.push([step, out.ids[k], d, out.rules[k]]);
    });
  });
  return { monitor, events };
}

describe('each rule on a scripted stream', () => {
  test('entropyBelow: k consecutive low-entropy tokens, a high one resets the run', () => {
    // Sequence 0 goes low at steps 1, 2, 3 → exit at step 3; sequence 1 is interrupted at step 2 → exits at step 5.
    const steps = [[2, 2], [0.1, 0.1], [0.1, 3], [0.1, 0.1], [null, 0.1], [null, 0.1]];
    const live = (row: (number | null)[]) => row.filter((x): x is number => x !== null);
    const { events, monitor } = drive({ entropyBelow: { threshold: 0.5, k: 3 } }, 2, steps.map(live));
    expect(events).toEqual([[3, 0, 'exit', 'entropyBelow'], [5, 1, 'exit', 'entropyBelow']]);
    expect(monitor.summary()).toEqual([
      { id: 0, status: 'exited', tokens: 4, rule: 'entropyBelow' },
      { id: 1, status: 'exited', tokens: 6, rule: 'entropyBelow' },
    ]);
    expect(Array.from(monitor.live())).toEqual([]);
  });

  test('maxProbAbove: k consecutive confident tokens', () => {
    // maxProb = exp(−h): h 0.05 → 0.951 > 0.9.
    const { events } = drive({ maxProbAbove: { threshold: 0.9, k: 2 } }, 1, [[1], [0.05], [1], [0.05], [0.05]]);
    expect(events).toEqual([[4, 0, 'exit', 'maxProbAbove']]);
  });

  test('plateau: consecutive window means within the tolerance', () => {
    // Windows of 3: means 2, 1, 0.98 → plateau at the end of the third window (token 9).
    const stream = [3, 2, 1, 1, 1, 1, 0.98, 0.98, 0.98].map((h) => [h]);
    expect(drive({ plateau: { window: 3, tolerance: 0.05 } }, 1, stream).events).toEqual([[8, 0, 'exit', 'plateau']]);
    // minTokens 10 postpones it past every window end in this stream.
    expect(drive({ plateau: { window: 3, tolerance: 0.05, minTokens: 10 } }, 1, stream).events).toEqual([]);
  });

  test('budget: exit at maxTokens', () => {
    expect(drive({ budget: { maxTokens: 3 } }, 2, [[1, 1], [1, 1], [1, 1]]).events).toEqual([[2, 0, 'exit', 'budget'], [2, 1, 'exit', 'budget']]);
  });

  test('partialReward: reject below the threshold only after minTokens; NaN = not scored', () => {
    // Rows are the live sequences in id order: step 2 has ids 1 and 2 only.
    const partial = [[0.1, 0.9, 0.2], [0.1, 0.9, NaN], [0.9, 0.1]];
    const { events } = drive({ partialReward: { threshold: 0.3, minTokens: 2 } }, 3, [[1, 1, 1], [1, 1, 1], [1, 1]], (s) => ({ partialReward: partial[s] }));
    expect(events).toEqual([[1, 0, 'reject', 'partialReward'], [2, 2, 'reject', 'partialReward']]);
  });

  test('topK: only the K best scored rows survive; rejections win over exits', () => {
    const monitor = createExitMonitor({ batch: 4, rules: { topK: { k: 2 }, budget: { maxTokens: 1 } } });
    const out = monitor.push({ entropy: [1, 1, 1, 1], partialReward: [0.5, 0.9, 0.5, NaN] });
    // 0.9 (id 1) and the tie 0.5 keeps the lower id (0); id 2 is rejected; id 3 was not scored and hits the budget.
    expect(out.decisions).toEqual(['exit', 'exit', 'reject', 'exit']);
    expect(out.rules).toEqual(['budget', 'budget', 'topK', 'budget']);
    expect(monitor.summary().map((s) => s.status)).toEqual(['exited', 'exited', 'rejected', 'exited']);
  });
});

describe('sequences that end, are removed, or see a row of −∞ except one token', () => {
  test('finish and remove mid-stream; rows default to the live ids; a finished id cannot be pushed', () => {
    const monitor = createExitMonitor({ batch: 4, rules: { budget: { maxTokens: 10 } } });
    monitor.push({ entropy: [1, 1, 1, 1] });
    monitor.finish(1);
    monitor.remove(3);
    const out = monitor.push({ entropy: [1, 1] });
    expect(Array.from(out.ids)).toEqual([0, 2]);
    expect(Array.from(out.tokens)).toEqual([2, 2]);
    expect(monitor.summary().map((s) => [s.status, s.tokens])).toEqual([['live', 2], ['finished', 1], ['live', 2], ['removed', 1]]);
    expect(() => monitor.push({ entropy: [1], ids: [1] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'step.ids[0]' }));
    expect(() => monitor.finish(1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'id' }));
    expect(() => monitor.remove(7)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'id' }));
    expect(() => monitor.push({ entropy: [1, 1, 1] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'step.entropy' }));
    // Explicit ids in any order.
    const reordered = monitor.push({ entropy: [0.1, 2], ids: [2, 0] });
    expect(Array.from(reordered.ids)).toEqual([2, 0]);
  });

  test.each(BACKENDS)('$label: a row of −∞ except one token has entropy 0 and max-prob 1', async (c) => {
    const V = 1000;
    const data = new Float32Array(3 * V).fill(-Infinity);
    data[17] = 4.5; // row 0: one finite entry
    for (let j = 0; j < V; j++) data[V + j] = Math.sin(j); // row 1: ordinary
    data[2 * V + 999] = -3e4; // row 2: one (very negative) finite entry
    await withBackend(c, async () => {
      const monitor = createExitMonitor({ batch: 3, rules: { entropyBelow: { threshold: 1e-3, k: 1 } }, backend: c.backend });
      const out = monitor.push({ logits: tensor(data, [3, V]) });
      // SPEC §1.1 bounds (1e-6 absolute): the vectorised exp of −∞ − max leaves at most ~1e-7 of entropy.
      for (const row of [0, 2]) {
        expect(out.entropy[row]).toBeGreaterThanOrEqual(0);
        expect(out.entropy[row]).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(out.maxProb[row] - 1)).toBeLessThanOrEqual(1e-6);
      }
      expect(out.entropy[1]).toBeGreaterThan(1);
      expect(out.decisions).toEqual(['exit', 'continue', 'exit']);
      // A row entirely −∞ is not finite: ERR_AE_NON_FINITE naming it, and no state changes.
      const bad = new Float32Array(V).fill(-Infinity);
      expect(() => monitor.push({ logits: tensor(bad, [1, V]) })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 0 }));
      expect(monitor.summary()[1].tokens).toBe(1);
    });
  });
});

describe('random streams against the history-keeping reference', () => {
  test.each([0, 1, 2, 3])('stream %i: every rule at once, precomputed signals', (trial) => {
    const r = rng(`monitor stream ${trial}`);
    const batch = 5 + r.int(30);
    const rules: RefMonitorRules = {
      entropyBelow: { threshold: 0.3 + r.float(), k: 1 + r.int(6) },
      maxProbAbove: { threshold: 0.8 + 0.19 * r.float(), k: 1 + r.int(6) },
      plateau: { window: 2 + r.int(8), tolerance: 0.05 * r.float(), minTokens: r.int(20) },
      budget: { maxTokens: 20 + r.int(60) },
      partialReward: { threshold: 0.15 * r.float(), minTokens: r.int(10) },
      topK: { k: Math.max(1, batch - 2 - r.int(5)), minTokens: 5 + r.int(10) },
    };
    const monitor = createExitMonitor({ batch, rules });
    const steps: RefRow[][] = [];
    const decisions: StepDecisions[] = [];
    let live = Array.from({ length: batch }, (_, i) => i);
    const level = Array.from({ length: batch }, () => 0.5 + 2 * r.float());
    for (let step = 0; step < 200 && live.length > 0; step++) {
      // Some rows skip a step (their ids are passed explicitly); entropy drifts down, quantised so plateaus occur.
      const rows = live.filter(() => r.float() < 0.9);
      const row = rows.map((id) => {
        level[id] = Math.max(0, level[id] - 0.05 * r.float());
        const entropy = Math.round((level[id] + 0.1 * r.normal() ** 2) * 20) / 20;
        const partial = step % 4 === 3 ? r.float() : NaN;
        return { id, entropy, maxProb: Math.exp(-entropy), partial };
      });
      steps.push(row);
      decisions.push(monitor.push({
        ids: rows, entropy: row.map((x) => x.entropy), maxProb: row.map((x) => x.maxProb), partialReward: row.map((x) => x.partial),
      }));
      const ended = new Set(decisions[decisions.length - 1].ids.filter((_, k) => decisions[decisions.length - 1].decisions[k] !== 'continue'));
      if (step === 50 && live.length > 2) {
        monitor.finish(live[0]); // one sequence reaches EOS on its own
        ended.add(live[0]);
      }
      live = live.filter((id) => !ended.has(id));
    }
    const expected = refMonitor(batch, rules, steps);
    const got = decisions.map((d) => Array.from(d.ids, (id, k) => [id, d.rules[k]]));
    expect(got).toEqual(expected);
  });
});

describe.each(BACKENDS)('logits path on $label', (c) => {
  test.each(['f32', 'bf16'] as const)('%s logits: entropy and max-prob match the float64 reference; pushAsync equals push', async (dtype) => {
    const r = rng(`monitor logits ${c.label} ${dtype}`);
    const batch = 6, V = 3001;
    const streams = [0, 1].map(() => makeLogits(r, [batch, V], dtype));
    await withBackend(c, async () => {
      const rules = { entropyBelow: { threshold: 0.5, k: 2 } };
      const sync = createExitMonitor({ batch, rules, temperature: 0.8, backend: c.backend });
      const viaAsync = createExitMonitor({ batch, rules, temperature: 0.8, backend: c.backend });
      for (const { logits } of streams) {
        const ids = Array.from(sync.live());
        const rows = ids.length;
        const step = fromNumbers(Array.from({ length: rows * V }, (_, k) => toNumber(logits, ids[Math.floor(k / V)] * V + (k % V))), [rows, V], dtype);
        const ref = refTokenStats(step, { temperature: 0.8 });
        const out = sync.push({ logits: step });
        expect(out.entropy).toMatchReference(ref.entropy, STATS_TOL, 'entropy');
        expect(out.maxProb).toMatchReference(ref.maxProb, STATS_TOL, 'maxProb');
        const pending = viaAsync.pushAsync({ logits: step });
        // While a push is in flight, another push or a finish would race the state: both refused.
        const second = viaAsync.pushAsync({ logits: step });
        expect(() => viaAsync.finish(0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
        await expect(second).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
        const got = await pending;
        expect(got.decisions).toEqual(out.decisions);
        expect(got.entropy).toEqualBitwise(out.entropy);
      }
    });
  });
});

function toNumber(t: ReturnType<typeof tensor>, i: number): number {
  const v = t.data[i];
  if (t.dtype !== 'bf16') return v;
  const f = new Float32Array(new Uint32Array([v << 16]).buffer);
  return f[0];
}

describe('bad input', () => {
  test('rules and steps are validated with coded errors', () => {
    expect(() => createExitMonitor({ batch: 2, rules: { entropyBelow: { threshold: 0.1, k: 0 } } })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.rules.entropyBelow.k' }));
    expect(() => createExitMonitor({ batch: 2, rules: { maxProbAbove: { threshold: 1.5 } } })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.rules.maxProbAbove.threshold' }));
    expect(() => createExitMonitor({ batch: 2, rules: { budgit: { maxTokens: 3 } } as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.rules.budgit' }));
    expect(() => createExitMonitor({ batch: -1, rules: {} })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.batch' }));
    expect(() => createExitMonitor({ batch: 2, rules: {}, backend: 'gpu' as never })).toThrow(expect.objectContaining({ param: 'opts.backend' }));
    const monitor = createExitMonitor({ batch: 2, rules: { entropyBelow: { threshold: 0.1 }, maxProbAbove: { threshold: 0.9 } } });
    expect(() => monitor.push({ maxProb: [0.5, 0.5] })).toThrow(expect.objectContaining({ param: 'step.entropy' }));
    expect(() => monitor.push({ entropy: [0.5, 0.5] })).toThrow(expect.objectContaining({ param: 'step.maxProb' }));
    expect(() => monitor.push({ entropy: [0.5, NaN], maxProb: [1, 1] })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', param: 'step.entropy[1]' }));
    expect(() => monitor.push({ entropy: [1, 1], maxProb: [0, 0], ids: [0, 0] })).toThrow(expect.objectContaining({ param: 'step.ids[1]' }));
    expect(() => monitor.push({ logits: tensor(new Float32Array(6), [3, 2]) })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'step.logits.shape' }));
    expect(monitor.summary().every((s) => s.tokens === 0)).toBe(true);
  });
});
