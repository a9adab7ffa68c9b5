/**
 * The early-exit training example (examples/train-early-exit.ts): the thinking vote and the warm start's
 * calibration table against plain references, the learning claim (thinking length falls while accuracy holds)
 * (S-GRPO) on a fixed seed, the js and cpu backends giving the same first steps, the chart
 * and the command's flags.
 */
import * as ae from '../lib';
import {
  EARLY_EXIT_DEFAULTS, ThoughtVote, earlyExitChartSvg, meanOver, runTrainEarlyExit, trainEarlyExit, voteAccuracyByMargin,
  type EarlyExitLog,
} from '../examples/train-early-exit';
import { UsageError } from '../lib/cli_args';
import { nativeLoaded, rng } from './helpers';

const { abs, max } = Math;

// ---- the thinking state ----

/** Vote and margin of a chain by counting from scratch: most named (ties → the one that got there first). */
function referenceVote(thoughts: readonly number[], answers: number): { vote: number; margin: number } {
  const counts = new Array<number>(answers).fill(0);
  let vote = -1;
  for (const x of thoughts) {
    counts[x]++;
    // The leader changes only when a count strictly exceeds the leader's.
    if (vote < 0 || counts[x] > counts[vote]) vote = x;
  }
  const sorted = [...counts].sort((a, b) => b - a);
  return { vote, margin: sorted[0] - sorted[1] };
}

describe('ThoughtVote', () => {
  test('hand-worked chain: vote, tie-keeping and margin', () => {
    const v = new ThoughtVote(4);
    const seen: [number, number][] = [];
    for (const x of [2, 1, 1, 2, 2, 3]) {
      v.add(x);
      seen.push([v.vote, v.margin]);
    }
    // 2 leads; 1 ties it (2 keeps the lead, margin 0); 1 overtakes; 2 ties (1 keeps it); 2 overtakes; 3 changes no lead.
    expect(seen).toEqual([[2, 1], [2, 0], [1, 1], [1, 0], [2, 1], [2, 1]]);
  });

  test('matches counting from scratch on random chains', () => {
    const r = rng('thought-vote');
    for (let n = 0; n < 200; n++) {
      const answers = 2 + r.int(6);
      const v = new ThoughtVote(answers);
      const chain: number[] = [];
      for (let t = 0; t < 1 + r.int(20); t++) {
        chain.push(r.int(answers));
        v.add(chain[chain.length - 1]);
        expect({ vote: v.vote, margin: v.margin }).toEqual(referenceVote(chain, answers));
      }
    }
  });
});

describe('voteAccuracyByMargin', () => {
  /**
   * Exact P(vote right | margin) over every prefix of every chain of `budget` thoughts, by enumerating all
   * A^budget chains in float64 (answer 0 is the right one; a thought is 0 with probability q).
   */
  function exact(answers: number, budget: number, q: number): { accuracy: Float64Array; weight: Float64Array } {
    const right = new Float64Array(budget + 1);
    const weight = new Float64Array(budget + 1);
    for (let code = 0; code < answers ** budget; code++) {
      const chain: number[] = [];
      let p = 1;
      for (let t = 0, c = code; t < budget; t++, c = Math.floor(c / answers)) {
        chain.push(c % answers);
        p *= c % answers === 0 ? q : (1 - q) / (answers - 1);
      }
      for (let t = 1; t <= budget; t++) {
        const { vote, margin } = referenceVote(chain.slice(0, t), answers);
        weight[margin] += p;
        if (vote === 0) right[margin] += p;
      }
    }
    return { accuracy: right.map((x, m) => (weight[m] > 0 ? x / weight[m] : NaN)), weight };
  }

  test.each([[3, 4, 0.5], [4, 5, 0.3], [2, 6, 0.6]])('Monte Carlo matches exact enumeration (A=%i, budget %i, q=%f)', (answers, budget, q) => {
    const chains = 40000;
    const seed = rng(`vote-accuracy ${answers} ${budget} ${q}`).uint32();
    const got = voteAccuracyByMargin(answers, budget, q, chains, seed);
    const { accuracy, weight } = exact(answers, budget, q);
    let below = 1 / answers;
    for (let m = 0; m <= budget; m++) {
      // The table is the running max of the per-margin estimates; compare where the exact one is increasing.
      expect(got[m]).toBeGreaterThanOrEqual(below - 1e-12);
      if (weight[m] > 0) {
        // weight[m]·chains prefixes land at this margin, up to `budget` of them from one chain (correlated):
        // count them as weight[m]·chains / budget independent draws.
        const samples = (weight[m] * chains) / budget;
        const tol = 5 * Math.sqrt(0.25 / samples) + 1e-9;
        const expected = max(accuracy[m], ...Array.from(accuracy.subarray(0, m)).filter((x) => x === x), 1 / answers);
        if (abs(got[m] - expected) > tol) throw new Error(`margin ${m}: ${got[m]} vs exact ${expected} (tolerance ${tol.toFixed(4)})`);
      }
      below = got[m];
    }
  });

  test('one thought: margin 1 is right with probability q; margin 0 is never seen (1/A)', () => {
    const got = voteAccuracyByMargin(5, 1, 0.4, 20000, 7);
    expect(got[0]).toBe(1 / 5);
    expect(abs(got[1] - 0.4)).toBeLessThan(5 * Math.sqrt(0.24 / 20000));
  });
});

