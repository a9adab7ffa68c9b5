/**
 * tokenStatsBackward (SPEC §1.2) against the analytic float64 reference and against central finite
 * differences of the float64 forward reference, on every backend.
 */
import * as ae from '../lib';
import { DType, fromNumbers, Tensor, TensorData } from '../lib/tensor';
import type { Sfc32 } from '../lib/prng';
import { refTokenStatsBackward, rowStats, rowU } from './ref/token_stats';
import {
  BackendCase, backendCases, makeLogits, randomFloat32, randomMask, rng, roundBf16, roundF16, Tolerance,
  ulp16, widened, withBackend,
} from './helpers';

const { abs, max } = Math; // bound once: global lookups are slow in jest's vm context

// ---- parameter table ----

const CASES: readonly { shape: readonly number[]; dtype: DType; temperature: number }[] = [
  { shape: [1, 1], dtype: 'f32', temperature: 1 },
  { shape: [3, 7], dtype: 'f32', temperature: 0.7 },
  { shape: [41, 1271], dtype: 'bf16', temperature: 1.3 },
  { shape: [2, 3, 37], dtype: 'f16', temperature: 0.7 },
  { shape: [6, 1000], dtype: 'f64', temperature: 1.3 },
  { shape: [2, 152064], dtype: 'bf16', temperature: 1 },
];
/** Which upstream gradients are given: both, only ∂L/∂logprob (needs tokens), only ∂L/∂entropy. */
const UPSTREAM = ['both', 'logprob', 'entropy'] as const;
const BACKENDS: readonly BackendCase[] = backendCases();

/**
 * Gradient tolerance, per entry of row i:
 *   |got − ref| ≤ 1e-5·max_j |ref row i| + 1e-7 + 4·2^-24·G_i·L_i,   G_i = (|g_lp[i]| + |g_H[i]|·(1 + H_i))/τ.
 * Every entry of a row shares that row's lse and H, so an error of δ in them moves entry j by about
 * p_j·δ·(|g_lp| + |g_H|·|log p_j|): the error of a row is a fraction of its largest gradient, not of each
 * entry (1e-5 is the SPEC §1.1 relative bound; 1e-7 covers all-zero rows). The third term is f32
 * cancellation: entry y is g_lp·(1 − p_y)/τ and entry j carries g_H·p_j·(log p_j + H)/τ, so when p_y ≈ 1 or
 * log p_j ≈ −H an f32 kernel loses a few ulp of the terms G_i before cancelling, however small the row's
 * gradient (a one-hot row has a ~0 gradient but |g_lp|/τ-sized terms). L_i = 1 when the kernel recomputes
 * the row (log p is centred on the row max), and 1 + |lse_i| when the forward's f32 logsumexp is given:
 * log p_j = u_j − lse is then formed from uncentred f32 values whose rounding is 2^-24·|lse|.
 */
function gradTolerance(
  logits: Tensor, ref: Float64Array, up: Upstream, temperature: number, forwardGiven = false,
): (r: number, i: number) => number {
  const vocab = logits.shape[logits.shape.length - 1];
  const rows = ref.length / vocab;
  const rowTol = new Float64Array(rows);
  for (let i = 0; i < ref.length; i++) rowTol[(i / vocab) | 0] = max(rowTol[(i / vocab) | 0], abs(ref[i]));
  for (let i = 0; i < rows; i++) {
    const s = rowStats(rowU(logits, i, temperature));
    const terms = (abs(up.gradLogprob?.[i] ?? 0) + abs(up.gradEntropy?.[i] ?? 0) * (1 + s.entropy)) / temperature;
    rowTol[i] = 1e-5 * rowTol[i] + 1e-7 + 4 * 2 ** -24 * terms * (forwardGiven ? 1 + abs(s.lse) : 1);
  }
  return (_r, i) => rowTol[(i / vocab) | 0];
}

/**
 * A 16-bit output is compared with the reference rounded to that dtype: within 1 ulp of it, plus the f32
 * bound above (an entry whose f32 value carries the row's absolute error may round to a neighbour).
 */
function expect16(
  got: Uint16Array, ref: Float64Array, dtype: 'bf16' | 'f16', f32: (r: number, i: number) => number, label: string,
) {
  const rounded = ref.map(dtype === 'bf16' ? roundBf16 : roundF16);
  const tol: Tolerance = (r, i) => ulp16(r, dtype) + f32(r, i);
  expect(widened(got, dtype)).toMatchReference(rounded, tol, label);
}

interface Upstream {
  gradLogprob?: Float32Array;
  gradEntropy?: Float32Array;
  tokens?: Int32Array;
}

function upstream(r: Sfc32, rows: number, tokens: Int32Array, which: (typeof UPSTREAM)[number]): Upstream {
  const u: Upstream = {};
  if (which !== 'entropy') [u.gradLogprob, u.tokens] = [randomFloat32(r, rows), tokens];
  if (which !== 'logprob') u.gradEntropy = randomFloat32(r, rows);
  return u;
}

