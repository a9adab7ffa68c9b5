/**
 * Validators for the advantage family's inputs (SPEC §4): reward and value arrays, group ids, group sizes,
 * lengths, [B, T] shapes and masks. Each throws an EngineError with a stable code naming the parameter,
 * before any kernel runs.
 */
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';

export type Values = Float32Array | Float64Array;
/** Rewards, values, lengths: a Float32Array or Float64Array (read in place) or a number[] (copied to f64). */
export type NumberArray = Float32Array | Float64Array | readonly number[];
/** Group keys: any integers (|id| < 2^53 for number arrays), not necessarily contiguous. */
export type GroupIds = Int32Array | Uint32Array | BigInt64Array | Float64Array | readonly number[];

export function nonFinite(param: string, index: number, row?: number): EngineError {
  return new EngineError(ErrorCode.NON_FINITE, `Expected finite values in ${param} but [${index}] is not finite`, {
    param: `${param}[${index}]`, ...(row === undefined ? {} : { row }),
  });
}

/** A float array of `length` elements (any length when undefined). */
export function valuesOf(value: unknown, param: string, length?: number): Values {
  return is.floatArray(value, param, length);
}

/** valuesOf, every entry finite (NaN / ±inf → ERR_AE_NON_FINITE naming the index), as f64. */
export function finiteValuesOf(value: unknown, param: string, length: number, min?: { bound: number; strict: boolean }): Float64Array {
  const v = valuesOf(value, param, length);
  const out = v instanceof Float64Array && !ArrayBuffer.isView(value) ? v : Float64Array.from(v);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw nonFinite(param, i);
    if (min && (min.strict ? !(out[i] > min.bound) : !(out[i] >= min.bound))) {
      throw argError(ErrorCode.OUT_OF_RANGE, `${param}[${i}]`, `a number ${min.strict ? '>' : '≥'} ${min.bound}`, out[i]);
    }
  }
  return out;
}

/** Group ids as Int32Array (when every id fits) or BigInt64Array; read in place when already one of them. */
export function groupIdsOf(value: unknown, param: string, rows: number): Int32Array | BigInt64Array {
  if (value instanceof Int32Array || value instanceof BigInt64Array) {
    if (value.length !== rows) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${rows} group ids (one per row)`, value);
    return value;
  }
  if (!(value instanceof Uint32Array || value instanceof Float64Array || Array.isArray(value))) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an Int32Array, Uint32Array, BigInt64Array, Float64Array or number[] of integer ids', value);
  }
  const ids = value as ArrayLike<number>;
  if (ids.length !== rows) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${rows} group ids (one per row)`, value);
  let narrow = true;
  for (let i = 0; i < rows; i++) {
    const id = ids[i];
    if (typeof id !== 'number') throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}[${i}]`, 'an integer id', id);
    if (id !== id) throw nonFinite(param, i);
    if (!Number.isSafeInteger(id)) throw argError(ErrorCode.OUT_OF_RANGE, `${param}[${i}]`, 'an integer id below 2^53 in magnitude', id);
    if (id > 2147483647 || id < -2147483648) narrow = false;
  }
  if (narrow) return Int32Array.from(ids);
  const wide = new BigInt64Array(rows);
  for (let i = 0; i < rows; i++) wide[i] = BigInt(ids[i]);
  return wide;
}

/** A group size ≥ 1 that divides `rows`. */
export function groupSizeOf(value: unknown, param: string, rows: number): number {
  if (typeof value !== 'number') throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an integer ≥ 1', value);
  if (!Number.isSafeInteger(value) || value < 1) throw argError(ErrorCode.OUT_OF_RANGE, param, 'an integer ≥ 1', value);
  if (rows % value !== 0) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `a divisor of the ${rows} rows (contiguous groups of equal size)`, value);
  }
  return value;
}

/** [B, T] with B·T = `length` of the token arrays. */
export function shapeOf(value: unknown, param: string): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a shape [B, T]', value);
  const B = is.nonNegativeInteger(value[0], `${param}[0]`);
  const T = is.nonNegativeInteger(value[1], `${param}[1]`);
  return [B, T];
}

/** A token array of B·T entries. */
export function tokenValuesOf(value: unknown, param: string, shape: [number, number]): Values {
  const v = valuesOf(value, param);
  if (v.length !== shape[0] * shape[1]) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `${shape[0] * shape[1]} values (shape [${shape.join(', ')}])`, value);
  }
  return v;
}

export function maskOf(value: unknown, param: string, length: number): Uint8Array {
  return is.mask01(value, param, length);
}

export function booleanOf(value: unknown, param: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a boolean', value);
  return value;
}

/** A finite number ≥ 0 (eps), or the fallback when undefined. */
export function epsOf(value: unknown, param: string, fallback: number): number {
  if (value === undefined) return fallback;
  const x = is.finiteNumber(value, param);
  if (x < 0) throw argError(ErrorCode.OUT_OF_RANGE, param, 'a finite number ≥ 0', value);
  return x;
}
