/**
 * klPenalty (SPEC §3) against the float64 reference: every estimator's value and gradient on random d = lp − ref
 * (including −d beyond ±20 and k3 values beyond 10, where the clamps bind and the gradient is 0), the '+'
 * straight-through forms (value of the named estimator, gradient of k2), clamp: false, hand-worked values, finite
 * differences of the value for the plain forms, every backend; and the adaptive KL controller on a hand case.
 */
import * as ae from '../lib';
import { drawKlInputs, KL_ESTIMATORS, KlEstimator, refAdaptiveKl, refKlAt, refKlPenalty } from './ref/policy_loss';
import { backendCases, BackendCase, rng, withBackend } from './helpers';

const BACKENDS: readonly BackendCase[] = backendCases();
/** f32 values against the float64 reference (k3 near the clamp is ~10, so relative with an absolute floor). */
const F32_TOL = { rtol: 1e-5, atol: 1e-6 };

type KlOptions = Parameters<typeof ae.klPenaltySync>[2];

describe.each(KL_ESTIMATORS)('estimator %s', (estimator) => {
  test.each(BACKENDS)('$label: value and gradient match the reference (f32)', async (c) => {
    const { lp, ref } = drawKlInputs(rng(`kl ${estimator}`), 3001, Float32Array);
    const want = refKlPenalty(lp, ref, estimator);
    await withBackend(c, async () => {
      const got = ae.klPenaltySync(lp, ref, { estimator, backend: c.backend } as KlOptions);
      expect(got.value).toBeInstanceOf(Float32Array);
      expect(got.value).toMatchReference(want.value, F32_TOL, `${estimator} value`);
      expect(got.grad).toMatchReference(want.grad, F32_TOL, `${estimator} grad`);
      const viaPromise = await ae.klPenalty(lp, ref, { estimator, backend: c.backend } as KlOptions);
      expect(viaPromise.value).toEqualBitwise(got.value, 'async value');
      expect(viaPromise.grad).toEqualBitwise(got.grad, 'async grad');
    });
  });

  test('precision f64: within double rounding of the reference', () => {
    const { lp, ref } = drawKlInputs(rng(`kl f64 ${estimator}`), 501, Float64Array);
    const want = refKlPenalty(lp, ref, estimator);
    const got = ae.klPenaltySync(lp, ref, { estimator, precision: 'f64' } as KlOptions);
    expect(got.value).toBeInstanceOf(Float64Array);
    expect(got.value).toMatchReference(want.value, { rtol: 1e-13, atol: 1e-15 }, `${estimator} value`);
    expect(got.grad).toMatchReference(want.grad, { rtol: 1e-13, atol: 1e-15 }, `${estimator} grad`);
  });

  test('clamp: false removes the k3 guards', () => {
    const { lp, ref } = drawKlInputs(rng(`kl noclamp ${estimator}`), 301, Float64Array);
    // keep exp(−d) finite and representable in f32: −d below 80
    const want = refKlPenalty(lp, ref, estimator, false);
    const got = ae.klPenaltySync(lp, ref, { estimator, clamp: false, precision: 'f64' } as KlOptions);
    expect(got.value).toMatchReference(want.value, { rtol: 1e-13, atol: 1e-15 }, `${estimator} value (no clamp)`);
    expect(got.grad).toMatchReference(want.grad, { rtol: 1e-13, atol: 1e-15 }, `${estimator} grad (no clamp)`);
  });

  if (!estimator.endsWith('+')) {
    test('the gradient is the derivative of the value (central differences, f64)', () => {
      const { lp, ref } = drawKlInputs(rng(`kl fd ${estimator}`), 200, Float64Array);
      const got = ae.klPenaltySync(lp, ref, { estimator, precision: 'f64' } as KlOptions);
      const h = 1e-6;
      const plus = ae.klPenaltySync(lp.map((x) => x + h), ref, { estimator, precision: 'f64' } as KlOptions).value;
      const minus = ae.klPenaltySync(lp.map((x) => x - h), ref, { estimator, precision: 'f64' } as KlOptions).value;
      const fd = new Float64Array(lp.length);
      for (let i = 0; i < lp.length; i++) fd[i] = (plus[i] - minus[i]) / (2 * h);
      expect(got.grad).toMatchReference(fd, { rtol: 1e-6, atol: 1e-6 }, `${estimator} grad vs FD`);
    });
  }
});

