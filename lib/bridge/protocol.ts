/**
 * The bridge's wire format (DESIGN "The Python bridge"; the Python side is python/advantage_engine/_protocol.py):
 *
 *   frame   = u32 LE header length | header (UTF-8 JSON object) | payload (header.payload bytes)
 *   request = {id, op, args: [...], tensors: [desc...], payload, release?: [names], unmap?: [names]}
 *   reply   = {id, ok: true, result, tensors, payload} | {id, ok: false, error: {code, message, param?, …}}
 *   desc    = {dtype, shape, offset, nbytes}            bytes at `offset` in the payload (64-byte aligned)
 *           | {dtype, shape, offset, nbytes, shm}       bytes at `offset` in the segment /dev/shm/<shm>
 *           | {arg: i, …}                               (replies) the same array as request tensor i
 *
 * In `args` and `result` a tensor is `{"$tensor": i}` (the i-th desc) and a non-finite number is
 * `{"$num": "NaN" | "Infinity" | "-Infinity"}` (JSON has neither); a bigint result is `{"$bigint": "…"}`.
 * dtype names are numpy's (`float32`, `int64`, `bool`, …); bf16 travels as 2-byte words with
 * `"dtype": "bfloat16"`. This file has no I/O: the incremental frame reader and the frame encoder only.
 */

export const PROTOCOL_VERSION = 1;
/** Payload tensors start at multiples of this (cache lines; any element type is then aligned). */
export const ALIGN = 64;
/**
 * The largest header accepted: args are small JSON (tensors travel in the payload), so a longer header is a
 * corrupt length prefix or a misuse, and is refused before any memory is reserved for it.
 */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** Error codes of the bridge itself (the ops' own codes, lib/errors.ts, pass through unchanged). */
export const BridgeErrorCode = Object.freeze({
  /** A frame that cannot be parsed or a header that does not describe its payload. */
  PROTOCOL: 'ERR_AE_PROTOCOL',
  UNKNOWN_OP: 'ERR_AE_UNKNOWN_OP',
  /** A shared-memory segment could not be created or mapped. */
  SHM: 'ERR_AE_SHM',
  /** A JavaScript error without a code (a bug, not bad input): the message says what. */
  INTERNAL: 'ERR_AE_INTERNAL',
} as const);

export class ProtocolError extends Error {
  readonly code = BridgeErrorCode.PROTOCOL;
  /** False when the stream cannot be resynchronised (the connection must close after answering). */
  readonly recoverable: boolean;
  constructor(message: string, recoverable: boolean) {
    super(message);
    this.name = 'ProtocolError';
    this.recoverable = recoverable;
  }
}

// ---- dtypes ----

export type WireDtype =
  | 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32'
  | 'int64' | 'uint64' | 'bool';

type ArrayCtor =
  | Float32ArrayConstructor | Float64ArrayConstructor | Int8ArrayConstructor | Uint8ArrayConstructor
  | Int16ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor
  | BigInt64ArrayConstructor | BigUint64ArrayConstructor;

export type AnyTypedArray = InstanceType<ArrayCtor>;

/** Wire dtype → the TypedArray it becomes, and the engine's tensor dtype for the float kinds. */
export const WIRE_DTYPES: Readonly<Record<WireDtype, { ctor: ArrayCtor; tensor?: 'f32' | 'f64' | 'f16' | 'bf16' }>> =
  Object.freeze({
    float32: { ctor: Float32Array, tensor: 'f32' },
    float64: { ctor: Float64Array, tensor: 'f64' },
    float16: { ctor: Uint16Array, tensor: 'f16' },
    bfloat16: { ctor: Uint16Array, tensor: 'bf16' },
    int8: { ctor: Int8Array },
    uint8: { ctor: Uint8Array },
    int16: { ctor: Int16Array },
    uint16: { ctor: Uint16Array },
    int32: { ctor: Int32Array },
    uint32: { ctor: Uint32Array },
    int64: { ctor: BigInt64Array },
    uint64: { ctor: BigUint64Array },
    // numpy's bool is one byte holding 0 or 1: the engine's masks are exactly that (Uint8Array).
    bool: { ctor: Uint8Array },
  });

const TENSOR_TO_WIRE: Readonly<Record<string, WireDtype>> = { f32: 'float32', f64: 'float64', f16: 'float16', bf16: 'bfloat16' };

/** The wire dtype of a result array: a bf16 / f16 array the bridge made keeps its tag (see server.ts dual arrays). */
export function wireDtypeOf(array: AnyTypedArray): WireDtype | undefined {
  const tag = (array as { dtype?: unknown }).dtype;
  if (typeof tag === 'string' && TENSOR_TO_WIRE[tag] && (array as { data?: unknown }).data === array) return TENSOR_TO_WIRE[tag];
  if (array instanceof Float32Array) return 'float32';
  if (array instanceof Float64Array) return 'float64';
  if (array instanceof Uint8Array || array instanceof Uint8ClampedArray) return 'uint8';
  if (array instanceof Int8Array) return 'int8';
  if (array instanceof Int16Array) return 'int16';
  if (array instanceof Uint16Array) return 'uint16';
  if (array instanceof Int32Array) return 'int32';
  if (array instanceof Uint32Array) return 'uint32';
  if (array instanceof BigInt64Array) return 'int64';
  if (array instanceof BigUint64Array) return 'uint64';
  return undefined;
}

export interface TensorDesc {
  dtype: WireDtype;
  shape: number[];
  offset: number;
  nbytes: number;
  /** Segment name (/dev/shm/<shm>) when the bytes are there rather than in the payload. */
  shm?: string;
  /** Replies only: this result is request tensor `arg` itself (written in place). */
  arg?: number;
}

export const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

// ---- JSON values: tensors and non-finite numbers ----

const NON_FINITE: Readonly<Record<string, number>> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** Replaces `{"$tensor": i}` by `tensors[i]` and `{"$num": …}` by the number, everywhere in a parsed value. */
export function reviveArgs(value: unknown, tensors: readonly unknown[], depth = 0): unknown {
  if (depth > 64) throw new ProtocolError('args nest deeper than 64 levels', true);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => reviveArgs(v, tensors, depth + 1));
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0] === '$tensor') {
    const i = o.$tensor;
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= tensors.length) {
      throw new ProtocolError(`{"$tensor": ${JSON.stringify(i)}} names no tensor (the request has ${tensors.length})`, true);
    }
    return tensors[i];
  }
  if (keys.length === 1 && keys[0] === '$num') {
    const n = NON_FINITE[o.$num as string];
    if (n === undefined) throw new ProtocolError(`{"$num": ${JSON.stringify(o.$num)}}: expected NaN, Infinity or -Infinity`, true);
    return n;
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = reviveArgs(o[k], tensors, depth + 1);
  return out;
}