// ---- training ----

function curve(history: readonly EarlyExitLog[]): Omit<EarlyExitLog, 'engineMs' | 'stepMs'>[] {
  return history.map(({ engineMs: _e, stepMs: _s, ...rest }) => rest);
}

describe('trainEarlyExit', () => {
  const B = EARLY_EXIT_DEFAULTS.promptsPerStep * EARLY_EXIT_DEFAULTS.groupSize;

  // Thresholds from measured runs (60 steps, seeds 1–5, js): the last-10 / first-10 thinking ratio was
  // 0.088–0.100 with S-GRPO, the last-10 accuracy 0.865–0.927 against 0.58–0.61 over the first 10 steps.
  // Seed 1 (the default) is the one tested; the length reward is not (CI time), the README gives its figures.
  test('S-GRPO: 60 steps on the default seed cut the thinking length by ≥ 3× while accuracy holds (≥ 0.75 and ≥ the start)', () => {
    const history = trainEarlyExit({ steps: 60, backend: 'js' });
    const thinkingStart = meanOver(history, 'thinking', 0, 10);
    const thinkingEnd = meanOver(history, 'thinking', 50, 60);
    const accuracyStart = meanOver(history, 'accuracy', 0, 10);
    const accuracyEnd = meanOver(history, 'accuracy', 50, 60);
    console.log(`train_early_exit: thinking ${thinkingStart.toFixed(2)} → ${thinkingEnd.toFixed(2)} thoughts, accuracy ${accuracyStart.toFixed(3)} → ${accuracyEnd.toFixed(3)} (steps 1–10 → 51–60)`);
    // The warm start is a slow reasoner: it needs most of its budget at first.
    expect(thinkingStart).toBeGreaterThan(0.5 * EARLY_EXIT_DEFAULTS.budget);
    expect(thinkingEnd).toBeLessThanOrEqual(thinkingStart / 3);
    expect(accuracyEnd).toBeGreaterThanOrEqual(0.75);
    expect(accuracyEnd).toBeGreaterThanOrEqual(accuracyStart);
    for (const h of history) {
      for (const value of Object.values(h)) expect(Number.isFinite(value)).toBe(true);
      expect(h.thinking).toBeGreaterThanOrEqual(1);
      expect(h.thinking).toBeLessThanOrEqual(EARLY_EXIT_DEFAULTS.budget);
      // Accuracy and the confident-exit fraction are counts over the B completions.
      expect(h.accuracy * B).toBeCloseTo(Math.round(h.accuracy * B), 6);
      expect(h.confidentExits).toBeGreaterThanOrEqual(0);
      expect(h.confidentExits).toBeLessThanOrEqual(1);
    }
    // At the end nearly every completion leaves on the monitor's confidence rule, not on the budget.
    expect(history.slice(50).reduce((a, h) => a + h.confidentExits, 0) / 10).toBeGreaterThan(0.9);
  });

  test('the same seed and backend give the same curve (deterministic; length shaping)', () => {
    const short = { steps: 3, warmSteps: 10, backend: 'js', shaping: 'length' } as const;
    const a = trainEarlyExit({ ...short, seed: 11 });
    expect(curve(trainEarlyExit({ ...short, seed: 11 }))).toEqual(curve(a));
    expect(curve(trainEarlyExit({ ...short, seed: 12 }))).not.toEqual(curve(a));
  });

  (nativeLoaded() ? test : test.skip)('js and cpu give the same first 6 steps within float noise', () => {
    // The default warm start (also run on each backend). With a 40-step one the curves parted at step 4:
    // Adam turns rounding-level differences in near-zero gradient components into lr-sized steps.
    const js = curve(trainEarlyExit({ steps: 6, backend: 'js' }));
    const cpu = curve(trainEarlyExit({ steps: 6, backend: 'cpu' }));
    for (let s = 0; s < 6; s++) {
      // Same thoughts, exits and answers: the backends' f32 results differ by rounding only.
      for (const key of ['accuracy', 'thinking', 'confidentExits', 'reward'] as const) expect(cpu[s][key]).toBe(js[s][key]);
      for (const key of ['entropy', 'clipFraction', 'approxKl', 'gradNorm'] as const) {
        const tol = 1e-5 * max(abs(js[s][key]), 1e-2);
        if (abs(cpu[s][key] - js[s][key]) > tol) throw new Error(`step ${s + 1} ${key}: js ${js[s][key]}, cpu ${cpu[s][key]} (tolerance ${tol})`);
      }
    }
  });

  test('rejects a bad configuration before training', () => {
    expect(() => trainEarlyExit({ groupSize: 1 })).toThrow(RangeError);
    expect(() => trainEarlyExit({ answers: 1 })).toThrow(RangeError);
    expect(() => trainEarlyExit({ promptsPerStep: 17 })).toThrow(RangeError);
    expect(() => trainEarlyExit({ exitThreshold: 1.5 })).toThrow(RangeError);
    expect(() => trainEarlyExit({ shaping: 'fast' as 'sgrpo' })).toThrow(RangeError);
    expect(() => trainEarlyExit({ backend: 'gpu' as 'js', steps: 1, warmSteps: 1 })).toThrow(ae.EngineError);
  });
});