describe('hand-worked values', () => {
  const at = (d: number[], estimator: KlEstimator, clamp = true) => {
    const lp = Float64Array.from(d);
    const got = ae.klPenaltySync(lp, new Float64Array(d.length), { estimator, clamp, precision: 'f64' } as KlOptions);
    return { value: Array.from(got.value), grad: Array.from(got.grad) };
  };
  const close = (got: number[], want: number[]) => got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));

  test('k1, abs, k2 at d = −2, 0.5, 3', () => {
    close(at([-2, 0.5, 3], 'k1').value, [-2, 0.5, 3]);
    close(at([-2, 0.5, 3], 'k1').grad, [1, 1, 1]);
    close(at([-2, 0.5, 3], 'abs').value, [2, 0.5, 3]);
    close(at([-2, 0.5, 3], 'abs').grad, [-1, 1, 1]);
    close(at([-2, 0.5, 3], 'k2').value, [2, 0.125, 4.5]);
    close(at([-2, 0.5, 3], 'k2').grad, [-2, 0.5, 3]);
  });

  test('abs has gradient 0 at d = 0', () => {
    close(at([0], 'abs').grad, [0]);
  });

  test('k3 = exp(−d) − 1 + d, gradient 1 − exp(−d); output clamp 10 and exp clamp 20 give gradient 0', () => {
    const d = [1, -1, -3, 25, -25];
    const k = at(d, 'k3');
    // d = −3: e³ − 4 = 16.1 → 10; d = 25: −d clamped to −20, e^−20 + 19 → 10; d = −25: e^20 − 21 → 10
    close(k.value, [Math.exp(-1), Math.exp(1) - 2, 10, 10, 10]);
    close(k.grad, [1 - Math.exp(-1), 1 - Math.E, 0, 0, 0]);
    // without the clamps: the raw formula (d = 25 → e^−25 + 24)
    const raw = at([-3, 25], 'k3', false);
    close(raw.value, [Math.exp(3) - 4, Math.exp(-25) + 24]);
    close(raw.grad, [1 - Math.exp(3), 1 - Math.exp(-25)]);
  });

  test("'+' forms: the named value with the k2 gradient d", () => {
    const d = [-3, 0.5, 25];
    for (const estimator of ['k1+', 'abs+', 'k3+'] as const) {
      const k = at(d, estimator);
      close(k.value, d.map((x) => refKlAt(x, estimator.slice(0, -1) as KlEstimator).value));
      close(k.grad, d);
    }
  });
});

describe('AdaptiveKlController', () => {
  test('β ← β·(1 + clip(KL/target − 1, ±0.2)·nSteps/horizon), on a hand case', () => {
    const c = new ae.AdaptiveKlController({ initKlCoef: 0.1, targetKl: 0.05, horizon: 1000 });
    expect(c.value).toBe(0.1);
    // KL = 0.055: e = 0.1; 64 steps: β = 0.1·(1 + 0.1·64/1000) = 0.10064
    c.update(0.055, 64);
    expect(c.value).toBeCloseTo(0.10064, 14);
    // KL = 1 (far above target): e clipped to 0.2
    c.update(1, 100);
    expect(c.value).toBeCloseTo(0.10064 * 1.02, 14);
    // KL = 0 (far below): e = −0.2
    c.update(0, 500);
    expect(c.value).toBeCloseTo(0.10064 * 1.02 * 0.9, 14);
  });

  test('a sequence of random updates follows the reference formula', () => {
    const r = rng('adaptive kl');
    const c = new ae.AdaptiveKlController({ initKlCoef: 0.2, targetKl: 6, horizon: 10000 });
    let beta = 0.2;
    for (let k = 0; k < 50; k++) {
      const kl = r.uniform(0, 12);
      const steps = 1 + r.int(512);
      c.update(kl, steps);
      beta = refAdaptiveKl(beta, kl, 6, 10000, steps);
      expect(c.value).toBeCloseTo(beta, 12);
    }
  });
});

describe('opts.out: the caller\'s buffers', () => {
  test.each(BACKENDS)('$label: written in place and returned, the same values as new arrays (f32 and f64)', async (c) => {
    const { lp, ref } = drawKlInputs(rng(`kl out ${c.label}`), 1001, Float32Array);
    await withBackend(c, async () => {
      for (const precision of ['f32', 'f64'] as const) {
        const [a, b] = precision === 'f64' ? [Float64Array.from(lp), Float64Array.from(ref)] : [lp, ref];
        const Out = precision === 'f64' ? Float64Array : Float32Array;
        const out = { value: new Out(a.length).fill(NaN), grad: new Out(a.length).fill(NaN) };
        const fresh = ae.klPenaltySync(a, b, { estimator: 'k3', precision, backend: c.backend });
        const got = ae.klPenaltySync(a, b, { estimator: 'k3', precision, backend: c.backend, out });
        expect(got.value).toBe(out.value);
        expect(got.grad).toBe(out.grad);
        expect(got.value).toEqualBitwise(fresh.value, `${precision} value`);
        expect(got.grad).toEqualBitwise(fresh.grad, `${precision} grad`);
        // Only one of the two given: the other is new.
        const half = await ae.klPenalty(a, b, { estimator: 'k2', precision, backend: c.backend, out: { grad: out.grad } });
        expect(half.grad).toBe(out.grad);
        expect(half.value).not.toBe(out.value);
      }
    });
  });

  test('bad buffers are refused before anything is written: type, length, an input, value = grad, unknown key', () => {
    const lp = Float32Array.of(-1, -2, -0.5);
    const ref = Float32Array.of(-1.5, -2, -0.25);
    const f32 = () => new Float32Array(3);
    const refused = (out: unknown, code: string, param: string) =>
      expect(() => ae.klPenaltySync(lp, ref, { out } as never)).toThrow(expect.objectContaining({ code, param }));
    refused({ value: new Float64Array(3) }, 'ERR_INVALID_ARG_TYPE', 'opts.out.value');
    refused({ grad: new Float32Array(4) }, 'ERR_AE_SHAPE_MISMATCH', 'opts.out.grad');
    refused({ value: lp }, 'ERR_INVALID_ARG_VALUE', 'opts.out.value');
    refused({ grad: ref.subarray(0, 3) }, 'ERR_INVALID_ARG_VALUE', 'opts.out.grad');
    const shared = f32();
    refused({ value: shared, grad: shared }, 'ERR_INVALID_ARG_VALUE', 'opts.out.grad');
    expect(() => ae.klPenaltySync(lp, ref, { out: { values: f32() } } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    // precision 'f64' writes Float64Arrays
    expect(() => ae.klPenaltySync(lp, ref, { precision: 'f64', out: { value: f32() } } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', param: 'opts.out.value' }));
  });
});
