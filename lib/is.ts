/**
 * Validators, one per kind of parameter. Each throws an `EngineError` with a stable code and the
 * "Expected … for <param> but received …" message; `lib/ops` calls them before any kernel runs.
 */
import { argError, ErrorCode, EngineError } from './errors';

export type FloatArray = Float32Array | Float64Array;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);
}

/** Options bag: undefined → {}; anything but a plain object is a type error. Unknown keys are rejected
 * with the closest valid name as a hint, because a misspelt option silently ignored is a wrong result. */
export function options<K extends string>(value: unknown, param: string, known: readonly K[]): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an options object', value);
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) {
      const hint = closest(key, known);
      throw new EngineError(
        ErrorCode.INVALID_ARG_VALUE,
        `Unknown option ${param}.${key}${hint ? ` (did you mean '${hint}'?)` : ''}; valid options: ${known.join(', ')}`,
        { param: `${param}.${key}`, expected: known.join(', '), received: key },
      );
    }
  }
  return value as Partial<Record<K, unknown>>;
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3; // only suggest near misses
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

export function finiteNumber(value: unknown, param: string): number {
  if (typeof value !== 'number') throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a number', value);
  if (!Number.isFinite(value)) throw argError(ErrorCode.OUT_OF_RANGE, param, 'a finite number', value);
  return value;
}

export function positiveNumber(value: unknown, param: string): number {
  const x = finiteNumber(value, param);
  if (!(x > 0)) throw argError(ErrorCode.OUT_OF_RANGE, param, 'a finite number > 0', value);
  return x;
}

/** A number in [low, high] (inclusive). */
export function numberInRange(value: unknown, param: string, low: number, high: number): number {
  const x = finiteNumber(value, param);
  if (x < low || x > high) throw argError(ErrorCode.OUT_OF_RANGE, param, `a number in [${low}, ${high}]`, value);
  return x;
}

export function nonNegativeInteger(value: unknown, param: string): number {
  if (typeof value !== 'number') throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an integer', value);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw argError(ErrorCode.OUT_OF_RANGE, param, 'an integer ≥ 0', value);
  }
  return value;
}

export function oneOf<T extends string>(value: unknown, param: string, choices: readonly T[]): T {
  if (typeof value !== 'string') throw argError(ErrorCode.INVALID_ARG_TYPE, param, `one of ${choices.join(' | ')}`, value);
  if (!(choices as readonly string[]).includes(value)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, param, `one of ${choices.join(' | ')}`, value);
  }
  return value as T;
}

/** A Float32Array of exactly `length` elements (per-row inputs such as upstream gradients). */
export function float32Of(value: unknown, param: string, length: number): Float32Array {
  if (!(value instanceof Float32Array)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Float32Array', value);
  if (value.length !== length) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `a Float32Array of length ${length}`, value);
  }
  return value;
}

/** A Float64Array of exactly `length` elements. */
export function float64Of(value: unknown, param: string, length: number): Float64Array {
  if (!(value instanceof Float64Array)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Float64Array', value);
  if (value.length !== length) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `a Float64Array of length ${length}`, value);
  }
  return value;
}

/**
 * An output buffer: the caller's `value` (n values in the precision's array type, sharing no memory with any of
 * `inputs`: the kernels read inputs while writing outputs) or, when `value` is undefined, a new one.
 */
export function outputArray(value: unknown, param: string, n: number, precision: 'f32' | 'f64', inputs: readonly (FloatArray | null)[]): FloatArray {
  if (value === undefined) return precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
  const checked = precision === 'f64' ? float64Of(value, param, n) : float32Of(value, param, n);
  if (inputs.some((input) => input !== null && input.buffer === checked.buffer)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, param, 'a buffer that is not one of the inputs', 'an input array');
  }
  return checked;
}

/** Token ids: Int32Array, Uint32Array, BigInt64Array or an array of integers, `length` of them,
 * each in [0, vocab) for the rows where `rowMask` is set. Returns an Int32Array (copied only when the
 * input is not one already). */
