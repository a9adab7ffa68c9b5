/**
 * Shared by every benchmark suite and the `advantage-engine bench` command: the machine's memory read
 * bandwidth (measured in-process, so that each kernel is reported as a fraction of what this machine
 * delivered at that moment), the cache facts that make such a measurement mean something, summary
 * statistics, and the text formatting of results (table rows, rates, progress on a terminal).
 */
import * as fs from 'fs';
import * as os from 'os';
import { nativeAddon } from '../lib/backend';
import type { NativeAddon } from '../lib/native';

export const MiB = 1024 * 1024;
/** The bandwidth buffer is at least this large (and at least twice the last-level cache, when known). */
export const MIN_BANDWIDTH_BYTES = 512 * MiB;
/** Timed full reads of the bandwidth buffer; the median is reported. */
export const BANDWIDTH_REPEATS = 7;

export interface CacheLevel {
  level: number;
  bytes: number;
}

let llcCache: CacheLevel | null | undefined;
/** The largest data/unified cache of CPU 0 from sysfs (Linux), or null when unknown. */
export function lastLevelCache(): CacheLevel | null {
  if (llcCache !== undefined) return llcCache;
  llcCache = null;
  try {
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    for (const entry of fs.readdirSync(dir)) {
      if (!entry.startsWith('index')) continue;
      const read = (name: string) => fs.readFileSync(`${dir}/${entry}/${name}`, 'utf8').trim();
      if (read('type') === 'Instruction') continue;
      const level = Number(read('level'));
      const match = /^(\d+)([KMG]?)$/.exec(read('size'));
      if (!match) continue;
      const bytes = Number(match[1]) * ({ '': 1, K: 1024, M: MiB, G: 1024 * MiB } as Record<string, number>)[match[2]];
      if (!llcCache || level > llcCache.level) llcCache = { level, bytes };
    }
  } catch {
    llcCache = null;
  }
  return llcCache;
}

/** Bytes for the bandwidth buffer: the kernel's input size, but at least 512 MiB and twice the LLC. */
export function bandwidthBytes(inputBytes: number): number {
  const llc = lastLevelCache();
  return Math.max(inputBytes, MIN_BANDWIDTH_BYTES, llc ? 2 * llc.bytes : 0);
}

export interface Bandwidth {
  /** Median of the timed reads, GB/s (1e9 bytes). */
  gbPerSec: number;
  bestGbPerSec: number;
  bytes: number;
  repeats: number;
  threads: number;
  isa: string;
}

function loadedAddon(): NativeAddon | null {
  try {
    return nativeAddon();
  } catch {
    return null;
  }
}

/**
 * Streaming read bandwidth with `threads` pool threads at the widest SIMD level (the pool size and SIMD
 * level are restored afterwards). Null when the native addon is not loaded: there is then no vectorised
 * all-thread reader to compare against.
 */
export function measureReadBandwidth(inputBytes: number, threads: number): Bandwidth | null {
  const addon = loadedAddon();
  if (!addon) return null;
  const before = addon.info();
  const widest = before.isaAvailable[before.isaAvailable.length - 1];
  try {
    if (threads !== before.threads) addon.setThreads(threads);
    if (widest !== before.isa) addon.setIsa(widest);
    const r = addon.readBandwidth(bandwidthBytes(inputBytes), BANDWIDTH_REPEATS);
    return { gbPerSec: r.medianGbPerSec, bestGbPerSec: r.bestGbPerSec, bytes: r.bytes, repeats: r.repeats, threads: r.threads, isa: widest };
  } finally {
    if (widest !== before.isa) addon.setIsa(before.isa);
    if (threads !== before.threads) addon.setThreads(before.threads);
  }
}

