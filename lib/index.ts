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
  tokenStatsPartial,
  tokenStatsPartialSync,
  mergeTokenStats,
  mergeTokenStatsPartial,
  fullKl,
  fullKlSync,
  entropyMask,
  STAT_NAMES,
} from './ops/token_stats';
export type {
  StatName,
  TokenStatsResult,
  TokenStatsOptions,
  TokenStatsBackwardOptions,
  TokenStatsPartial,
  TokenStatsPartialOptions,
  FullKlOptions,
  TokenIds,
  Precision,
  TokenStatsF64Options,
  MergeTokenStatsOptions,
} from './ops/token_stats';
