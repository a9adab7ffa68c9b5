/**
 * Trainer presets of the advantage family (SPEC §7): what verl, TRL and OpenRLHF do differently from the
 * engine's defaults, as data rows. Each row cites the function it reproduces (read at the pinned commits):
 *
 * - verl b178a3c, verl/trainer/ppo/core_algos.py: compute_grpo_outcome_advantage (eps 1e-6 added to the
 *   unbiased torch.std; a group of one keeps mean 0, std 1, so A = score/(1 + eps)),
 *   compute_rloo_outcome_advantage / compute_opo_outcome_advantage / compute_gpg_outcome_advantage /
 *   compute_reinforce_plus_plus_baseline_outcome_advantage (a group of one keeps its raw score),
 *   compute_grpo_passk_outcome_advantage (raises below 2 samples), compute_gae_advantage_return (observation
 *   tokens carry the scan), compute_reinforce_plus_plus_outcome_advantage (the return resets to 0 after
 *   every masked position), compute_optimal_token_baseline_advantage (a group of one has no baseline);
 *   verl/utils/torch_functional.py masked_mean (Σ/(Σm + 1e-8)), masked_var (unbiased), masked_whiten
 *   (rsqrt(var + 1e-8)).
 * - TRL f2cd577, trl/trainer/grpo_trainer.py _generate_and_score_completions: eps 1e-4 added to nanstd,
 *   NaN rewards skipped (nansum / nanmean), unscorable rows → A = 0 (nan_to_num), groups need
 *   num_generations ≥ 2 (its config check), normalize_then_sum with eps 1e-4 at both z-scores.
 * - OpenRLHF 3c3be62, openrlhf/trainer/ppo_utils/experience_maker.py compute_advantages_and_returns: group_norm
 *   eps 1e-9 on torch.std, rloo/reinforce_baseline/dr_grpo need n_samples_per_prompt > 1 (cli check), the shaped
 *   reward clamped to reward.clip_range (default ±10, openrlhf/models/utils.py compute_reward), whitening with
 *   the biased variance and rsqrt(clamp(var, 1e-8)); get_advantages_and_returns / get_cumulative_returns zero the
 *   masked rewards and values and keep discounting through them.
 *
 * Where a trainer's code would give NaN (nothing valid to average) or has no convention (NaN rewards under
 * verl / OpenRLHF, estimators it does not implement), the preset keeps the engine's behaviour.
 */
import type { WhitenRule } from '../js/moments';
import { GAP } from '../js/token_advantages';
import type { Preset } from './run';

export type SingletonRule = 'zero' | 'raw' | 'reject';

export interface AdvantagePreset {
  /** eps of (std + eps) in the group-normalised estimators. */
  eps: number;
  /** What a group of one row gets, per estimator (absent: `singletonDefault`). */
  singleton: Readonly<Record<string, SingletonRule>>;
  singletonDefault: SingletonRule;
  /** true: a group whose rewards are all equal gets exactly 0 (the trainers compute (r − mean)/(std + eps) as is). */
  exactZeroVariance: boolean;
  whiten: WhitenRule;
  /** |shaped reward| ≤ clip (0: none). */
  clip: number;
  /** Masked positions in the discounted-return scan and in the GAE scan (GAP in lib/js/token_advantages.ts). */
  returnsGap: number;
  gaeGap: number;
}

const ENGINE_WHITEN: WhitenRule = Object.freeze({ meanEps: 0, unbiased: true, epsMode: 'add', eps: 1e-8 });

export const ENGINE_PRESET: AdvantagePreset = Object.freeze({
  eps: 1e-6,
  singleton: Object.freeze({}),
  singletonDefault: 'zero',
  exactZeroVariance: true,
  whiten: ENGINE_WHITEN,
  clip: 0,
  returnsGap: GAP.carry,
  gaeGap: GAP.carry,
});

export const ADVANTAGE_PRESETS: Readonly<Record<Preset, AdvantagePreset>> = Object.freeze({
  verl: Object.freeze({
    eps: 1e-6,
    singleton: Object.freeze({
      grpo: 'raw', rloo: 'raw', reinforceBaseline: 'raw', opo: 'raw', gpg: 'raw', passk: 'reject', optimalTokenBaseline: 'raw',
    } as const),
    singletonDefault: 'zero',
    exactZeroVariance: false,
    whiten: Object.freeze({ meanEps: 1e-8, unbiased: true, epsMode: 'add', eps: 1e-8 } as const),
    clip: 0,
    returnsGap: GAP.reset,
    gaeGap: GAP.carry,
  }),
  trl: Object.freeze({
    eps: 1e-4,
    singleton: Object.freeze({}),
    singletonDefault: 'reject',
    exactZeroVariance: false,
    whiten: ENGINE_WHITEN,
    clip: 0,
    returnsGap: GAP.carry,
    gaeGap: GAP.carry,
  }),
  openrlhf: Object.freeze({
    eps: 1e-9,
    singleton: Object.freeze({}),
    singletonDefault: 'reject',
    exactZeroVariance: false,
    whiten: Object.freeze({ meanEps: 0, unbiased: false, epsMode: 'clamp', eps: 1e-8 } as const),
    clip: 10,
    returnsGap: GAP.zero,
    gaeGap: GAP.zero,
  }),
});

export function advantagePreset(preset: Preset | null): AdvantagePreset {
  return preset === null ? ENGINE_PRESET : ADVANTAGE_PRESETS[preset];
}

export function singletonRule(p: AdvantagePreset, estimator: string): SingletonRule {
  return p.singleton[estimator] ?? p.singletonDefault;
}