function copyTensor(t: Tensor): Tensor {
  return ae.tensor(t.data.slice() as TensorData, t.shape, t.dtype);
}

describe.each(CASES)('backward [$shape] $dtype τ=$temperature', ({ shape, dtype, temperature }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;

  test.each(BACKENDS)('$label: f32 gradient matches the analytic reference for each upstream', async (c) => {
    const r = rng(`backward ${label} ${c.label}`);
    const { logits, tokens, rows } = makeLogits(r, shape, dtype);
    await withBackend(c, async () => {
      for (const which of UPSTREAM) {
        const up = upstream(r, rows, tokens, which);
        const ref = refTokenStatsBackward(logits, { ...up, temperature });
        const sync = ae.tokenStatsBackwardSync(logits, { ...up, temperature, backend: c.backend });
        expect(sync).toBeInstanceOf(Float32Array);
        expect(sync).toMatchReference(ref, gradTolerance(logits, ref, up, temperature), `${label} ${c.label} ${which}`);
        const viaPromise = await ae.tokenStatsBackward(logits, { ...up, temperature, backend: c.backend });
        expect(viaPromise).toEqualBitwise(sync, `${c.label} async vs Sync`);
      }
    });
  });

  test.each(BACKENDS)("$label: given the forward's logsumexp / entropy, the gradient uses them", async (c) => {
    const r = rng(`backward-forward ${label} ${c.label}`);
    // Moderate logits (|z| ≤ 30): p_j = exp(u_j − lse) is recomputed from an f32-rounded lse, whose rounding
    // (6e-8·|lse|) must stay below the 1e-5 bound; with |z| ~ 1e4 it would not, by construction of the API.
    const { logits, tokens, rows } = makeLogits(r, shape, dtype, { extremes: false, limit: 30 });
    const forward = ae.tokenStatsSync(logits, { tokens, temperature, outputs: ['logsumexp', 'entropy'], backend: 'js' });
    await withBackend(c, async () => {
      for (const which of UPSTREAM) {
        const up = upstream(r, rows, tokens, which);
        const given = { logsumexp: forward.logsumexp!, ...(up.gradEntropy ? { entropy: forward.entropy! } : {}) };
        // The reference uses the very values passed in.
        const ref = refTokenStatsBackward(logits, { ...up, ...given, temperature });
        const got = await ae.tokenStatsBackward(logits, { ...up, ...given, temperature, backend: c.backend });
        const tol = gradTolerance(logits, ref, up, temperature, true);
        expect(got).toMatchReference(ref, tol, `${label} ${c.label} forward-given ${which}`);
      }
    });
  });

  test.each(BACKENDS)('$label: out buffers of f32 and of the input dtype are written and returned', async (c) => {
    const r = rng(`backward-out ${label} ${c.label}`);
    const { logits, tokens, rows } = makeLogits(r, shape, dtype);
    const up = upstream(r, rows, tokens, 'both');
    const ref = refTokenStatsBackward(logits, { ...up, temperature });
    await withBackend(c, async () => {
      const tol = gradTolerance(logits, ref, up, temperature);
      const out32 = new Float32Array(logits.data.length).fill(7);
      const got32 = ae.tokenStatsBackwardSync(logits, { ...up, temperature, out: out32, backend: c.backend });
      expect(got32).toBe(out32);
      expect(got32).toMatchReference(ref, tol, `${label} ${c.label} out f32`);
      const own = logits.data.slice().fill(0x3f80) as TensorData; // garbage in the input's own kind
      const gotOwn = await ae.tokenStatsBackward(logits, { ...up, temperature, out: own, backend: c.backend });
      expect(gotOwn).toBe(own);
      if (dtype === 'bf16' || dtype === 'f16') expect16(own as Uint16Array, ref, dtype, tol, `${label} ${c.label} out ${dtype}`);
      else expect(gotOwn).toMatchReference(ref, tol, `${label} ${c.label} out ${dtype}`);
    });
  });

  test.each(BACKENDS)('$label: rowMask rows get an exactly zero gradient', async (c) => {
    const r = rng(`backward-mask ${label} ${c.label}`);
    const { logits, tokens, rows, vocab } = makeLogits(r, shape, dtype);
    const rowMask = randomMask(r, rows, 0.5);
    tokens[rowMask.indexOf(0)] = -5; // unchecked in masked rows (no-op when every row is kept)
    const up = upstream(r, rows, tokens, 'both');
    const ref = refTokenStatsBackward(logits, { ...up, temperature, rowMask });
    await withBackend(c, async () => {
      const out = new Float32Array(logits.data.length).fill(NaN);
      const got = await ae.tokenStatsBackward(logits, { ...up, temperature, rowMask, out, backend: c.backend });
      expect(got).toMatchReference(ref, gradTolerance(logits, ref, up, temperature), `${label} ${c.label} rowMask`);
      const nonZero = Array.from(rowMask).flatMap((m, i) => (m === 0 && got.subarray(i * vocab, (i + 1) * vocab).some((g) => g !== 0) ? [i] : []));
      expect(nonZero).toEqual([]);
    });
  });
});

