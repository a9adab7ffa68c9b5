/**
 * The ops the bridge serves: every function the public API (lib/index.ts) exports, by its own camelCase
 * name, and the functions of exported namespaces as `namespace.name` (e.g. `rewards.serialGroupRewards`).
 * Built from the module at start, so an op exported later is served with no change here. Classes are
 * not served (their instances cannot cross a process boundary); exported constants (STAT_NAMES,
 * ErrorCode, …) are reported by `$hello` instead.
 */
import * as api from '../index';

export type OpFunction = (...args: unknown[]) => unknown;

function isClass(value: unknown): boolean {
  return typeof value === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isJsonData(value: unknown, depth = 0): boolean {
  if (depth > 8) return false;
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) return true;
  if (Array.isArray(value)) return value.every((v) => isJsonData(v, depth + 1));
  return isPlainObject(value) && Object.values(value).every((v) => isJsonData(v, depth + 1));
}

export interface OpTable {
  ops: Map<string, OpFunction>;
  /** Exported data (arrays and records of strings / numbers), by export name. */
  constants: Record<string, unknown>;
}

export function buildOpTable(exports: Record<string, unknown> = api as unknown as Record<string, unknown>): OpTable {
  const ops = new Map<string, OpFunction>();
  const constants: Record<string, unknown> = {};
  const walk = (object: Record<string, unknown>, prefix: string, depth: number) => {
    for (const [name, value] of Object.entries(object)) {
      if (typeof value === 'function') {
        if (!isClass(value)) ops.set(prefix + name, value.bind(object) as OpFunction);
      } else if (isPlainObject(value) && depth < 3 && Object.values(value).some((v) => typeof v === 'function')) {
        walk(value, `${prefix}${name}.`, depth + 1);
      } else if (depth === 0 && isJsonData(value)) {
        constants[name] = value;
      }
    }
  };
  walk(exports, '', 0);
  return { ops, constants };
}

/** The op names closest to `name` (edit distance ≤ 3, case-insensitive), for "did you mean" hints. */
export function closestOps(name: string, names: Iterable<string>): string[] {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diagonal = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const next = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
        diagonal = row[j];
        row[j] = next;
      }
    }
    return row[b.length];
  };
  const wanted = name.toLowerCase();
  return [...names]
    .map((n) => ({ n, d: distance(wanted, n.toLowerCase()) }))
    .filter((x) => x.d <= 3)
    .sort((a, b) => a.d - b.d)
    .slice(0, 3)
    .map((x) => x.n);
}
