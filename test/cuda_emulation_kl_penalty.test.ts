/**
 * The CUDA KL estimators (cuda/kl_penalty.cu) verified without a GPU, through the public op
 * `klPenalty(…, {backend: 'cuda'})` on the emulation build (test/cuda_setup.ts). Checked: every estimator and
 * straight-through form against the float64 reference (test/ref/policy_loss.ts) on fresh random inputs, bitwise
 * the same under forward, reverse and random thread schedules and within f32 rounding of the cpu backend;
 * clamp off and the OpenRLHF guards; lengths that are not a multiple of the 4-wide loads and span several of the
 * emulation's 1000-value chunks (and its 4-block grid-stride loop), N = 0 and 1, unaligned host views; the
 * smallest non-finite index across chunks and within a 4-wide load; precision 'f64' refused; async = sync.
 */
import * as ae from '../lib';
import { drawKlInputs, KL_ESTIMATORS, refKlPenalty } from './ref/policy_loss';
import { rng } from './helpers';
import { EmulatorControls, loadCudaBackend, SCHEDULES, TOOLCHAIN } from './cuda_setup';

if (!TOOLCHAIN) console.log('cuda klPenalty emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

type KlOptions = Parameters<typeof ae.klPenaltySync>[2];
/** The CPU tests' tolerance against the reference (test/kl_penalty.test.ts). */
const F32_TOL = { rtol: 1e-5, atol: 1e-6 };
/** cuda against cpu: expf (≤ 2 ulp) against the CPU's polynomial exp (≤ 1e-7 relative), f32 both. */
const PARITY_TOL = { rtol: 1e-6, atol: 1e-7 };

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

maybe('klPenalty on the cuda backend', () => {
  describe.each(KL_ESTIMATORS)('estimator %s', (estimator) => {
    test('matches the reference, the same bits under every schedule, and the cpu backend', () => {
      const { lp, ref } = drawKlInputs(rng(`cuda kl ${estimator}`), 3001, Float32Array);
      const want = refKlPenalty(lp, ref, estimator);
      let first: ae.KlPenaltyResult | undefined;
      for (const s of emu ? SCHEDULES : SCHEDULES.slice(0, 1)) {
        emu?.emuSetSchedule(s.kind, 7);
        const got = ae.klPenaltySync(lp, ref, { estimator, backend: 'cuda' } as KlOptions);
        expect(got.value).toBeInstanceOf(Float32Array);
        expect(got.value).toMatchReference(want.value, F32_TOL, `${estimator} value (${s.name})`);
        expect(got.grad).toMatchReference(want.grad, F32_TOL, `${estimator} grad (${s.name})`);
        if (first) {
          expect(got.value).toEqualBitwise(first.value, `${s.name} value`);
          expect(got.grad).toEqualBitwise(first.grad, `${s.name} grad`);
        }
        first = got;
      }
      const cpu = ae.klPenaltySync(lp, ref, { estimator, backend: 'cpu' } as KlOptions);
      expect(first!.value).toMatchReference(cpu.value, PARITY_TOL, `${estimator} value vs cpu`);
      expect(first!.grad).toMatchReference(cpu.grad, PARITY_TOL, `${estimator} grad vs cpu`);
    });
  });

  test.each([
    { label: 'clamp off', opts: { clamp: false } },
    { label: 'OpenRLHF guards (every value within ±10)', opts: { preset: 'openrlhf' } },
  ])('$label: the same as the cpu backend for every estimator', ({ label, opts }) => {
    const { lp, ref } = drawKlInputs(rng(`cuda kl ${label}`), 1203, Float32Array);
    for (const estimator of KL_ESTIMATORS) {
      const o = { ...opts, estimator } as KlOptions;
      const got = ae.klPenaltySync(lp, ref, { ...o, backend: 'cuda' } as KlOptions);
      const cpu = ae.klPenaltySync(lp, ref, { ...o, backend: 'cpu' } as KlOptions);
      expect(got.value).toMatchReference(cpu.value, PARITY_TOL, `${label} ${estimator} value`);
      expect(got.grad).toMatchReference(cpu.grad, PARITY_TOL, `${label} ${estimator} grad`);
    }
    const plain = refKlPenalty(lp, ref, 'k3', false);
    const got = ae.klPenaltySync(lp, ref, { clamp: false, backend: 'cuda' });
    expect(got.grad).toMatchReference(plain.grad, F32_TOL, 'k3 unclamped grad');
  });

  test('short and unaligned arrays: N = 0, 1, 3, 5 and views at an odd element offset', () => {
    const { lp, ref } = drawKlInputs(rng('cuda kl short'), 9, Float32Array);
    for (const n of [0, 1, 3, 5]) {
      const a = lp.subarray(1, 1 + n);
      const b = ref.subarray(3, 3 + n);
      const got = ae.klPenaltySync(a, b, { backend: 'cuda' });
      const want = refKlPenalty(a, b, 'k3');
      expect(got.value.length).toBe(n);
      expect(got.value).toMatchReference(want.value, F32_TOL, `N = ${n} value`);
      expect(got.grad).toMatchReference(want.grad, F32_TOL, `N = ${n} grad`);
    }
  });

  test('a non-finite input: ERR_AE_NON_FINITE at the smallest such index, across chunks and within a 4-wide load', () => {
    const { lp, ref } = drawKlInputs(rng('cuda kl nonfinite'), 3001, Float32Array);
    lp[2999] = NaN;
    ref[1502] = Infinity;
    lp[1503] = -Infinity;
    for (const s of emu ? SCHEDULES : SCHEDULES.slice(0, 1)) {
      emu?.emuSetSchedule(s.kind, 3);
      expect(() => ae.klPenaltySync(lp, ref, { backend: 'cuda' })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 1502 }));
    }
    lp[2999] = 0.5;
    ref[1502] = -1;
    lp[1503] = -1;
    ref[3000] = NaN;  // the last value: the scalar tail past the 4-wide loads
    expect(() => ae.klPenaltySync(lp, ref, { backend: 'cuda' })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 3000 }));
  });

  test("precision 'f64' is refused before anything runs; async equals sync; opts.out buffers", async () => {
    const { lp, ref } = drawKlInputs(rng('cuda kl async'), 2001, Float32Array);
    const lp64 = Float64Array.from(lp);
    const ref64 = Float64Array.from(ref);
    expect(() => ae.klPenaltySync(lp64, ref64, { precision: 'f64', backend: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }));
    const sync = ae.klPenaltySync(lp, ref, { estimator: 'k2', backend: 'cuda' });
    const viaPromise = await ae.klPenalty(lp, ref, { estimator: 'k2', backend: 'cuda' });
    expect(viaPromise.value).toEqualBitwise(sync.value, 'async value');
    expect(viaPromise.grad).toEqualBitwise(sync.grad, 'async grad');
    const out = { value: new Float32Array(lp.length), grad: new Float32Array(lp.length) };
    const into = ae.klPenaltySync(lp, ref, { estimator: 'k2', backend: 'cuda', out });
    expect(into.value).toBe(out.value);
    expect(into.grad).toEqualBitwise(sync.grad, 'opts.out grad');
  });
});
