/**
 * advantage-engine: the reward and advantage engine for reinforcement learning of language models.
 * Public API; see README.md and the SPEC sections named in each function's documentation.
 */
export { EngineError, ErrorCode } from './errors';
export type { ErrorCodeName, EngineErrorDetails } from './errors';
export { tensor, fromNumbers, elementAt, bf16ToNumber, f16ToNumber, numberToBf16, numberToF16, DTYPE_BYTES } from './tensor';
export type { Tensor, DType, TensorData } from './tensor';
export { backendInfo, setBackend, setThreads, setSimd } from './backend';
export type { BackendInfo, BackendName, ActiveBackend } from './backend';
export {
  tokenStats,
  tokenStatsSync,
  tokenStatsBackward,
  tokenStatsBackwardSync,
  fullKl,
  fullKlSync,
  STAT_NAMES,
} from './ops/token_stats';
export type {
  StatName,
  TokenStatsResult,
  TokenStatsOptions,
  TokenStatsF64Options,
  TokenStatsBackwardOptions,
  FullKlOptions,
  TokenIds,
} from './ops/token_stats';
export {
  tokenStatsPartial,
  tokenStatsPartialSync,
  mergeTokenStats,
  mergeTokenStatsPartial,
} from './ops/token_stats_shards';
export type { TokenStatsPartial, TokenStatsPartialOptions, MergeTokenStatsOptions } from './ops/token_stats_shards';
export { entropyMask } from './ops/entropy_mask';
export type { Precision, Preset } from './ops/run';
export { rewards } from './ops/rewards';
export type * from './ops/rewards';
export { createExitMonitor, EXIT_RULES } from './ops/exit_monitor';
export type {
  ExitMonitor, ExitMonitorOptions, ExitRules, ExitRule, ExitStep, ExitDecision, StepDecisions, SequenceStatus, SequenceSummary,
} from './ops/exit_monitor';
export {
  advantages, advantagesSync, advantagesPartial, advantagesPartialSync, mergeAdvantageStats, ADVANTAGE_ESTIMATORS,
} from './ops/advantages';
export type {
  AdvantageInputs, AdvantageOptions, AdvantageResult, AdvantageStats, AdvantageBatchStats, Estimator, Scale, MultiReward,
} from './ops/advantages';
export {
  gae, gaeSync, discountedReturns, discountedReturnsSync, reinforcePlusPlus, reinforcePlusPlusSync, placeOutcome,
  placeOutcomeSync, optimalTokenBaseline, optimalTokenBaselineSync,
} from './ops/token_advantages';
export type {
  TokenInputs, GaeInputs, GaeOptions, ReturnsOptions, ReinforcePlusPlusOptions, TokenAdvantageResult,
  OptimalTokenBaselineInputs,
} from './ops/token_advantages';
export {
  whiten, whitenSync, momentsPartial, momentsPartialSync, mergeMoments, finalizeMoments, groupMomentsPartial,
  mergeGroupMoments, finalizeGroupMoments, tokenCountsPartial, mergeTokenCounts,
} from './ops/moments';
export type { Moments, MomentsOptions, WhitenOptions, WhitenResult, GroupMoments, TokenCounts } from './ops/moments';
export { ADVANTAGE_PRESETS } from './ops/advantage_presets';
export type { AdvantagePreset } from './ops/advantage_presets';
export type { GroupIds, NumberArray } from './ops/advantage_args';
export { policyLoss, policyLossSync, POLICY_MODES, POLICY_PRESETS, LOSS_TYPES } from './ops/policy_loss';
export type {
  PolicyLossInputs, PolicyLossOptions, PolicyLossResult, PolicyLossMetrics, PolicyModeName, Aggregation, LossType,
} from './ops/policy_loss';
export { klPenalty, klPenaltySync, AdaptiveKlController, KL_ESTIMATOR_OPTIONS } from './ops/kl_penalty';
export type { KlPenaltyOptions, KlPenaltyResult, KlEstimatorOption, AdaptiveKlOptions } from './ops/kl_penalty';
export { rolloutCorrection, rolloutCorrectionSync } from './ops/rollout_correction';
export type {
  RolloutCorrectionInputs, RolloutCorrectionOptions, RolloutCorrectionResult, RolloutCorrectionMetrics,
} from './ops/rollout_correction';
export { cudaDevice, cudaStatus, cudaAddonPath, openCudaAddon, CudaDevice, DeviceTensor } from './cuda';
export type {
  CudaInfo, CudaStatus, CudaTokenStatsOptions, CudaBackwardOptions, CudaTokenStatsPartialOptions, CudaFullKlOptions,
} from './cuda';