/**
 * Turns an op's result into JSON-safe data, handing each TypedArray to `tensor` (which returns its
 * `{"$tensor": i}` reference). Functions and undefined are dropped, as JSON.stringify does.
 */
export function encodeResult(value: unknown, tensor: (array: AnyTypedArray) => unknown, seen = new Set<object>()): unknown {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    return { $num: Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity' };
  }
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? undefined : value;
  if (ArrayBuffer.isView(value)) {
    if (value instanceof DataView) return undefined;
    return tensor(value as AnyTypedArray);
  }
  if (seen.has(value)) throw new Error('the result is circular');
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => encodeResult(v, tensor, seen) ?? null);
    if (value instanceof Map) value = Object.fromEntries(value);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as object)) {
      const e = encodeResult(v, tensor, seen);
      if (e !== undefined) out[k] = e;
    }
    return out;
  } finally {
    seen.delete(value as object);
  }
}

// ---- frames ----

export interface Frame {
  header: Record<string, unknown>;
  /** The payload (its own ArrayBuffer, so that every dtype's view is aligned). */
  payload: Uint8Array;
}

/** Events of the frame reader: a whole frame, or a problem to answer (`id` when the header named one). */
export type ReaderEvent =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'error'; error: ProtocolError; id: unknown };

/**
 * Incremental frame parser: push() bytes as they arrive, get frames out. A header that is not a JSON object
 * or has no valid `payload` length, and a length prefix over MAX_HEADER_BYTES, desynchronise the stream and
 * are fatal (`recoverable: false`); a payload too large to allocate is skipped and answered, the stream
 * stays in step.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private state: 'length' | 'header' | 'payload' | 'skip' | 'dead' = 'length';
  private need = 4;
  private header: Record<string, unknown> | null = null;
  private payload: Uint8Array | null = null;
  private filled = 0;

  /** True between frames (nothing partial buffered): an end of input here is a clean close. */
  get idle(): boolean {
    return this.state === 'length' && this.buffered === 0;
  }

  /** Describes what a stream that ends now was in the middle of, or null when it ended between frames. */
  truncation(): { message: string; id: unknown } | null {
    if (this.idle || this.state === 'dead') return null;
    const id = this.header?.id;
    if (this.state === 'length') return { message: `the input ended inside a frame's length prefix (${this.buffered} of 4 bytes)`, id };
    if (this.state === 'header') return { message: `the input ended inside a header (${this.buffered} of ${this.need} bytes)`, id };
    const got = this.state === 'payload' ? this.filled + this.buffered : this.filled;
    return { message: `truncated payload: the input ended after ${got} of ${this.payloadLength()} payload bytes`, id };
  }

  push(chunk: Buffer): ReaderEvent[] {
    const events: ReaderEvent[] = [];
    if (this.state === 'dead') return events;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.state === 'payload' || this.state === 'skip') {
        this.drainPayload();
        if (this.filled < this.payloadLength()) return events;
        if (this.state === 'payload') events.push({ kind: 'frame', frame: { header: this.header!, payload: this.payload! } });
        this.header = null;
        this.payload = null;
        this.state = 'length';
        this.need = 4;
        continue;
      }
      if (this.buffered < this.need) return events;
      const bytes = this.take(this.need);
      if (this.state === 'length') {
        const length = bytes.readUInt32LE(0);
        if (length > MAX_HEADER_BYTES || length < 2) {
          this.state = 'dead';
          const why = length < 2 ? 'too short to be a JSON object' : `over the limit of ${MAX_HEADER_BYTES} bytes`;
          events.push({ kind: 'error', error: new ProtocolError(`header length ${length} is ${why}`, false), id: null });
          return events;
        }
        this.state = 'header';
        this.need = length;
        continue;
      }
      // state === 'header'
      let header: unknown;
      try {
        header = JSON.parse(bytes.toString('utf8'));
      } catch (error) {
        this.state = 'dead';
        events.push({ kind: 'error', error: new ProtocolError(`the header is not JSON: ${(error as Error).message}`, false), id: null });
        return events;
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) {
        this.state = 'dead';
        events.push({ kind: 'error', error: new ProtocolError('the header is not a JSON object', false), id: null });
        return events;
      }
      const h = header as Record<string, unknown>;
      const length = h.payload === undefined ? 0 : h.payload;
      if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
        this.state = 'dead';
        events.push({ kind: 'error', error: new ProtocolError(`header.payload must be a byte count ≥ 0, got ${JSON.stringify(h.payload)}`, false), id: h.id });
        return events;
      }
      this.header = h;
      this.filled = 0;
      try {
        this.payload = new Uint8Array(new ArrayBuffer(length));
        this.state = 'payload';
      } catch {
        // Too large to hold: read past it so that the next frame is found, and answer this one.
        this.state = 'skip';
        events.push({ kind: 'error', error: new ProtocolError(`payload of ${length} bytes cannot be allocated`, true), id: h.id });
      }
    }
  }

  private payloadLength(): number {
    return (this.header?.payload as number | undefined) ?? 0;
  }

  /** Moves buffered bytes into the payload (or drops them when skipping), without concatenating chunks. */
  private drainPayload(): void {
    const total = this.payloadLength();
    while (this.filled < total && this.chunks.length > 0) {
      const chunk = this.chunks[0];
      const n = Math.min(chunk.length, total - this.filled);
      if (this.state === 'payload') this.payload!.set(n === chunk.length ? chunk : chunk.subarray(0, n), this.filled);
      this.filled += n;
      this.buffered -= n;
      if (n === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(n);
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}

/** The pieces of one frame, ready to write in order (payload arrays are not copied). */
export function encodeFrame(header: Record<string, unknown>, payload: readonly { offset: number; bytes: Uint8Array }[] = []): Buffer[] {
  let end = 0;
  for (const p of payload) end = Math.max(end, p.offset + p.bytes.byteLength);
  const json = Buffer.from(JSON.stringify({ ...header, payload: end }), 'utf8');
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32LE(json.length, 0);
  const pieces: Buffer[] = [prefix, json];
  let at = 0;
  for (const p of payload) {
    if (p.offset > at) pieces.push(Buffer.alloc(p.offset - at));
    pieces.push(Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength));
    at = p.offset + p.bytes.byteLength;
  }
  return pieces;
}
