/**
 * The policy-loss modes (SPEC §2) and the trainer presets (SPEC §7) as data: one row per mode with its paper,
 * one row per trainer with what it computes differently, each citing the code it reproduces; and TRL's loss
 * types as aggregations. lib/ops/policy_loss.ts reads them when it resolves a call.
 */
import type { Aggregation, PolicyModeName } from '../js/policy_loss';
import type { Preset } from './run';

export interface ModeInfo {
  summary: string;
  paper: string;
  /** Clip bounds of the mode when the caller gives none (GSPO's are per sequence, hence tiny). */
  clipDefaults?: { clipLow: number; clipHigh: number };
  /** The aggregation the mode imposes on its policy term (the extras keep the caller's). */
  forcedAggregation?: Aggregation;
}

/** The policy-loss modes of SPEC §2. */
export const POLICY_MODES: Readonly<Record<PolicyModeName, ModeInfo>> = Object.freeze({
  ppo: { summary: 'clipped surrogate: asymmetric clip (clip-higher), optional dual clip', paper: 'arXiv:1707.06347, 1912.09729, 2503.14476' },
  gppo: { summary: 'ppo forward; a clipped token keeps the gradient −A·(1±ε) (gradient-preserving clip)', paper: 'arXiv:2508.07629 (Klear)' },
  gspo: {
    summary: 'sequence ratio exp(mean δ), token form sg(log s) + lp − sg(lp), clipped per sequence',
    paper: 'arXiv:2507.18071',
    clipDefaults: { clipLow: 3e-4, clipHigh: 4e-4 },
    forcedAggregation: 'seq-mean-token-mean',
  },
  sapo: { summary: 'soft gate −A·(4/τ)·σ(τ(r − 1)), τ by the sign of A', paper: 'arXiv:2511.20347' },
  cispo: { summary: '−sg(clip(r))·A·lp: clipped importance weight, gradient through lp only', paper: 'arXiv:2506.13585 (MiniMax-M1)' },
  gmpo: { summary: 'geometric mean of sign-aware log-clipped token ratios per sequence', paper: 'arXiv:2507.20673' },
  reinforce: { summary: '−A·lp, no ratio (GPG)', paper: 'arXiv:2504.02546' },
  clipCov: { summary: 'ppo with the loss of random high-covariance unclipped tokens zeroed', paper: 'arXiv:2505.22617' },
  klCov: { summary: '−A·r plus coef·|δ| on the top-covariance tokens', paper: 'arXiv:2505.22617' },
});

/** How a trainer computes what differs from the engine's defaults (SPEC §7), one row per preset. */
export interface PolicyPreset {
  source: string;
  /** |δ| clamp before exp by mode (null: none); `ratioClamp` given by the caller overrides it. */
  ratioClamp: (mode: PolicyModeName) => number | null;
  /** gspo: bounds of the sequence log-ratio (it passes no gradient outside). */
  gspoSeqClamp: [number, number];
  /** ppo's dual clip when the caller gives none. */
  dualClip: number | null;
  /** Added to |y_b| in per-sequence divisors, and to the denominators of the metrics' masked means. */
  countEps: number;
  metricEps: number;
  forcedAggregation: Partial<Record<PolicyModeName, Aggregation>>;
  /** gmpo's mean runs over all B rows (empty ones count as 0). */
  gmpoAllRows: boolean;
  /** gmpo: ε inside log(w + ε) of the importance weights' geometric mean. */
  gmpoWeightEps: number;
  /** cispo caps r from above only, at clipHigh as an absolute bound. */
  cispoUpperOnly: boolean;
  klCovCoef: number;
  /** Which metric definitions fill clipFraction / dualClipFraction / approxKl (see metricsOf). */
  metrics: 'engine' | 'verl';
}

export const ENGINE: PolicyPreset = {
  source: 'SPEC §2',
  ratioClamp: () => 20,
  gspoSeqClamp: [-Infinity, Infinity],
  dualClip: null,
  countEps: 0,
  metricEps: 0,
  forcedAggregation: { gspo: 'seq-mean-token-mean' },
  gmpoAllRows: false,
  gmpoWeightEps: 0,
  cispoUpperOnly: false,
  klCovCoef: 1,
  metrics: 'engine',
};

export const POLICY_PRESETS: Readonly<Record<Preset, PolicyPreset>> = Object.freeze({
  // verl b178a3c verl/trainer/ppo/core_algos.py: compute_policy_loss_{vanilla,gspo,sapo,cispo,gpg,geo_mean,
  // clip_cov,kl_cov}, agg_loss; verl/utils/torch_functional.py masked_mean (+1e-8).
  verl: {
    source: 'verl b178a3c core_algos.py',
    ratioClamp: (mode) => (mode === 'gspo' || mode === 'gmpo' || mode === 'clipCov' || mode === 'klCov' ? null : 20),
    gspoSeqClamp: [-Infinity, 10],
    dualClip: 3,
    countEps: 1e-8,
    metricEps: 1e-8,
    forcedAggregation: { gspo: 'seq-mean-token-mean', sapo: 'seq-mean-token-mean' },
    gmpoAllRows: true,
    gmpoWeightEps: 1e-10,
    cispoUpperOnly: false,
    klCovCoef: 0.1,
    metrics: 'verl',
  },
  // TRL f2cd577 trl/trainer/grpo_trainer.py GRPOTrainer._compute_loss: no ratio clamp, CISPO capped from above
  // at epsilon_high, aggregation by loss_type (see LOSS_TYPES), counts clamped to 1.
  trl: {
    source: 'TRL f2cd577 grpo_trainer.py _compute_loss',
    ratioClamp: () => null,
    gspoSeqClamp: [-Infinity, Infinity],
    dualClip: null,
    countEps: 0,
    metricEps: 0,
    forcedAggregation: {},
    gmpoAllRows: false,
    gmpoWeightEps: 0,
    cispoUpperOnly: true,
    klCovCoef: 1,
    metrics: 'engine',
  },
  // OpenRLHF 3c3be62 openrlhf/models/loss.py PolicyLoss, aggregate_loss (+1e-8 per sequence).
  openrlhf: {
    source: 'OpenRLHF 3c3be62 models/loss.py PolicyLoss',
    ratioClamp: (mode) => (mode === 'gspo' ? null : 20),
    gspoSeqClamp: [-Infinity, Infinity],
    dualClip: null,
    countEps: 1e-8,
    metricEps: 0,
    forcedAggregation: { gspo: 'seq-mean-token-mean' },
    gmpoAllRows: false,
    gmpoWeightEps: 0,
    cispoUpperOnly: false,
    klCovCoef: 1,
    metrics: 'engine',
  },
});

/**
 * TRL's loss_type names as aggregations (GRPOTrainer._compute_loss): grpo = per-sequence token mean averaged
 * over all B rows; bnpo = token mean of the batch; dr_grpo = Σ/(B·maxCompletionLength); dapo = token mean over
 * the whole step's tokens (pass `globalTokens` = TRL's num_items_in_batch / num_processes when data-parallel).
 */
export const LOSS_TYPES = Object.freeze({
  grpo: { aggregation: 'seq-mean-token-mean', allRows: true },
  bnpo: { aggregation: 'token-mean', allRows: false },
  dr_grpo: { aggregation: 'seq-mean-token-sum-norm', allRows: false },
  dapo: { aggregation: 'token-mean', allRows: false },
} as const);
export type LossType = keyof typeof LOSS_TYPES;