/** One line saying whether the bandwidth buffer and the kernel input stream from memory or sit in cache. */
export function cacheNote(bandwidth: Bandwidth | null, inputBytes: number): string {
  const llc = lastLevelCache();
  const llcText = llc ? `L${llc.level} ${formatBytes(llc.bytes)}` : 'size unknown';
  const parts: string[] = [];
  if (bandwidth) {
    parts.push(
      `read bandwidth over ${formatBytes(bandwidth.bytes)} (> last-level cache, ${llcText}), ${bandwidth.threads} ` +
      `thread${bandwidth.threads === 1 ? '' : 's'} ${bandwidth.isa}, median of ${bandwidth.repeats} reads ` +
      `(best ${bandwidth.bestGbPerSec.toFixed(2)} GB/s)`,
    );
  } else {
    parts.push('read bandwidth: not measured (native addon not loaded; bandwidth fields are null)');
  }
  if (llc && inputBytes <= llc.bytes) {
    parts.push(`input ${formatBytes(inputBytes)} fits in the last-level cache (${llcText}): GB/s may exceed memory bandwidth`);
  }
  return parts.join('; ');
}

// ---- statistics ----

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const position = q * (sorted.length - 1);
  const lo = Math.floor(position);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo);
}

// ---- formatting ----

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${(bytes / (1024 * MiB)).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(bytes >= 100 * MiB ? 0 : 1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${bytes} B`;
}

/** 1234567 → "1.23 M" (SI prefixes). */
export function formatSi(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return String(value);
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, unit] of units) if (Math.abs(value) >= scale) return `${(value / scale).toPrecision(digits)} ${unit}`;
  return `${value.toPrecision(digits)} `;
}

/** A duration in seconds as "12.3 µs", "4.56 ms", "1.20 s". */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  if (seconds < 1e-3) return `${(seconds * 1e6).toPrecision(3)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toPrecision(3)} ms`;
  return `${seconds.toPrecision(3)} s`;
}

export function fixed(value: number | null, digits: number): string {
  return value === null || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

export interface Column {
  title: string;
  width: number;
  align?: 'left' | 'right';
}

/** A fixed-width table printed row by row (results appear as they are measured). */
export class Table {
  constructor(private readonly columns: readonly Column[], private readonly write: (line: string) => void) {}

  private line(cells: readonly string[]): string {
    return cells
      .map((cell, k) => {
        const c = this.columns[k];
        return c.align === 'left' ? cell.padEnd(c.width) : cell.padStart(c.width);
      })
      .join('  ')
      .trimEnd();
  }

  header(): void {
    this.write(this.line(this.columns.map((c) => c.title)));
    this.write(this.line(this.columns.map((c) => '-'.repeat(c.width))));
  }

  row(cells: readonly string[]): void {
    this.write(this.line(cells));
  }
}

/**
 * A progress bar with a spinner on stderr, drawn only when stderr is a terminal (never in pipes or logs).
 * `update` is called from benchmark.js cycle events, so it works while the benchmark blocks the loop.
 */
export class Progress {
  private readonly enabled = !!process.stderr.isTTY;
  private frame = 0;
  private static readonly FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

  update(label: string, fraction: number, detail = ''): void {
    if (!this.enabled) return;
    const width = 24;
    const done = Math.round(Math.max(0, Math.min(1, fraction)) * width);
    const spinner = Progress.FRAMES[this.frame++ % Progress.FRAMES.length];
    const text = `${spinner} [${'#'.repeat(done)}${' '.repeat(width - done)}] ${label}${detail ? `  ${detail}` : ''}`;
    const columns = process.stderr.columns || 100;
    process.stderr.write(`\r\x1b[2K${text.slice(0, columns - 1)}`);
  }

  clear(): void {
    if (this.enabled) process.stderr.write('\r\x1b[2K');
  }
}

/** A short machine description for report headers. */
export function machineSummary(): string {
  const cpus = os.cpus();
  const llc = lastLevelCache();
  return `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} logical CPUs, ${llc ? `L${llc.level} ${formatBytes(llc.bytes)}` : 'LLC unknown'}, ` +
    `${formatBytes(os.totalmem())} RAM, node ${process.version}`;
}