export function tokenIds(
  value: unknown,
  param: string,
  length: number,
  vocab: number,
  rowMask?: Uint8Array,
  vocabOffset = 0,
  allowOutside = false,
): Int32Array {
  let ids: Int32Array;
  if (value instanceof Int32Array) ids = value;
  else if (value instanceof Uint32Array || value instanceof BigInt64Array || Array.isArray(value)) {
    ids = new Int32Array(length);
    if (value.length !== length) {
      throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} token ids (one per row)`, value);
    }
    for (let i = 0; i < length; i++) {
      const raw = value[i];
      const id = typeof raw === 'bigint' ? Number(raw) : raw;
      if (typeof id !== 'number' || !Number.isInteger(id)) {
        throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}[${i}]`, 'an integer token id', raw);
      }
      // Out-of-int32 ids are out of range for any vocabulary; clamp so the range check below names them.
      ids[i] = id > 2147483647 ? 2147483647 : id < -2147483648 ? -2147483648 : id;
    }
  } else {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an Int32Array, Uint32Array, BigInt64Array or number[] of token ids', value);
  }
  if (ids.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} token ids (one per row)`, value);
  if (!allowOutside) {
    for (let i = 0; i < length; i++) {
      if (rowMask && rowMask[i] === 0) continue;
      const y = ids[i] - vocabOffset;
      if (!(y >= 0 && y < vocab)) {
        throw new EngineError(
          ErrorCode.TOKEN_RANGE,
          `Expected ${param}[${i}] in [${vocabOffset}, ${vocabOffset + vocab}) but received ${ids[i]}`,
          { param: `${param}[${i}]`, expected: `[${vocabOffset}, ${vocabOffset + vocab})`, received: String(ids[i]) },
        );
      }
    }
  }
  return ids;
}

/** A 0/1 mask of `length` entries (Uint8Array, or any numeric typed array / array, converted). */
/** The index of the first byte that is neither 0 nor 1, or −1; four bytes at a time where aligned (masks of 10⁸). */
function firstNonBinaryByte(bytes: Uint8Array): number {
  let i = 0;
  const head = Math.min(bytes.length, (4 - (bytes.byteOffset & 3)) & 3);
  for (; i < head; i++) if (bytes[i] > 1) return i;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, (bytes.length - i) >>> 2);
  for (let w = 0; w < words.length; w++) {
    if ((words[w] & 0xfefefefe) !== 0) {
      for (let k = i + 4 * w; ; k++) if (bytes[k] > 1) return k;
    }
  }
  for (i += 4 * words.length; i < bytes.length; i++) if (bytes[i] > 1) return i;
  return -1;
}

export function mask01(value: unknown, param: string, length: number): Uint8Array {
  if (!(ArrayBuffer.isView(value) || Array.isArray(value)) || value instanceof DataView) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Uint8Array (or numeric array) of 0/1', value);
  }
  const source = value as ArrayLike<number | bigint>;
  if (source.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `a mask of length ${length}`, value);
  if (value instanceof Uint8Array && firstNonBinaryByte(value) < 0) return value;
  for (let i = 0; i < length; i++) {
    const v = Number(source[i]);
    if (v !== 0 && v !== 1) throw argError(ErrorCode.INVALID_ARG_VALUE, `${param}[${i}]`, '0 or 1', source[i]);
  }
  // A Uint8Array is used in place (never written); anything else is converted once.
  return value instanceof Uint8Array ? value : Uint8Array.from(source, Number);
}

/**
 * A float array of `length` values in the arithmetic precision of the call: a Float32Array for 'f32' and a
 * Float64Array for 'f64', used in place when it is one already, else converted once (Float64Array →
 * Float32Array rounds; a number[] is accepted too). Values are not scanned here: the kernels report a
 * non-finite value where it matters (a valid token) with its row.
 */
export function floatValues(value: unknown, param: string, length: number, precision: 'f32' | 'f64'): FloatArray {
  const ok = value instanceof Float32Array || value instanceof Float64Array || Array.isArray(value);
  if (!ok) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Float32Array, Float64Array or number[]', value);
  const source = value as ArrayLike<number>;
  if (source.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} values`, value);
  if (precision === 'f32') return value instanceof Float32Array ? value : Float32Array.from(source);
  return value instanceof Float64Array ? value : Float64Array.from(source);
}

/**
 * A 0/1 mask of `length` entries for a kernel that checks the values itself in its first pass: a Uint8Array
 * is used in place unscanned (a JS pass over a 10⁸-token mask would cost more than the kernel); any other
 * array is converted here, which checks every value.
 */
export function kernelMask(value: unknown, param: string, length: number): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `a mask of length ${length}`, value);
    return value;
  }
  return mask01(value, param, length);
}

/**
 * A Float32Array or Float64Array used as given, or a number[] copied into a Float64Array, of `length` elements
 * (any length when undefined). Values are not checked.
 */
export function floatArray(value: unknown, param: string, length?: number): FloatArray {
  let out: FloatArray;
  if (value instanceof Float32Array || value instanceof Float64Array) out = value;
  else if (Array.isArray(value)) {
    out = new Float64Array(value.length);
    for (let i = 0; i < value.length; i++) {
      if (typeof value[i] !== 'number') throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}[${i}]`, 'a number', value[i]);
      out[i] = value[i];
    }
  } else {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Float32Array, Float64Array or number[]', value);
  }
  if (length !== undefined && out.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} values`, value);
  return out;
}
