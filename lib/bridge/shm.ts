/**
 * Shared-memory segments of the bridge (protocol.ts): `/dev/shm/advantage-engine.<owner pid>.<n>`, mapped
 * through the native addon (native/addon/shm.cc) into ArrayBuffers.
 *
 * Ownership: the process named in a segment's name created it and removes it. The client's segments (its
 * request tensors) are mapped here on first use and kept mapped, since a client reuses them from call to
 * call; the client's `unmap` list drops them, and a mapping is only unmapped when no running op holds it.
 * The server's segments (large results) are written, unmapped here at once, and unlinked when the client's
 * `release` list acknowledges them, or when the server ends. Segments of dead owners (a SIGKILLed client or
 * server) are swept by the next server or client to start, and by this server when its client goes away.
 */
import * as fs from 'fs';
import type { NativeAddon } from '../native';

export const SHM_DIR = '/dev/shm';
export const SEGMENT_PREFIX = 'advantage-engine.';
const SEGMENT_NAME = /^advantage-engine\.(\d+)\.[0-9a-z]+$/;

export function ownerPid(name: string): number | null {
  const m = SEGMENT_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process stays a zombie until its parent reaps it: dead for our purpose.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** Removes the segments of `pid` (or of every dead owner when none is given); returns the names removed. */
export function sweepSegments(pid?: number): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(SHM_DIR);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = ownerPid(name);
    if (owner === null || (pid !== undefined ? owner !== pid : owner === process.pid || pidAlive(owner))) continue;
    try {
      fs.unlinkSync(`${SHM_DIR}/${name}`);
      removed.push(name);
    } catch {
      // Already gone (the owner's peer swept it first): nothing to do.
    }
  }
  return removed;
}

interface ClientMapping {
  buffer: ArrayBuffer;
  holds: number;
  dropped: boolean;
}

type ShmFunctions = Pick<NativeAddon, 'shmCreate' | 'shmMap' | 'shmUnmap' | 'shmUnlink'>;

export class SharedMemory {
  /** Why segments cannot be used here (null when they can): the bridge then sends every tensor in the pipe. */
  readonly unavailable: string | null;
  private readonly addon: ShmFunctions | null;
  private readonly mapped = new Map<string, ClientMapping>();
  private readonly outstanding = new Set<string>();
  private sequence = 0;

  constructor(addon: Partial<ShmFunctions> | null, unavailable?: string) {
    const complete = addon && typeof addon.shmMap === 'function' && typeof addon.shmCreate === 'function';
    this.addon = complete ? (addon as ShmFunctions) : null;
    if (unavailable) this.unavailable = unavailable;
    else if (!addon) this.unavailable = 'the native addon is not loaded (js backend)';
    else if (!complete) this.unavailable = 'the native addon was built without shared-memory support';
    else if (!fs.existsSync(SHM_DIR)) this.unavailable = `${SHM_DIR} does not exist on this system`;
    else this.unavailable = null;
  }

  get available(): boolean {
    return this.unavailable === null;
  }

  /** Maps (or reuses the mapping of) a client segment and holds it until release(). */
  acquire(name: string): ArrayBuffer {
    if (!this.addon) throw new Error(`shared memory is not available: ${this.unavailable}`);
    if (ownerPid(name) === null) {
      throw Object.assign(new Error(`segment name ${JSON.stringify(name)} is not advantage-engine.<pid>.<n>`), { code: 'ERR_AE_PROTOCOL' });
    }
    let m = this.mapped.get(name);
    if (!m) {
      m = { buffer: this.addon.shmMap(name), holds: 0, dropped: false };
      this.mapped.set(name, m);
    }
    m.dropped = false;
    m.holds++;
    return m.buffer;
  }

  release(name: string): void {
    const m = this.mapped.get(name);
    if (!m) return;
    m.holds--;
    if (m.dropped && m.holds === 0) this.unmapNow(name, m);
  }

  /** The client no longer uses these segments: unmap each now, or when the last op holding it ends. */
  drop(names: readonly string[]): void {
    for (const name of names) {
      const m = this.mapped.get(name);
      if (!m) continue;
      m.dropped = true;
      if (m.holds === 0) this.unmapNow(name, m);
    }
  }

  /** A new server segment holding `bytes` (copied in, then unmapped here); unlinked on acknowledge(). */
  publish(bytes: Uint8Array): string {
    if (!this.addon) throw new Error(`shared memory is not available: ${this.unavailable}`);
    const name = `${SEGMENT_PREFIX}${process.pid}.${(this.sequence++).toString(36)}`;
    const buffer = this.addon.shmCreate(name, bytes.byteLength);
    this.outstanding.add(name);
    try {
      new Uint8Array(buffer).set(bytes);
    } finally {
      this.addon.shmUnmap(buffer);
    }
    return name;
  }

  /** The client has mapped these server segments: remove their names (its mappings keep the memory). */
  acknowledge(names: readonly string[]): void {
    for (const name of names) {
      if (!this.outstanding.delete(name)) continue;
      this.addon?.shmUnlink(name);
    }
  }

  /** Number of server segments not yet acknowledged and of client segments mapped (for tests and logs). */
  counts(): { outstanding: number; mapped: number } {
    return { outstanding: this.outstanding.size, mapped: this.mapped.size };
  }

  /** Unlinks every unacknowledged server segment and unmaps every client segment no op holds. */
  close(): void {
    this.acknowledge([...this.outstanding]);
    for (const [name, m] of this.mapped) if (m.holds === 0) this.unmapNow(name, m);
  }

  private unmapNow(name: string, m: ClientMapping): void {
    this.addon?.shmUnmap(m.buffer);
    if (this.mapped.get(name) === m) this.mapped.delete(name);
  }
}