describe.each(['f32', 'bf16'] as const)('inPlace over %s logits', (dtype) => {
  test.each(BACKENDS)('$label: the gradient replaces the logits in their dtype', async (c) => {
    const r = rng(`inPlace ${dtype} ${c.label}`);
    const shape = [7, 1031];
    const { logits, tokens, rows } = makeLogits(r, shape, dtype);
    const up = upstream(r, rows, tokens, 'both');
    const ref = refTokenStatsBackward(logits, { ...up, temperature: 0.7 });
    await withBackend(c, async () => {
      for (const form of ['sync', 'async'] as const) {
        const target = copyTensor(logits);
        const opts = { ...up, temperature: 0.7, inPlace: true, backend: c.backend };
        const got = form === 'sync' ? ae.tokenStatsBackwardSync(target, opts) : await ae.tokenStatsBackward(target, opts);
        expect(got).toBe(target.data);
        const tol = gradTolerance(logits, ref, up, 0.7);
        if (dtype === 'bf16') expect16(got as Uint16Array, ref, 'bf16', tol, `inPlace bf16 ${c.label} ${form}`);
        else expect(got).toMatchReference(ref, tol, `inPlace f32 ${c.label} ${form}`);
      }
    });
  });
});

// ---- finite differences of the float64 forward reference ----

/** L(z) = Σ_i g_lp[i]·logprob_i + g_H[i]·H_i from the float64 reference forward. */
function loss(values: Float64Array, vocab: number, temperature: number, up: Upstream): number {
  const t = fromNumbers(values, [values.length / vocab, vocab], 'f64');
  let total = 0;
  for (let i = 0; i < values.length / vocab; i++) {
    const u = rowU(t, i, temperature);
    const s = rowStats(u);
    if (up.gradLogprob) total += up.gradLogprob[i] * (u[up.tokens![i]] - s.lse);
    if (up.gradEntropy) total += up.gradEntropy[i] * s.entropy;
  }
  return total;
}

describe('finite differences (V ≤ 20, f64 logits)', () => {
  test.each(BACKENDS)('$label: gradient equals central differences of the f64 reference', async (c) => {
    const r = rng(`fd ${c.label}`);
    for (let trial = 0; trial < 12; trial++) {
      const rows = 1 + r.int(4);
      const vocab = 1 + r.int(20);
      const temperature = r.pick([1, 0.7, 1.3]);
      const { logits, tokens } = makeLogits(r, [rows, vocab], 'f64', { extremes: false, limit: 30 });
      const up = upstream(r, rows, tokens, r.pick(UPSTREAM));
      const values = logits.data as Float64Array;
      // h = 1e-5: truncation error ~h²·L''' ≈ 1e-10, rounding error ~1e-16·|L|/h ≈ 1e-10.
      const h = 1e-5;
      const fd = new Float64Array(values.length);
      for (let k = 0; k < values.length; k++) {
        if (values[k] === -Infinity) continue; // a masked vocabulary entry: L does not depend on it
        const plus = values.slice();
        const minus = values.slice();
        plus[k] += h;
        minus[k] -= h;
        fd[k] = (loss(plus, vocab, temperature, up) - loss(minus, vocab, temperature, up)) / (2 * h);
      }
      const fdTol: Tolerance = (x) => 1e-6 * abs(x) + 1e-8;
      expect(refTokenStatsBackward(logits, { ...up, temperature })).toMatchReference(fd, fdTol, `reference vs FD trial ${trial}`);
      const got = await withBackend(c, () => ae.tokenStatsBackward(logits, { ...up, temperature, backend: c.backend }));
      const tol = gradTolerance(logits, fd, up, temperature);
      expect(got).toMatchReference(fd, (x, i) => tol(x, i) + 1e-8, `${c.label} vs FD trial ${trial} [${rows},${vocab}]`);
    }
  });
});

// ---- thread count ----

const CPU_CASES = BACKENDS.filter((c) => c.backend === 'cpu');
if (CPU_CASES.length === 0) console.log('backward thread-count test not run: the native backend is not loaded');
else {
  describe('cpu thread count', () => {
    test.each(CPU_CASES)('$label: backward is bitwise identical at 1 and 2 threads', async (c) => {
      const r = rng(`backward-threads ${c.label}`);
      const { logits, tokens, rows } = makeLogits(r, [23, 2053], 'bf16');
      const up = upstream(r, rows, tokens, 'both');
      const previous = ae.backendInfo().threads;
      const results: TensorData[] = [];
      try {
        for (const threads of [1, 2]) {
          ae.setThreads(threads);
          results.push(await withBackend(c, () => ae.tokenStatsBackward(logits, { ...up, temperature: 1.3, backend: 'cpu' })));
        }
      } finally {
        ae.setThreads(previous);
      }
      expect(results[1]).toEqualBitwise(results[0], 'threads 2 vs 1');
      expect(ae.backendInfo().threads).toBe(previous);
    });
  });
}
