/**
 * Tensors: `{ data, shape, dtype }`, row-major, read in place (byteOffset honoured, never copied).
 * bf16 and f16 travel in a Uint16Array. `DTYPE_CODE` is the one table of dtype tags shared with the
 * native addon (native/common.h `ae::DType` has the same numbers).
 */
import { argError, ErrorCode, EngineError } from './errors';

export type DType = 'f32' | 'f64' | 'bf16' | 'f16';
export type TensorData = Float32Array | Float64Array | Uint16Array;

export interface Tensor {
  readonly data: TensorData;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export const DTYPE_CODE: Readonly<Record<DType, number>> = Object.freeze({ f32: 0, f64: 1, bf16: 2, f16: 3 });
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({ f32: 4, f64: 8, bf16: 2, f16: 2 });
const DTYPES = Object.keys(DTYPE_CODE) as DType[];

function arrayKindFor(dtype: DType): string {
  return dtype === 'f32' ? 'Float32Array' : dtype === 'f64' ? 'Float64Array' : 'Uint16Array';
}

function inferDtype(data: unknown): DType | undefined {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Float64Array) return 'f64';
  return undefined;
}

/**
 * Builds a validated tensor view over `data` (no copy).
 * @param data  Float32Array (f32), Float64Array (f64) or Uint16Array (bf16 / f16 bit patterns)
 * @param shape dimensions, each a safe integer ≥ 0, whose product is `data.length`
 * @param dtype inferred for Float32Array / Float64Array; required for Uint16Array
 */
export function tensor(data: TensorData, shape: readonly number[], dtype?: DType): Tensor {
  if (dtype !== undefined && !DTYPES.includes(dtype)) {
    throw argError(ErrorCode.DTYPE, 'dtype', `one of ${DTYPES.join(' | ')}`, dtype);
  }
  const resolved = dtype ?? inferDtype(data);
  if (resolved === undefined) {
    if (data instanceof Uint16Array) throw argError(ErrorCode.DTYPE, 'dtype', "'bf16' or 'f16' for a Uint16Array", dtype);
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'data', 'a Float32Array, Float64Array or Uint16Array', data);
  }
  const t = { data, shape: Object.freeze([...shape]), dtype: resolved } as Tensor;
  checkTensor(t, 'tensor');
  return Object.freeze(t);
}

