/**
 * How an op of lib/ops runs: the option readers every family shares (temperature, row mask, precision,
 * non-finite policy), the dispatch of a validated job to the native or JS kernel, and the async / Sync
 * forms of each public function (the async form rejects instead of throwing).
 */
import { EngineError, ErrorCode } from '../errors';
import * as is from '../is';

export type NonFinite = 'throw' | 'nan';
/**
 * 'f32' (default): the vectorised kernels, f32 lanes within blocks, f64 across them (SPEC §1.1 bound 1e-5).
 * 'f64': f64 arithmetic with exp() throughout, f64 outputs, exact to double rounding (≈ 1e-15): what the
 * trainer presets need to reproduce a float64 reference (shared/vectors). Scalar, several times slower.
 */
export type Precision = 'f32' | 'f64';

/** A trainer whose numerics an op reproduces (SPEC §7); each family keeps its own table of what differs. */
export type Preset = 'verl' | 'trl' | 'openrlhf';
export const PRESETS: readonly Preset[] = ['verl', 'trl', 'openrlhf'];

export function presetOf(value: unknown): Preset | null {
  return value === undefined || value === null ? null : is.oneOf(value, 'opts.preset', PRESETS);
}

export function temperatureOf(value: unknown): number {
  return value === undefined ? 1 : is.positiveNumber(value, 'opts.temperature');
}

export function rowMaskOf(value: unknown, rows: number): Uint8Array | null {
  return value === undefined ? null : is.mask01(value, 'opts.rowMask', rows);
}

export function precisionOf(value: unknown): Precision {
  return value === undefined ? 'f32' : is.oneOf(value, 'opts.precision', ['f32', 'f64'] as const);
}

export function nonFiniteOf(value: unknown): NonFinite {
  return value === undefined ? 'throw' : is.oneOf(value, 'opts.nonFinite', ['throw', 'nan'] as const);
}

export function nonFiniteError(row: number, what: string): EngineError {
  return new EngineError(
    ErrorCode.NON_FINITE,
    `${what}: row ${row} is not finite (NaN, +inf, or every entry −inf); pass nonFinite: 'nan' to get NaN instead`,
    { param: 'logits', row },
  );
}

/** Runs a validated job on the chosen backend, sync or async, mapping a reported bad row to an error. */
export function run<T>(
  backend: 'cpu' | 'js', async: boolean, nativeJob: (async: boolean) => number | Promise<number>, jsJob: () => number,
  finish: (badRow: number) => T,
): T | Promise<T> {
  if (backend === 'js') {
    const bad = jsJob();
    return async ? Promise.resolve().then(() => finish(bad)) : finish(bad);
  }
  const result = nativeJob(async);
  if (!async) return finish(result as number);
  // The caller's stack, not the worker's, is the useful one in an async failure.
  const callSite = new Error();
  return (result as Promise<number>).then(finish, (error: Error) => {
    error.stack = `${error.stack}\n    --- called from ---\n${callSite.stack?.split('\n').slice(2).join('\n')}`;
    throw error;
  });
}

/** Wraps a validating implementation so the async form rejects (not throws) on bad input. */
export function asyncForm<A extends unknown[], T>(impl: (async: boolean, ...args: A) => T | Promise<T>): (...args: A) => Promise<T> {
  return (...args: A) => {
    try {
      return Promise.resolve(impl(true, ...args));
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

export function syncForm<A extends unknown[], T>(impl: (async: boolean, ...args: A) => T | Promise<T>): (...args: A) => T {
  return (...args: A) => impl(false, ...args) as T;
}
