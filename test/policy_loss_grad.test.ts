/**
 * gradLogprob and gradEntropy of policyLoss against central finite differences of the aggregated loss (SPEC §2:
 * the gradient is what autograd returns for the expression as written). Everything in float64: Float64Array
 * inputs, precision 'f64', step h = 1e-6, inputs kept ≥ 1e-3 away from every clip bound, clamp and kink.
 *
 * Two differences per mode:
 *  - of the reference's autograd surrogate (test/ref/policy_loss.ts: sg(·) factors frozen at the current point),
 *    which is the only meaningful one for the straight-through forms (cispo, the gspo token form, gppo, the '+'
 *    KL estimators) and is taken term by term so that ratios clamped at e^20 elsewhere do not swamp it;
 *  - of the engine's own `loss`, for the modes whose gradient is the derivative of their forward value.
 */
import * as ae from '../lib';
import {
  Aggregation, AGGREGATIONS, clipDefaults, Batch, deltaKinksOf, KL_ESTIMATORS, KlEstimator, makeBatch, Mode, nudgeGspoRows,
  refFiniteDifference, RefPolicyOptions, refPolicyLoss,
} from './ref/policy_loss';
import { backendCases, BackendCase, rng, SEED, withBackend } from './helpers';

const H = 1e-6;
/** FD truncation (h²·f'''/6 ≈ 1e-12·r) and rounding (1e-16·|terms|/h ≈ 1e-10·|c·terms|) are far below this. */
const FD_RTOL = 1e-6;

const CASES: readonly { mode: Mode; opts: RefPolicyOptions; straightThrough: boolean }[] = [
  { mode: 'ppo', opts: { clipLow: 0.2, clipHigh: 0.28, dualClip: 3 }, straightThrough: false },
  { mode: 'ppo', opts: { clipLow: 0.1, clipHigh: 0.1, ratioClamp: 2 }, straightThrough: false },
  { mode: 'gppo', opts: { clipLow: 0.2, clipHigh: 0.28 }, straightThrough: true },
  { mode: 'gspo', opts: { clipLow: 0.2, clipHigh: 0.2 }, straightThrough: true },
  { mode: 'gspo', opts: { clipLow: 3e-4, clipHigh: 4e-4 }, straightThrough: true },
  { mode: 'sapo', opts: { tauPos: 1, tauNeg: 1.05 }, straightThrough: false },
  { mode: 'cispo', opts: { clipLow: 0.2, clipHigh: 0.28 }, straightThrough: true },
  { mode: 'gmpo', opts: { clipLow: 0.4, clipHigh: 0.4 }, straightThrough: false },
  { mode: 'reinforce', opts: {}, straightThrough: false },
  { mode: 'clipCov', opts: { clipCov: { ratio: 0.1, lb: 0.1, ub: 3 } }, straightThrough: false },
  { mode: 'klCov', opts: { klCov: { ratio: 0.1, coef: 0.8 } }, straightThrough: false },
];
const BACKENDS: readonly BackendCase[] = backendCases();

type Inputs = Parameters<typeof ae.policyLossSync>[0];
type Options = Parameters<typeof ae.policyLossSync>[1];

function inputsOf(batch: Batch, logprob = batch.logprob, entropy = batch.entropy): Inputs {
  return {
    logprob, oldLogprob: batch.oldLogprob, advantages: batch.advantages, mask: batch.mask, shape: [batch.B, batch.T],
    refLogprob: batch.refLogprob, entropy,
  } as unknown as Inputs;
}

function engineOpts(opts: RefPolicyOptions, extra: Record<string, unknown>): Options {
  const { clipCovSelection, frozenLogprob, ...rest } = opts;
  void clipCovSelection;
  void frozenLogprob;
  return { ...rest, precision: 'f64', seed: 21, ...extra } as unknown as Options;
}

function expectClose(got: number, want: number, scale: number, label: string) {
  const allowed = FD_RTOL * (Math.abs(want) + 1e-2 * scale) + 1e-13;
  if (!(Math.abs(got - want) <= allowed)) {
    throw new Error(`${label}: gradient ${got}, finite difference ${want} (|diff| ${Math.abs(got - want)}, allowed ${allowed}, seed ${SEED})`);
  }
}

const GRID = CASES.flatMap((c, k) =>
  [0, 1].map((j) => {
    const aggregation: Aggregation = AGGREGATIONS[(2 * k + j) % AGGREGATIONS.length];
    const klEstimator: KlEstimator = KL_ESTIMATORS[(2 * k + j) % KL_ESTIMATORS.length];
    return {
      ...c,
      name: `${c.mode} ${JSON.stringify(c.opts)} ${aggregation} kl ${klEstimator}`,
      all: { ...c.opts, mode: c.mode, aggregation, klCoef: 0.25, klEstimator, entropyCoef: 0.03 } as RefPolicyOptions,
      advPerToken: j === 1,
    };
  }),
);

