/**
 * The engine's one error class. Every error the engine raises, from validation in `lib/ops` or from the
 * native addon, is an `EngineError` carrying a stable `code`; messages name the argument, what was
 * expected and what was received (sharp's form), so callers branch on `code`, never on text.
 */

export const ErrorCode = Object.freeze({
  INVALID_ARG_TYPE: 'ERR_INVALID_ARG_TYPE',
  INVALID_ARG_VALUE: 'ERR_INVALID_ARG_VALUE',
  OUT_OF_RANGE: 'ERR_OUT_OF_RANGE',
  SHAPE_MISMATCH: 'ERR_AE_SHAPE_MISMATCH',
  DTYPE: 'ERR_AE_DTYPE',
  NON_FINITE: 'ERR_AE_NON_FINITE',
  TOKEN_RANGE: 'ERR_AE_TOKEN_RANGE',
  EMPTY_GROUP: 'ERR_AE_EMPTY_GROUP',
  BACKEND_UNAVAILABLE: 'ERR_AE_BACKEND_UNAVAILABLE',
  NATIVE: 'ERR_AE_NATIVE',
} as const);

export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface EngineErrorDetails {
  /** The argument (or option path, e.g. `opts.temperature`) that was wrong. */
  param?: string;
  expected?: string;
  received?: string;
  /** For ERR_AE_NON_FINITE: the first offending row. */
  row?: number;
}

export class EngineError extends Error {
  readonly code: ErrorCodeName;
  // `declare`: present only when set, so a logged error shows no `undefined` fields.
  declare readonly param?: string;
  declare readonly expected?: string;
  declare readonly received?: string;
  declare readonly row?: number;

  constructor(code: ErrorCodeName, message: string, details: EngineErrorDetails = {}) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    if (details.param !== undefined) this.param = details.param;
    if (details.expected !== undefined) this.expected = details.expected;
    if (details.received !== undefined) this.received = details.received;
    if (details.row !== undefined) this.row = details.row;
  }
}

/** A short, bounded description of any value for error messages: `Float64Array(12)`, `'abc'`, `-3`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) {
    const length = (value as unknown as { length?: number }).length ?? value.byteLength;
    return `${value.constructor.name}(${length})`;
  }
  if (Array.isArray(value)) return `Array(${value.length})`;
  if (typeof value === 'function') return 'function';
  return (value as object).constructor?.name ?? 'object';
}

/** Builds the standard "Expected <what> for <param> but received <value>" error. */
export function argError(code: ErrorCodeName, param: string, expected: string, value: unknown): EngineError {
  const received = describe(value);
  return new EngineError(code, `Expected ${expected} for ${param} but received ${received}`, {
    param,
    expected,
    received,
  });
}
