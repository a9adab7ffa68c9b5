/**
 * The native addon's functions as TypeScript sees them (native/addon/*.cc). Positional arguments mirror
 * the C++ argument structs; `lib/ops` validates everything before calling, the addon re-checks what it
 * dereferences. Each kernel call returns the first non-finite row (−1 when none), or a Promise of it.
 */
export type RowResult<A extends boolean> = A extends true ? Promise<number> : number;
type F32 = Float32Array | null;
/** An output column: Float32Array, or Float64Array when `exact`. */
type Out = Float32Array | Float64Array | null;

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
}
