/**
 * precision: 'f64' (f64 arithmetic with exp(), Float64Array outputs) against the float64 reference and
 * against verl's own outputs (test/vectors/verl-b178a3c.json, `token_stats`: entropy_from_logits and
 * logprobs_from_logits_v2 on logits / temperature), on every backend.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ae from '../lib';
import { DType, Tensor } from '../lib/tensor';
import { refFullKl, refTokenStats, refTokenStatsBackward, refTokenStatsPartial } from './ref/token_stats';
import { BackendCase, backendCases, compare, makeLogits, randomFloat32, rng, withBackend } from './helpers';

// ---- parameter table ----

const SHAPES: readonly (readonly number[])[] = [[1, 1], [5, 37], [3, 4099], [2, 152064]];
const DTYPES: readonly DType[] = ['f64', 'f32', 'bf16'];
/**
 * Both sides compute in f64 and differ only in rounding: summation order over up to 152k terms (~1e-11
 * relative) and the reference's uncentred log-space arithmetic (u − lse with |u| up to ~1.3e4 rounds at
 * |u|·2^-53 ≈ 1.5e-12). 1e-10 relative, with a 1e-12 floor for outputs near 0 (a one-hot row's entropy), is
 * five orders tighter than the f32 path's SPEC §1.1 bound.
 */
const F64_TOL = { rtol: 1e-10, atol: 1e-12 };

/** F64_TOL plus the reference's uncentred rounding, 4·2^-52·max|u| of each row (logprob of the argmax is ≈ 0). */
function f64RowTolerance(logits: Tensor, temperature: number): (ref: number, row: number) => number {
  const vocab = logits.shape[logits.shape.length - 1];
  const uMax: number[] = [];
  for (let i = 0; i < logits.data.length / vocab; i++) {
    let m = 0;
    for (let j = i * vocab; j < (i + 1) * vocab; j++) {
      const z = Math.abs(ae.elementAt(logits, j));
      if (Number.isFinite(z)) m = Math.max(m, z);
    }
    uMax.push(m / temperature);
  }
  return (ref, row) => Math.max(F64_TOL.rtol * Math.abs(ref), F64_TOL.atol) + 4 * 2 ** -52 * uMax[row];
}
/** shared/vectors/README.md: f64 inputs must reproduce verl within 1e-9 relative. */
const VERL_TOL = { rtol: 1e-9, atol: 0 };
const BACKENDS: readonly BackendCase[] = backendCases();

interface VerlTokenStats {
  shape: [number, number];
  temperature: number;
  logits: number[];
  tokens: number[];
  entropy: number[];
  logprob: number[];
}

function verlVectors(): VerlTokenStats[] {
  const file = path.resolve(__dirname, 'vectors', 'verl-b178a3c.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { token_stats: VerlTokenStats[] }).token_stats;
}

function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: { rtol: number; atol: number }, label: string) {
  const report = compare(got, ref, tol, label);
  if (report.count > 0) throw new Error(report.message);
}