/** Validates any `{data, shape, dtype}` record (user-built ones included) and returns its element count. */
export function checkTensor(value: unknown, param: string): number {
  if (typeof value !== 'object' || value === null || !('data' in value) || !('shape' in value)) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a tensor {data, shape, dtype}', value);
  }
  const { data, shape, dtype } = value as { data: unknown; shape: unknown; dtype: unknown };
  if (typeof dtype !== 'string' || !DTYPES.includes(dtype as DType)) {
    throw argError(ErrorCode.DTYPE, `${param}.dtype`, `one of ${DTYPES.join(' | ')}`, dtype);
  }
  const kind = arrayKindFor(dtype as DType);
  if (!ArrayBuffer.isView(data) || data.constructor.name !== kind) {
    throw argError(ErrorCode.DTYPE, `${param}.data`, `a ${kind} for dtype '${dtype}'`, data);
  }
  if (!Array.isArray(shape) || shape.length === 0) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}.shape`, 'a non-empty array of dimensions', shape);
  }
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw argError(ErrorCode.OUT_OF_RANGE, `${param}.shape[${i}]`, 'an integer ≥ 0', d);
    }
    count *= d;
  }
  if (!Number.isSafeInteger(count)) throw argError(ErrorCode.OUT_OF_RANGE, `${param}.shape`, 'a product below 2^53', shape);
  const length = (data as TensorData).length;
  if (count !== length) {
    throw new EngineError(
      ErrorCode.SHAPE_MISMATCH,
      `Expected ${param}.data of ${count} elements for shape [${shape.join(', ')}] but received ${length}`,
      { param: `${param}.data`, expected: `${count} elements`, received: `${length} elements` },
    );
  }
  return count;
}

/** A logits tensor seen as rows: `[N, V]` or `[B, T, V]` → N = product of the leading dims. */
export interface Rows {
  readonly tensor: Tensor;
  readonly rows: number;
  readonly vocab: number;
}

export function logitRows(value: unknown, param: string): Rows {
  checkTensor(value, param);
  const t = value as Tensor;
  if (t.shape.length < 2 || t.shape.length > 3) {
    throw argError(ErrorCode.SHAPE_MISMATCH, `${param}.shape`, '[N, V] or [B, T, V]', `[${t.shape.join(', ')}]`);
  }
  const vocab = t.shape[t.shape.length - 1];
  if (vocab === 0) throw argError(ErrorCode.SHAPE_MISMATCH, `${param}.shape`, 'a vocabulary of at least 1 entry', `[${t.shape.join(', ')}]`);
  return { tensor: t, rows: t.data.length / vocab, vocab };
}

// ---- bf16 / f16 bit patterns ↔ numbers (exact widening; narrowing rounds to nearest even) ----

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

export function bf16ToNumber(bits: number): number {
  scratchU32[0] = bits << 16;
  return scratchF32[0];
}

export function numberToBf16(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40; // NaN stays a quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export function numberToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // rounds to infinity
  if (a < 2 ** -14) {
    // subnormal: units of 2^-24, round half to even
    const units = a / 2 ** -24;
    let q = Math.floor(units);
    const r = units - q;
    if (r > 0.5 || (r === 0.5 && (q & 1) === 1)) q++;
    return sign | q;
  }
  let exponent = Math.floor(Math.log2(a));
  if (2 ** exponent > a) exponent--; // guard log2 rounding
  if (2 ** (exponent + 1) <= a) exponent++;
  a = a / 2 ** exponent - 1;
  let mantissa = Math.floor(a * 1024);
  const r = a * 1024 - mantissa;
  if (r > 0.5 || (r === 0.5 && (mantissa & 1) === 1)) mantissa++;
  if (mantissa === 1024) [mantissa, exponent] = [0, exponent + 1];
  if (exponent > 15) return sign | 0x7c00;
  return sign | ((exponent + 15) << 10) | mantissa;
}

let bf16Table: Float32Array | undefined;
let f16Table: Float32Array | undefined;

/** 65536-entry widening tables, built on first use (not at import): the JS kernels' fastest widening. */
export function wideningTable(dtype: 'bf16' | 'f16'): Float32Array {
  if (dtype === 'bf16') {
    if (!bf16Table) {
      bf16Table = new Float32Array(65536);
      new Uint32Array(bf16Table.buffer).forEach((_, i, a) => (a[i] = i << 16));
    }
    return bf16Table;
  }
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToNumber(i);
  }
  return f16Table;
}

/** Element `i` of a tensor's data as a number (exact). For tests, tools and the JS backend's cold paths. */
export function elementAt(t: Tensor, i: number): number {
  const v = t.data[i];
  return t.dtype === 'bf16' ? bf16ToNumber(v) : t.dtype === 'f16' ? f16ToNumber(v) : v;
}

/** Encodes numbers into a new tensor of `dtype` (rounding to nearest even for bf16 / f16). */
export function fromNumbers(values: ArrayLike<number>, shape: readonly number[], dtype: DType): Tensor {
  const n = values.length;
  let data: TensorData;
  if (dtype === 'f32') data = Float32Array.from(values);
  else if (dtype === 'f64') data = Float64Array.from(values);
  else {
    data = new Uint16Array(n);
    const encode = dtype === 'bf16' ? numberToBf16 : numberToF16;
    for (let i = 0; i < n; i++) data[i] = encode(values[i]);
  }
  return tensor(data, shape, dtype);
}
