/**
 * Vocabulary shards (SPEC §1.3): tokenStatsPartial on uneven shards of V, checked against the float64
 * partial-state reference; mergeTokenStats of the shards equals the unsharded reference within the SPEC §1.1
 * bound; mergeTokenStatsPartial is associative.
 */
import * as ae from '../lib';
import { DType } from '../lib/tensor';
import { refTokenStats, refTokenStatsPartial } from './ref/token_stats';
import {
  BackendCase, backendCases, makeSharded, randomMask, rng, Sharded, STATS_TOL, Tolerance, withBackend,
} from './helpers';

const { abs, exp, log, max } = Math; // bound once: global lookups are slow in jest's vm context

// ---- parameter table ----

const CASES: readonly { shape: readonly number[]; dtype: DType; shards: number; temperature: number }[] = [
  { shape: [6, 1271], dtype: 'f32', shards: 2, temperature: 1 },
  { shape: [7, 3001], dtype: 'bf16', shards: 3, temperature: 0.7 },
  { shape: [2, 3, 997], dtype: 'f16', shards: 5, temperature: 1.3 },
  { shape: [5, 4099], dtype: 'f64', shards: 5, temperature: 0.7 },
  { shape: [3, 152064], dtype: 'bf16', shards: 3, temperature: 1 },
];
const BACKENDS: readonly BackendCase[] = backendCases();
/** Two merges of the same f64 states differ only by the rounding of the rescaling: 1e-12 relative. */
const MERGE_RTOL = 1e-12;

/**
 * A partial state is compared through quantities that do not depend on which shift M the kernel chose:
 * log-mass M + log S (SPEC §1.1 bound), the mean of u under the shard's softmax Σe·u/S (1e-5 of
 * max(|mean|, 1), loose because the merged entropy below is held to the strict bound), Σe²/S², u_y.
 */
function expectPartial(got: ae.TokenStatsPartial, ref: ReturnType<typeof refTokenStatsPartial>, label: string) {
  const view = (p: typeof ref) => ({
    logMass: p.max.map((m, i) => (p.sumExp[i] === 0 ? -Infinity : m + log(p.sumExp[i]))),
    meanU: p.sumExpU.map((x, i) => (p.sumExp[i] === 0 ? 0 : x / p.sumExp[i])),
    sumP2: p.sumExp2.map((x, i) => (p.sumExp[i] === 0 ? 0 : x / (p.sumExp[i] * p.sumExp[i]))),
  });
  const g = view(got);
  const e = view(ref);
  expect(got.rows).toBe(ref.rows);
  expect(g.logMass).toMatchReference(e.logMass, STATS_TOL, `${label} M + log S`);
  expect(g.meanU).toMatchReference(e.meanU, (x) => 1e-5 * max(abs(x), 1), `${label} Σe·u/S`);
  expect(g.sumP2).toMatchReference(e.sumP2, STATS_TOL, `${label} Σe²/S²`);
  expect(got.targetLogit).toMatchReference(ref.targetLogit, { rtol: 1e-6, atol: 1e-6 }, `${label} u_y`);
  // An all −inf shard row is a valid empty state: max −inf and every sum exactly 0.
  const empty = ref.sumExp.reduce<number[]>((a, s, i) => (s === 0 ? [...a, i] : a), []);
  expect(empty.filter((i) => !(got.max[i] === -Infinity && got.sumExp[i] === 0 && got.sumExpU[i] === 0 && got.sumExp2[i] === 0))).toEqual([]);
}