describe.each(BACKENDS)('precision f64 on $label', (c) => {
  const { backend } = c;

  test.each(verlVectors().map((v, k) => ({ k, v })))('reproduces verl token_stats vector $k', ({ k, v }) => withBackend(c, () => {
    const logits = ae.tensor(Float64Array.from(v.logits), v.shape);
    const got = ae.tokenStatsSync(logits, { tokens: v.tokens, temperature: v.temperature, precision: 'f64', backend });
    expect(got.entropy).toBeInstanceOf(Float64Array);
    expectClose(got.entropy!, v.entropy, VERL_TOL, `verl[${k}] entropy`);
    expectClose(got.logprob!, v.logprob, VERL_TOL, `verl[${k}] logprob`);
  }));

  const cases = SHAPES.flatMap((shape) => DTYPES.map((dtype) => ({ shape, dtype })));
  test.each(cases)('tokenStats $dtype $shape matches the reference to 1e-10', ({ shape, dtype }) => withBackend(c, async () => {
    const r = rng(`precision ${c.label} ${dtype} ${shape}`);
    const { logits, tokens } = makeLogits(r, shape, dtype);
    const temperature = 0.5 + r.float();
    const ref = refTokenStats(logits, { tokens, temperature });
    const got = await ae.tokenStats(logits, { tokens, temperature, precision: 'f64', nonFinite: 'nan', backend });
    for (const name of ae.STAT_NAMES) {
      expect(got[name]).toBeInstanceOf(Float64Array);
      const report = compare(got[name]!, ref[name]!, f64RowTolerance(logits, temperature), `${name} ${dtype} [${shape}] τ=${temperature}`);
      if (report.count > 0) throw new Error(report.message);
    }
  }));

  test.each(DTYPES)('tokenStatsBackward %s in f64 matches the reference gradient', (dtype) => withBackend(c, async () => {
    const r = rng(`precision backward ${c.label} ${dtype}`);
    const { logits, tokens, rows, vocab } = makeLogits(r, [4, 2053], dtype);
    const temperature = 0.5 + r.float();
    const gradLogprob = randomFloat32(r, rows), gradEntropy = randomFloat32(r, rows);
    const got = await ae.tokenStatsBackward(logits, { tokens, temperature, gradLogprob, gradEntropy, precision: 'f64', backend });
    expect(got).toBeInstanceOf(Float64Array);
    const ref = refTokenStatsBackward(logits, { tokens, temperature, gradLogprob, gradEntropy });
    for (let i = 0; i < rows; i++) {
      const refRow = ref.subarray(i * vocab, (i + 1) * vocab);
      const scale = refRow.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      let uMax = 0;
      for (let j = 0; j < vocab; j++) uMax = Math.max(uMax, Math.abs(ae.elementAt(logits, i * vocab + j)) / temperature);
      // 1e-10 of the row's largest entry, plus the reference's own rounding: it forms log p = u − lse
      // uncentred, so 1 − p_y (and p·(log p + H)) carry |u|·2^-52 absolute error, times the upstream gradients.
      const atol = 1e-10 * scale + 4 * 2 ** -52 * (1 + uMax) * (Math.abs(gradLogprob[i]) + 10 * Math.abs(gradEntropy[i])) / temperature;
      expectClose(got.subarray(i * vocab, (i + 1) * vocab), refRow, { rtol: 0, atol }, `grad row ${i} ${dtype}`);
    }
  }));

  test.each(DTYPES)('fullKl %s in f64 matches the reference', (dtype) => withBackend(c, () => {
    const r = rng(`precision kl ${c.label} ${dtype}`);
    const { logits, rows, vocab } = makeLogits(r, [5, 1031], dtype, { negInf: false });
    const noisy = Float64Array.from({ length: rows * vocab }, (_, j) => ae.elementAt(logits, j) + 0.3 * r.normal());
    const refLogits = ae.fromNumbers(noisy, [rows, vocab], dtype);
    const got = ae.fullKlSync(logits, refLogits, { temperature: 0.8, precision: 'f64', backend });
    expect(got).toBeInstanceOf(Float64Array);
    // KL is a difference of terms of the size of the tempered logits (w/sp, log sp, log sq around the row
    // maxima), so it is judged against their rounding, 4·2^-52·max|u| (the reference works uncentred), plus 1e-12.
    const uMax = Array.from({ length: rows }, (_, i) => {
      let m = 0;
      for (let j = i * vocab; j < (i + 1) * vocab; j++) m = Math.max(m, Math.abs(ae.elementAt(logits, j)), Math.abs(ae.elementAt(refLogits, j)));
      return m / 0.8;
    });
    const report = compare(got, refFullKl(logits, refLogits, { temperature: 0.8 }),
      (ref, i) => 1e-10 * Math.abs(ref) + 1e-12 + 4 * 2 ** -52 * uMax[i], `kl ${dtype}`);
    if (report.count > 0) throw new Error(report.message);
  }));

  test('f64 shards merge to the unsharded f64 statistics', () => withBackend(c, () => {
    const r = rng(`precision shards ${c.label}`);
    const vocab = 3001;
    const { logits, tokens } = makeLogits(r, [6, vocab], 'f64', { negInf: false });
    const cut = 1 + r.int(vocab - 2);
    const shard = (from: number, to: number): Tensor => {
      const data = new Float64Array(6 * (to - from));
      for (let i = 0; i < 6; i++) data.set((logits.data as Float64Array).subarray(i * vocab + from, i * vocab + to), i * (to - from));
      return ae.tensor(data, [6, to - from]);
    };
    const parts = [shard(0, cut), shard(cut, vocab)].map((s, k) =>
      ae.tokenStatsPartialSync(s, { tokens, vocabOffset: k === 0 ? 0 : cut, precision: 'f64', backend }));
    const whole = refTokenStats(logits, { tokens });
    const merged = ae.mergeTokenStats(parts, { precision: 'f64' });
    for (const name of ae.STAT_NAMES) expectClose(merged[name]!, whole[name]!, F64_TOL, `merged ${name} (cut ${cut})`);
    const refFirst = refTokenStatsPartial(shard(0, cut), { tokens, vocabOffset: 0 });
    // M + log Σe does not depend on the shift a backend chose.
    const lse = (m: ArrayLike<number>, s: ArrayLike<number>) => Array.from(m, (x, i) => x + Math.log(s[i]));
    expectClose(lse(parts[0].max, parts[0].sumExp), lse(refFirst.max, refFirst.sumExp), F64_TOL, 'shard lse');
  }));
});

describe('precision option', () => {
  const logits = ae.tensor(new Float32Array([0, 1, 2, 3]), [2, 2]);

  test('an unknown precision is ERR_INVALID_ARG_VALUE', () => {
    expect(() => ae.tokenStatsSync(logits, { precision: 'f16' as 'f32' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }),
    );
  });

  test("precision 'f64' takes no f32 forward values in the backward", () => {
    const opts = { tokens: [0, 1], gradLogprob: new Float32Array(2), logsumexp: new Float32Array(2), precision: 'f64' as const };
    expect(() => ae.tokenStatsBackwardSync(logits, opts)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.logsumexp' }),
    );
  });

  test("out buffers must be Float64Arrays with precision 'f64'", () => {
    expect(() => ae.tokenStatsSync(logits, { precision: 'f64', out: { entropy: new Float32Array(2) as unknown as Float64Array } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', param: 'opts.out.entropy' }),
    );
    const entropy = new Float64Array(2);
    const got = ae.tokenStatsSync(logits, { precision: 'f64', outputs: ['entropy'], out: { entropy } });
    expect(got.entropy).toBe(entropy);
    // Two logits one apart: H = log(1 + e) − e/(1 + e) exactly.
    const e = Math.E;
    expect(Math.abs(entropy[0] - (Math.log(1 + e) - e / (1 + e)))).toBeLessThan(1e-15);
  });
});
