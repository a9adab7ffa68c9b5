/**
 * `preset: 'verl'` against verl's own outputs (test/vectors/verl-b178a3c.json, sections `policy_loss` and `kl`;
 * volcengine/verl b178a3c, float64): with precision 'f64' and Float64Array inputs, the loss, grad_logprob and the
 * metrics within 1e-9 relative (SPEC §7). Names per test/vectors/README.md: config clip_ratio_low/high → clipLow /
 * clipHigh, clip_ratio_c → dualClip (verl's ppo always applies it), tau_pos/tau_neg → tauPos/tauNeg; metrics
 * pg_clipfrac → clipFraction, pg_clipfrac_lower → dualClipFraction, ppo_kl → approxKl.
 *
 * gmpo's metrics are the exception: verl's compute_policy_loss_geo_mean reports pg_clipfrac = mean_m(δ outside
 * [−clipLow, clipHigh] ∧ A > 0) and pg_clipfrac_lower = the same with A < 0 — clip fractions by the advantage's
 * sign, not a dual clip — so they are compared with clipFractionHigh / clipFractionLow.
 *
 * The numerics this pins down (verl's code decides): masked means add 1e-8 to the count; seq-mean-token-mean adds
 * 1e-8 to each sequence's count; gspo and sapo always aggregate seq-mean-token-mean; gspo clamps its token log-ratio
 * at 10 (above only); gmpo averages over all B sequences (a fully masked one counts as 0) and has no log-ratio clamp.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ae from '../lib';
import { KlEstimator, refKlPenalty } from './ref/policy_loss';
import { backendCases, BackendCase, withBackend } from './helpers';

interface PolicyVector {
  mode: string;
  verl_fn: string;
  config: Record<string, number>;
  aggregation: string;
  shape: [number, number];
  logprob: number[];
  old_logprob: number[];
  advantages: number[];
  mask: number[];
  loss: number;
  grad_logprob: number[];
  metrics: Record<string, number>;
}

interface KlVector {
  estimator: string;
  verl_name: string;
  logprob: number[];
  ref_logprob: number[];
  value: number[];
}

const VECTORS = JSON.parse(fs.readFileSync(path.join(__dirname, 'vectors', 'verl-b178a3c.json'), 'utf8')) as {
  policy_loss: PolicyVector[];
  kl: KlVector[];
};
const RTOL = 1e-9;
const BACKENDS: readonly BackendCase[] = backendCases().filter((c) => !c.simd);

type Options = Parameters<typeof ae.policyLossSync>[1];
type Inputs = Parameters<typeof ae.policyLossSync>[0];

/** Engine options for a vector: verl's config names mapped to ours (test/vectors/README.md). */
function optionsOf(v: PolicyVector): Record<string, unknown> {
  const c = v.config;
  const opts: Record<string, unknown> = { mode: v.mode, aggregation: v.aggregation, preset: 'verl', precision: 'f64' };
  const low = c.clip_ratio_low ?? c.clip_ratio;
  const high = c.clip_ratio_high ?? c.clip_ratio;
  if (v.mode !== 'sapo' && v.mode !== 'reinforce') {
    if (low !== undefined) opts.clipLow = low;
    if (high !== undefined) opts.clipHigh = high;
  }
  if (v.mode === 'ppo') opts.dualClip = c.clip_ratio_c ?? 3;
  if (v.mode === 'sapo') {
    opts.tauPos = c.tau_pos;
    opts.tauNeg = c.tau_neg;
  }
  return opts;
}

/** verl metric name → engine metric name, per mode. */
function metricName(mode: string, verlName: string): string {
  if (verlName === 'ppo_kl') return 'approxKl';
  if (mode === 'gmpo') return verlName === 'pg_clipfrac' ? 'clipFractionHigh' : 'clipFractionLow';
  return verlName === 'pg_clipfrac' ? 'clipFraction' : 'dualClipFraction';
}

function near(got: number, want: number, scale: number, label: string) {
  const allowed = RTOL * Math.max(Math.abs(want), 1e-5 * scale) + 1e-15;
  if (!(Math.abs(got - want) <= allowed)) {
    throw new Error(`${label}: got ${got}, verl ${want} (|diff| ${Math.abs(got - want)}, allowed ${allowed})`);
  }
}

const POLICY_CASES = VECTORS.policy_loss.map((v, k) => ({ name: `#${k} ${v.verl_fn} ${v.aggregation} ${JSON.stringify(v.config)}`, v }));

describe.each(POLICY_CASES)('policy_loss $name', ({ name, v }) => {
  test.each(BACKENDS)('$label: loss, grad_logprob and metrics within 1e-9 relative', async (c) => {
    const inputs = {
      logprob: Float64Array.from(v.logprob), oldLogprob: Float64Array.from(v.old_logprob),
      advantages: Float64Array.from(v.advantages), mask: Uint8Array.from(v.mask), shape: v.shape,
    } as unknown as Inputs;
    await withBackend(c, () => {
      const got = ae.policyLossSync(inputs, { ...optionsOf(v), backend: c.backend } as unknown as Options);
      expect(got.gradLogprob).toBeInstanceOf(Float64Array);
      const gradScale = Math.max(...v.grad_logprob.map(Math.abs));
      near(got.loss, v.loss, 0, `${name} ${c.label} loss`);
      for (let i = 0; i < v.grad_logprob.length; i++) near(got.gradLogprob[i], v.grad_logprob[i], gradScale, `${name} ${c.label} grad_logprob[${i}]`);
      const metrics = got.metrics as unknown as Record<string, number>;
      for (const [verlName, want] of Object.entries(v.metrics)) {
        const ours = metricName(v.mode, verlName);
        near(metrics[ours], want, 1, `${name} ${c.label} metrics.${ours} (verl ${verlName})`);
      }
    });
  });
});

const KL_NAMES: Record<string, KlEstimator> = { kl: 'k1', abs: 'abs', mse: 'k2', low_var_kl: 'k3' };

describe.each(VECTORS.kl.map((v) => ({ name: `${v.verl_name} → ${KL_NAMES[v.verl_name]}`, v })))('kl $name', ({ v }) => {
  test.each(BACKENDS)('$label: values within 1e-9 relative of verl, gradients those of the reference', async (c) => {
    const estimator = KL_NAMES[v.verl_name];
    expect(estimator).toBe(v.estimator);
    const lp = Float64Array.from(v.logprob);
    const ref = Float64Array.from(v.ref_logprob);
    await withBackend(c, () => {
      const got = ae.klPenaltySync(lp, ref, { estimator, preset: 'verl', precision: 'f64', backend: c.backend } as Parameters<typeof ae.klPenaltySync>[2]);
      expect(got.value).toMatchReference(v.value, { rtol: RTOL, atol: 1e-15 }, `${v.verl_name} value`);
      expect(got.grad).toMatchReference(refKlPenalty(lp, ref, estimator).grad, { rtol: RTOL, atol: 1e-15 }, `${v.verl_name} grad`);
    });
  });
});
