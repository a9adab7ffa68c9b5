/**
 * The native addon's functions as TypeScript sees them (native/addon/*.cc). Positional arguments mirror
 * the C++ argument structs; `lib/ops` validates everything before calling, the addon re-checks what it
 * dereferences. Each kernel call returns the first non-finite row (−1 when none), or a Promise of it.
 */
export type RowResult<A extends boolean> = A extends true ? Promise<number> : number;
type F32 = Float32Array | null;
/** An output column: Float32Array, or Float64Array when `exact`. */
type Out = Float32Array | Float64Array | null;
type Values = Float32Array | Float64Array;

export interface NativeInfo {
  isa: string;
  isaAvailable: string[];
  isaCompiled: string[];
  threads: number;
  hardwareThreads: number;
  simdEnvError?: string;
  threadsEnvError?: string;
}

export interface NativeAddon {
  info(): NativeInfo;
  setIsa(name: string): boolean;
  setThreads(n: number): void;
  readBandwidth(bytes: number, repeats: number): {
    medianGbPerSec: number;
    bestGbPerSec: number;
    bytes: number;
    repeats: number;
    threads: number;
  };
  tokenStats<A extends boolean>(
    logits: ArrayBufferView, dtype: number, rows: number, vocab: number, tokens: Int32Array | null,
    temperature: number, rowMask: Uint8Array | null,
    entropy: Out, logprob: Out, logsumexp: Out, sumPiSquared: Out, maxProb: Out, exact: boolean, async: A,
  ): RowResult<A>;
  tokenStatsBackward<A extends boolean>(
    logits: ArrayBufferView, dtype: number, rows: number, vocab: number, tokens: Int32Array | null,
    temperature: number, gradLogprob: F32, gradEntropy: F32, logsumexp: F32, entropy: F32,
    rowMask: Uint8Array | null, out: ArrayBufferView, outDtype: number, exact: boolean, async: A,
  ): RowResult<A>;
  tokenStatsPartial<A extends boolean>(
    logits: ArrayBufferView, dtype: number, rows: number, vocab: number, tokens: Int32Array | null,
    vocabOffset: number, temperature: number, rowMask: Uint8Array | null,
    max: Float64Array, sumExp: Float64Array, sumExpU: Float64Array, sumExp2: Float64Array, targetLogit: Float64Array,
    exact: boolean, async: A,
  ): RowResult<A>;
  fullKl<A extends boolean>(
    logits: ArrayBufferView, refLogits: ArrayBufferView, dtype: number, rows: number, vocab: number,
    temperature: number, rowMask: Uint8Array | null, out: Float32Array | Float64Array, exact: boolean, async: A,
  ): RowResult<A>;
  // Policy losses and KL estimators (native/addon/policy_loss.cc, native/addon/kl_penalty.cc); value arrays f32,
  // or f64 when `exact`. policyLoss fills `summary` (lib/js/policy_loss.ts SUMMARY) and returns 0 when it reports
  // a bad mask entry or a non-finite input there, else −1.
  policyLoss<A extends boolean>(
    rows: number, cols: number, exact: boolean, logprob: Values, oldLogprob: Values, advantages: Values,
    advantagesPerRow: boolean, isWeights: Values | null, weightsPerRow: boolean, refLogprob: Values | null,
    entropy: Values | null, mask: Uint8Array, tokenMask: Uint8Array | null, selected: Uint8Array | null,
    tokenLoss: Values, gradLogprob: Values, gradEntropy: Values | null, params: Float64Array, summary: Float64Array,
    async: A,
  ): RowResult<A>;
  rolloutCorrection<A extends boolean>(
    rows: number, cols: number, exact: boolean, oldLogprob: Values, rolloutLogprob: Values, mask: Uint8Array,
    weights: Values, keep: Uint8Array, params: Float64Array, summary: Float64Array, async: A,
  ): RowResult<A>;
  klPenalty<A extends boolean>(
    n: number, exact: boolean, logprob: Values, refLogprob: Values, value: Values, grad: Values, estimator: number,
    clamp: number, straightThrough: boolean, async: A,
  ): RowResult<A>;
  // Shared-memory segments for the Python bridge (native/addon/shm.cc, lib/bridge/shm.ts); throw code ERR_AE_SHM.
  shmCreate(name: string, bytes: number): ArrayBuffer;
  shmMap(name: string): ArrayBuffer;
  /** Detaches and unmaps a buffer from shmCreate / shmMap; false when it is not a live mapping. */
  shmUnmap(buffer: ArrayBuffer): boolean;
  shmUnlink(name: string): boolean;
  // Rewards (native/addon/phase_entropy.cc, native/addon/process_rewards.cc); value arrays f32, or f64 when the flag says.
  phaseEntropy<A extends boolean>(
    entropy: Float32Array | Float64Array, entropyF64: boolean, mask: Uint8Array | null, rows: number, tokens: number,
    boundary: Int32Array | null, tokenIds: Int32Array | null, boundaryToken: number, boundaryOut: Int32Array,
    thinkMean: Float64Array, answerMean: Float64Array, thinkCount: Int32Array, answerCount: Int32Array, async: A,
  ): RowResult<A>;
  scatterSteps<A extends boolean>(
    stepRewards: Float32Array | Float64Array, rewardsF64: boolean, stepEnd: Int32Array, stepCounts: Int32Array,
    rows: number, steps: number, tokens: number, out: Float32Array, async: A,
  ): RowResult<A>;
  implicitProcessReward<A extends boolean>(
    logprob: Float32Array | Float64Array, logprobF64: boolean, ref: Float32Array | Float64Array, refF64: boolean,
    mask: Uint8Array | null, rows: number, tokens: number, beta: number, stepEnd: Int32Array | null,
    stepCounts: Int32Array | null, steps: number, tokenRewards: Float32Array, stepRewards: Float32Array | null,
    total: Float32Array, async: A,
  ): RowResult<A>;
  // Advantage family (native/addon/advantages.cc, token_advantages.cc). `config` packs the scalar options in
  // the order of native/advantages.h AdvantagesConfig / native/token_advantages.h TokenConfig.
  advantages<A extends boolean>(
    rewards: Float32Array | Float64Array, rows: number, components: number, weights: Float64Array,
    ids32: Int32Array | null, ids64: BigInt64Array | null, groupSize: number, lengths: Float64Array | null,
    baselines: Float64Array | null, config: Float64Array, batchIn: Float64Array | null, partialOnly: boolean,
    advantages: Out, groupMean: Out, groupStd: Out, stats: Float64Array, batchOut: Float64Array, async: A,
  ): RowResult<A>;
  tokenAdvantages<A extends boolean>(
    x: Float32Array | Float64Array, values: Float32Array | Float64Array | null, mask: Uint8Array | null, rows: number,
    cols: number, config: Float64Array, momentsIn: Float64Array | null, out: Float32Array | Float64Array,
    returns: Float32Array | Float64Array | null, momentsOut: Float64Array, async: A,
  ): RowResult<A>;
  momentsPartial<A extends boolean>(
    x: Float32Array | Float64Array, mask: Uint8Array | null, rows: number, cols: number, out: Float64Array, async: A,
  ): RowResult<A>;
  placeOutcome<A extends boolean>(
    rewards: Float32Array | Float64Array, mask: Uint8Array, rows: number, cols: number, out: Float32Array | Float64Array,
    async: A,
  ): RowResult<A>;
  optimalTokenBaseline<A extends boolean>(
    rewards: Float32Array | Float64Array, mask: Uint8Array, oldLogprobs: Float32Array | Float64Array,
    sumPiSquared: Float32Array | Float64Array, isWeights: Float32Array | Float64Array | null, ids32: Int32Array | null,
    ids64: BigInt64Array | null, groupSize: number, rows: number, cols: number, rawSingleton: boolean,
    advantages: Float32Array | Float64Array, returns: Float32Array | Float64Array, async: A,
  ): RowResult<A>;
}
