/**
 * What the policy-loss suites (the cpu/js one, test/policy_loss.test.ts, and the CUDA emulation one) share: a
 * random batch kept away from a mode's kinks, the engine's inputs and options from a batch and reference
 * options, and the per-token tolerance built from the reference's scales.
 */
import * as ae from '../lib';
import {
  Batch, clipDefaults, deltaKinksOf, makeBatch, medianOver, Mode, nudgeGspoRows, RefPolicyOptions,
} from './ref/policy_loss';
import { rng } from './helpers';

export type Inputs = Parameters<typeof ae.policyLossSync>[0];
export type Options = Parameters<typeof ae.policyLossSync>[1];
export type Result = ReturnType<typeof ae.policyLossSync>;

export function inputsOf(batch: Batch): Inputs {
  const inputs: Record<string, unknown> = {
    logprob: batch.logprob, oldLogprob: batch.oldLogprob, advantages: batch.advantages, mask: batch.mask,
    shape: [batch.B, batch.T],
  };
  if (batch.refLogprob) inputs.refLogprob = batch.refLogprob;
  if (batch.entropy) inputs.entropy = batch.entropy;
  if (batch.rolloutLogprob) inputs.rolloutLogprob = batch.rolloutLogprob;
  return inputs as unknown as Inputs;
}

/** Engine options from reference options (drops the reference-only fields). */
export function engineOpts(opts: RefPolicyOptions, extra: Record<string, unknown> = {}): Options {
  const { clipCovSelection, frozenLogprob, ...rest } = opts;
  void clipCovSelection;
  void frozenLogprob;
  return { ...rest, ...extra } as unknown as Options;
}

/** rtol of each token's scale, with a floor of 1e-2·rtol × the median scale for negligible tokens. */
export function tolerance(scale: Float64Array, mask: ArrayLike<number>, rtol: number) {
  const floor = 1e-2 * rtol * medianOver(scale, mask);
  return (_ref: number, i: number) => rtol * scale[i] + floor;
}

/** A random batch for a mode's options, kept away from its kinks (gspo: the sequence ratio's). */
export function batchFor(label: string, mode: Mode, opts: RefPolicyOptions, spec: Partial<Parameters<typeof makeBatch>[1]> & { B: number; T: number }): Batch {
  const lo = opts.clipLow ?? clipDefaults(mode).clipLow;
  const hi = opts.clipHigh ?? clipDefaults(mode).clipHigh;
  const batch = makeBatch(rng(label), {
    deltaKinks: deltaKinksOf(lo, hi, opts.dualClip ?? null, opts.ratioClamp === undefined ? 20 : opts.ratioClamp),
    zeroAdvantages: mode === 'clipCov' ? 0 : 0.08,
    ...spec,
  });
  if (mode === 'gspo') nudgeGspoRows(batch, lo, hi, 1e-4);
  return batch;
}