describe.each(GRID)('$name', ({ name, mode, all, straightThrough, advPerToken }) => {
  function batchFor(extremes: boolean): Batch {
    const lo = all.clipLow ?? clipDefaults(mode).clipLow;
    const hi = all.clipHigh ?? clipDefaults(mode).clipHigh;
    const ratioClamp = all.ratioClamp === undefined ? 20 : all.ratioClamp;
    const batch = makeBatch(rng(`fd ${name} ${extremes}`), {
      B: 5, T: 7, dtype: 'f64', advPerToken, extremes, withRef: true, withEntropy: true, margin: 1e-3,
      deltaKinks: deltaKinksOf(lo, hi, all.dualClip ?? null, ratioClamp), zeroAdvantages: mode === 'clipCov' ? 0 : 0.08,
    });
    if (mode === 'gspo') nudgeGspoRows(batch, lo, hi, 1e-4);
    return batch;
  }

  /** clipCov's choice (same seed) from a run without the extra terms: valid tokens with loss exactly 0. */
  function selection(batch: Batch, c: BackendCase): number[] | undefined {
    if (mode !== 'clipCov') return undefined;
    const bare = ae.policyLossSync(inputsOf(batch), engineOpts({ ...all, klCoef: 0, entropyCoef: 0 }, { backend: c.backend }));
    const out: number[] = [];
    for (let i = 0; i < batch.mask.length; i++) if (batch.mask[i] !== 0 && bare.tokenLoss[i] === 0) out.push(i);
    return out;
  }

  test.each(BACKENDS)('$label: gradLogprob = FD of the autograd surrogate (ratios beyond the ±20 clamp included)', async (c) => {
    const batch = batchFor(true);
    await withBackend(c, () => {
      const got = ae.policyLossSync(inputsOf(batch), engineOpts(all, { backend: c.backend }));
      const opts = { ...all, clipCovSelection: selection(batch, c) };
      const inputs = { ...batch, shape: [batch.B, batch.T] };
      const ref = refPolicyLoss(inputs, opts);
      const scale = Math.max(...Array.from(ref.gradLogprob, Math.abs));
      for (let i = 0; i < batch.mask.length; i++) {
        const fd = refFiniteDifference(inputs, opts, i, H);
        expectClose(ref.gradLogprob[i], fd, scale, `${name} reference [${i}]`);
        expectClose(got.gradLogprob[i], fd, scale, `${name} ${c.label} [${i}]`);
      }
    });
  });

  // (the straight-through modes have no forward whose derivative is their gradient: only the surrogate above)
  if (!straightThrough) test.each(BACKENDS)('$label: gradLogprob = FD of the engine\'s own loss', async (c) => {
    const batch = batchFor(false);
    await withBackend(c, () => {
      // the '+' KL forms are straight-through too: here their plain estimator
      const opts = engineOpts({ ...all, klEstimator: all.klEstimator!.replace('+', '') as KlEstimator }, { backend: c.backend });
      const got = ae.policyLossSync(inputsOf(batch), opts);
      const scale = Math.max(...Array.from(got.gradLogprob, Math.abs));
      for (let i = 0; i < batch.mask.length; i++) {
        const plus = Float64Array.from(batch.logprob);
        const minus = Float64Array.from(batch.logprob);
        plus[i] += H;
        minus[i] -= H;
        const fd = (ae.policyLossSync(inputsOf(batch, plus), opts).loss - ae.policyLossSync(inputsOf(batch, minus), opts).loss) / (plus[i] - minus[i]);
        expectClose(got.gradLogprob[i], fd, scale, `${name} ${c.label} [${i}]`);
      }
    });
  });

  test('gradEntropy = FD of the engine\'s loss in the entropy', () => {
    const batch = batchFor(false);
    const opts = engineOpts(all, {});
    const got = ae.policyLossSync(inputsOf(batch), opts);
    const scale = Math.max(...Array.from(got.gradEntropy!, Math.abs));
    expect(scale).toBeGreaterThan(0);
    for (let i = 0; i < batch.mask.length; i++) {
      const plus = Float64Array.from(batch.entropy!);
      const minus = Float64Array.from(batch.entropy!);
      plus[i] += 1e-3;
      minus[i] -= 1e-3;
      const fd = (ae.policyLossSync(inputsOf(batch, batch.logprob, plus), opts).loss
        - ae.policyLossSync(inputsOf(batch, batch.logprob, minus), opts).loss) / (plus[i] - minus[i]);
      expectClose(got.gradEntropy![i], fd, scale, `${name} gradEntropy [${i}]`);
    }
  });
});
