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