// ---- the chart and the command ----

describe('train-early-exit output', () => {
  const log = (step: number, thinking: number, accuracy: number): EarlyExitLog => ({
    step, accuracy, thinking, confidentExits: 1, reward: accuracy, entropy: 1, clipFraction: 0, approxKl: 0, gradNorm: 1, engineMs: 1, stepMs: 2,
  });

  test('the SVG chart has one polyline point per step for thinking and accuracy (each raw and 10-step mean)', () => {
    const history = Array.from({ length: 30 }, (_, s) => log(s, 16 - s / 2, 0.5 + s / 100));
    const svg = earlyExitChartSvg(history, 'S-GRPO <early exit>', 16);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('S-GRPO &lt;early exit&gt;');
    expect(svg).toContain('budget 16');
    const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1].split(' '));
    expect(lines.length).toBe(4);
    for (const points of lines) expect(points.length).toBe(30);
  });

  test('a short run prints one JSON log per step and a summary', () => {
    const lines: string[] = [];
    const spy = jest.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(line));
    try {
      expect(runTrainEarlyExit(['--steps', '2', '--json', '--backend', 'js', '--shaping', 'outcome'])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    expect(lines.length).toBe(3);
    const summary = JSON.parse(lines[2]);
    expect(summary.steps).toBe(2);
    expect(summary.shaping).toBe('outcome');
    expect(summary.firstThinking).toBeCloseTo(lines.slice(0, 2).reduce((a, l) => a + JSON.parse(l).thinking, 0) / 2, 12);
  });

  test('bad flags are usage errors', () => {
    expect(() => runTrainEarlyExit(['--backend', 'gpu'])).toThrow(UsageError);
    expect(() => runTrainEarlyExit(['--shaping', 'fast'])).toThrow(UsageError);
    expect(() => runTrainEarlyExit(['--steps', '0'])).toThrow(UsageError);
    expect(() => runTrainEarlyExit(['--threshold', '2'])).toThrow(UsageError);
    expect(() => runTrainEarlyExit(['--nope'])).toThrow(UsageError);
  });
});
