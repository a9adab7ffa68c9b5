/**
 * Command-line argument parsing for the `advantage-engine` command (lib/cli.ts): the program name, the two
 * error classes that lib/cli.ts maps to exit codes (UsageError → 2, RunError → 1), the flag parser shared by
 * every command, and the comma-list value parsers of `bench` (their messages name it).
 */

export const PROGRAM = 'advantage-engine';

/** A usage error (unknown command, flag or value): exit code 2, with a pointer to --help. */
export class UsageError extends Error {}
/** A run-time failure (e.g. the cpu backend is not loadable): exit code 1. */
export class RunError extends Error {}

export type Flags = Map<string, string | true>;

/** Parses `--name value`, `--name=value` and boolean flags; anything unknown is a usage error. */
export function parseFlags(command: string, args: readonly string[], valued: readonly string[], booleans: readonly string[]): Flags {
  const flags: Flags = new Map();
  for (let k = 0; k < args.length; k++) {
    const arg = args[k];
    if (arg === '-h') {
      flags.set('help', true);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`${command}: unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (booleans.includes(name)) {
      if (eq >= 0) throw new UsageError(`${command}: --${name} takes no value`);
      flags.set(name, true);
    } else if (valued.includes(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++k];
      if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new UsageError(`${command}: --${name} needs a value`);
      if (flags.has(name)) throw new UsageError(`${command}: --${name} given twice`);
      flags.set(name, value);
    } else {
      throw new UsageError(`${command}: unknown option '--${name}'`);
    }
  }
  return flags;
}

export function list(flags: Flags, name: string): string[] | undefined {
  const value = flags.get(name);
  if (value === undefined || value === true) return undefined;
  const items = value.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UsageError(`bench: --${name} has an empty item in '${value}'`);
  return [...new Set(items)];
}

export function choices<T extends string>(flags: Flags, name: string, allowed: readonly T[]): T[] | undefined {
  const items = list(flags, name);
  for (const item of items ?? []) {
    if (!allowed.includes(item as T)) {
      throw new UsageError(`bench: invalid --${name} '${item}' (expected one of: ${allowed.join(', ')})`);
    }
  }
  return items as T[] | undefined;
}

export function integers(flags: Flags, name: string, min: number, max: number): number[] | undefined {
  return list(flags, name)?.map((item) => {
    const n = /^\d+$/.test(item) ? Number(item) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new UsageError(`bench: invalid --${name} '${item}' (expected an integer in [${min}, ${max}])`);
    }
    return n;
  });
}

export function positiveNumber(flags: Flags, name: string): number | undefined {
  const value = flags.get(name);
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value) ? Number(value) : NaN;
  if (!(n > 0) || !Number.isFinite(n)) throw new UsageError(`bench: invalid --${name} '${value}' (expected a number of seconds > 0)`);
  return n;
}