describe.each(CASES)('shards [$shape] $dtype into $shards, τ=$temperature', ({ shape, dtype, shards: k, temperature }) => {
  const label = `[${shape}] ${dtype} ${k} shards τ=${temperature}`;
  let input: Sharded;
  let ref: ReturnType<typeof refTokenStats>;
  beforeAll(() => {
    input = makeSharded(rng(`shards ${label}`), shape, dtype, k);
    ref = refTokenStats(input.full, { tokens: input.tokens, temperature });
  });

  test.each(BACKENDS)('$label: partial states match the reference and merge to the unsharded result', async (c) => {
    const { shards, tokens } = input;
    const parts = await withBackend(c, () =>
      Promise.all(shards.map(({ tensor, offset }, s) => {
        const opts = { tokens, vocabOffset: offset, temperature, backend: c.backend };
        return s % 2 === 0 ? ae.tokenStatsPartial(tensor, opts) : ae.tokenStatsPartialSync(tensor, opts);
      })),
    );
    parts.forEach((part, s) => {
      const expected = refTokenStatsPartial(shards[s].tensor, { tokens, vocabOffset: shards[s].offset, temperature });
      expectPartial(part, expected, `${label} ${c.label} shard ${s}`);
    });
    const merged = ae.mergeTokenStats(parts);
    expect(Object.keys(merged).sort()).toEqual([...ae.STAT_NAMES].sort());
    for (const name of ae.STAT_NAMES) {
      expect(merged[name]).toMatchReference(ref[name]!, STATS_TOL, `${label} ${c.label} merged ${name}`);
    }
  });

  test('mergeTokenStatsPartial is associative: (a·b)·c = a·(b·c) = merge(a, b, c)', () => {
    const { shards, tokens } = input;
    const parts = shards.map(({ tensor, offset }) => ae.tokenStatsPartialSync(tensor, { tokens, vocabOffset: offset, temperature, backend: 'js' }));
    // Group the shards into three runs a, b, c. With 2 shards, c repeats a: merging is the same algebra
    // whether or not the states cover disjoint columns.
    const [a, b, c] = k === 2 ? [parts[0], parts[1], parts[0]] : [parts[0], ae.mergeTokenStatsPartial(parts.slice(1, k - 1)), parts[k - 1]];
    const left = ae.mergeTokenStatsPartial([ae.mergeTokenStatsPartial([a, b]), c]);
    const right = ae.mergeTokenStatsPartial([a, ae.mergeTokenStatsPartial([b, c])]);
    const flat = ae.mergeTokenStatsPartial([a, b, c]);
    const pieces = [a, b, c];
    /** Size of Σ_k exp(M_k − M)·|x_k|: the scale of any rounding in the merged sum (u's of both signs cancel). */
    const scale = (field: 'sumExp' | 'sumExpU' | 'sumExp2', power: number): Tolerance => (_x, i) =>
      MERGE_RTOL * pieces.reduce((sum, p) => (p.sumExp[i] === 0 ? sum : sum + exp(power * (p.max[i] - flat.max[i])) * abs(p[field][i])), 0);
    for (const other of [left, right]) {
      expect(other.rows).toBe(flat.rows);
      expect(other.max).toEqualBitwise(flat.max, 'max');
      expect(other.targetLogit).toEqualBitwise(flat.targetLogit, 'targetLogit');
      expect(other.sumExp).toMatchReference(flat.sumExp, scale('sumExp', 1), 'sumExp');
      expect(other.sumExpU).toMatchReference(flat.sumExpU, scale('sumExpU', 1), 'sumExpU');
      expect(other.sumExp2).toMatchReference(flat.sumExp2, scale('sumExp2', 2), 'sumExp2');
    }
  });
});

describe('mergeTokenStats options', () => {
  test.each(BACKENDS)('$label: outputs, rowMask, no tokens, and a row that is −inf in every shard', async (c) => {
    const r = rng(`merge-options ${c.label}`);
    const { full, shards, tokens, rows } = makeSharded(r, [9, 2000], 'f32', 3);
    const rowMask = randomMask(r, rows);
    const partsOf = (withTokens: boolean) => withBackend(c, () => Promise.all(shards.map(({ tensor, offset }) =>
      ae.tokenStatsPartial(tensor, { ...(withTokens ? { tokens } : {}), vocabOffset: offset, backend: c.backend }))));
    const parts = await partsOf(true);
    const ref = refTokenStats(full, { tokens, rowMask });
    const some = ae.mergeTokenStats(parts, { outputs: ['logprob', 'sumPiSquared'], rowMask });
    expect(Object.keys(some).sort()).toEqual(['logprob', 'sumPiSquared']);
    expect(some.logprob).toMatchReference(ref.logprob!, STATS_TOL, 'logprob with rowMask');
    expect(some.sumPiSquared).toMatchReference(ref.sumPiSquared, STATS_TOL, 'Σp² with rowMask');
    // Without tokens the partial states have no target: no logprob by default.
    const noTarget = ae.mergeTokenStats(await partsOf(false));
    expect(Object.keys(noTarget).sort()).toEqual(ae.STAT_NAMES.filter((n) => n !== 'logprob').sort());
    expect(noTarget.entropy).toMatchReference(refTokenStats(full).entropy, STATS_TOL, 'entropy without tokens');
    // Row 4 entirely −inf in every shard: each shard state is empty and valid, the merged row is not finite.
    for (const { tensor } of shards) {
      const width = tensor.shape[tensor.shape.length - 1];
      (tensor.data as Float32Array).fill(-Infinity, 4 * width, 5 * width);
    }
    const blanked = await withBackend(c, () => Promise.all(shards.map(({ tensor, offset }) =>
      ae.tokenStatsPartial(tensor, { vocabOffset: offset, backend: c.backend }))));
    expect(blanked.map((p) => [p.max[4], p.sumExp[4]])).toEqual(shards.map(() => [-Infinity, 0]));
    expect(() => ae.mergeTokenStats(blanked)).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 4 }));
    const nan = ae.mergeTokenStats(blanked, { nonFinite: 'nan' });
    expect(ae.STAT_NAMES.filter((n) => n !== 'logprob').map((n) => Number.isNaN(nan[n]![4]))).toEqual([true, true, true, true]);
    expect(nan.entropy![3]).toBeCloseTo(noTarget.entropy![3], 6);
  });
});
