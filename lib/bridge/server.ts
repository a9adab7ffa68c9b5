/**
 * The bridge server: reads request frames (protocol.ts) from one stream, runs the named op of the public
 * API (ops.ts), and writes reply frames to another. Requests run concurrently: a reply is written when its
 * op settles, so async ops overlap and replies may come back in any order (matched by `id`).
 *
 * Arguments: a request tensor becomes a TypedArray of its dtype (numpy bool → Uint8Array, int64 →
 * BigInt64Array). A float tensor (float32 / float64 / float16 / bfloat16) is a "dual" array: the TypedArray
 * itself, carrying non-enumerable `data` (itself), `shape` and `dtype` ('f32' | 'f64' | 'f16' | 'bf16'),
 * so it is at once a Tensor where an op takes one (logits) and a plain array where an op takes arrays
 * (logprob, advantages). The client need not know which an op expects.
 *
 * Results: every TypedArray in the returned value becomes a reply tensor (in the payload, or in a server
 * segment when the client accepts them and it is at least the threshold); an array that is one of the
 * request's tensors (an `out` buffer, `inPlace`) is marked `arg: i` so that the client writes the result
 * into its own array. Non-finite numbers and bigints are encoded (protocol.ts); everything else is JSON.
 *
 * Failure: an op's error is answered with its `code`; a malformed request with ERR_AE_PROTOCOL; a frame
 * that desynchronises the stream is answered (id null when unknown) and ends the connection once the
 * requests already running have been answered. Nothing a client sends throws out of this class.
 */
import type { Readable, Writable } from 'stream';
import { backendInfo } from '../backend';
import { buildOpTable, closestOps, type OpTable } from './ops';
import {
  alignUp, BridgeErrorCode, encodeFrame, encodeResult, FrameReader, PROTOCOL_VERSION, ProtocolError, reviveArgs, WIRE_DTYPES,
  wireDtypeOf, type AnyTypedArray, type Frame, type TensorDesc, type WireDtype,
} from './protocol';
import { pidAlive, SharedMemory, sweepSegments } from './shm';

/** Result arrays of at least this many bytes go through a server segment (when the client accepts them). */
export const DEFAULT_SHM_THRESHOLD = 1 << 20;
const MAX_DIMS = 32;

export interface ServerOptions {
  input: Readable;
  output: Writable;
  shm: SharedMemory;
  /** The ops served (default: lib/index.ts). */
  table?: OpTable;
  /** Diagnostics (never protocol bytes); default: nothing. */
  log?: (line: string) => void;
  version?: string;
}

/** What a client's `$hello` set: its pid (to sweep its segments if it dies) and whether it maps ours. */
interface Session {
  clientPid: number | null;
  shmReplies: boolean;
  shmThreshold: number;
}

interface Decoded {
  arrays: AnyTypedArray[];
  descs: TensorDesc[];
}

type Payload = { offset: number; bytes: Uint8Array }[];

function checkArray(value: unknown, what: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ProtocolError(`${what} must be an array`, true);
  return value;
}

function names(value: unknown, what: string): string[] {
  const list = checkArray(value, what);
  if (!list.every((n) => typeof n === 'string')) throw new ProtocolError(`${what} must hold segment names`, true);
  return list as string[];
}

function errorBody(error: unknown): Record<string, unknown> {
  const e = (error ?? {}) as Record<string, unknown>;
  const code = typeof e.code === 'string' && e.code ? e.code : BridgeErrorCode.INTERNAL;
  const body: Record<string, unknown> = { code, message: typeof e.message === 'string' ? e.message : String(error) };
  for (const key of ['param', 'expected', 'received', 'row'] as const) {
    if (typeof e[key] === 'string' || typeof e[key] === 'number') body[key] = e[key];
  }
  return body;
}

export class BridgeServer {
  private readonly input: Readable;
  private readonly output: Writable;
  private readonly shm: SharedMemory;
  private readonly table: OpTable;
  private readonly log: (line: string) => void;
  private readonly version: string;
  private readonly reader = new FrameReader();
  private session: Session = { clientPid: null, shmReplies: false, shmThreshold: DEFAULT_SHM_THRESHOLD };
  private inFlight = 0;
  private writesPending = 0;
  private inputDone = false;
  private outputBroken = false;
  private exitCode = 0;
  private resolveDone: ((code: number) => void) | null = null;
  private readonly done: Promise<number>;
  readonly stats = { requests: 0, errors: 0 };

  constructor(options: ServerOptions) {
    this.input = options.input;
    this.output = options.output;
    this.shm = options.shm;
    this.table = options.table ?? buildOpTable();
    this.log = options.log ?? (() => {});
    this.version = options.version ?? 'unknown';
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** Serves until the input ends (or the connection fails) and every request has been answered; resolves
   * with 0 after a clean end, 1 after a fatal protocol error, truncated input or a vanished client. */
  run(): Promise<number> {
    this.output.on('error', (error: Error) => {
      if (!this.outputBroken) this.log(`advantage-engine serve: output closed (${error.message}); the client is gone`);
      this.outputBroken = true;
      this.exitCode = 1;
      this.endInput();
    });
    this.input.on('data', (chunk: Buffer) => this.receive(chunk));
    this.input.on('end', () => this.endInput());
    this.input.on('close', () => this.endInput());
    this.input.on('error', (error: Error) => {
      this.log(`advantage-engine serve: input error: ${error.message}`);
      this.endInput();
    });
    return this.done;
  }

  private receive(chunk: Buffer): void {
    if (this.inputDone) return;
    for (const event of this.reader.push(chunk)) {
      if (event.kind === 'frame') {
        this.dispatch(event.frame);
        continue;
      }
      this.reply(this.errorFrame(event.id, event.error));
      if (!event.error.recoverable) {
        this.log(`advantage-engine serve: ${event.error.message}; closing the connection`);
        this.exitCode = 1;
        this.endInput();
        return;
      }
    }
  }

  private endInput(): void {
    if (this.inputDone) return;
    this.inputDone = true;
    const cut = this.reader.truncation();
    if (cut) {
      this.exitCode = 1;
      this.reply(this.errorFrame(cut.id, new ProtocolError(cut.message, false)));
    }
    this.input.removeAllListeners('data');
    this.input.pause();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (!this.inputDone || this.inFlight > 0 || this.writesPending > 0 || !this.resolveDone) return;
    const resolve = this.resolveDone;
    this.resolveDone = null;
    this.shm.close();
    // A connection ended by a protocol error still has its input open: release it so the process can exit.
    this.input.destroy();
    const client = this.session.clientPid;
    if (client !== null && client !== process.pid && !pidAlive(client)) {
      const swept = sweepSegments(client);
      if (swept.length) this.log(`advantage-engine serve: removed ${swept.length} segment(s) of the dead client ${client}`);
    }
    if (this.outputBroken) resolve(this.exitCode);
    else this.output.end(() => resolve(this.exitCode));
  }

  private dispatch(frame: Frame): void {
    this.inFlight++;
    this.stats.requests++;
    this.handle(frame)
      .catch((error: unknown) => this.log(`advantage-engine serve: internal error: ${(error as Error)?.stack ?? error}`))
      .finally(() => {
        this.inFlight--;
        this.maybeFinish();
      });
  }

  private async handle(frame: Frame): Promise<void> {
    const header = frame.header;
    const id = header.id;
    const holds: string[] = [];
    let pieces: Buffer[];
    try {
      if (!(typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)))) {
        throw new ProtocolError(`header.id must be an integer or a string, got ${JSON.stringify(id)}`, true);
      }
      this.shm.acknowledge(names(header.release, 'header.release'));
      this.shm.drop(names(header.unmap, 'header.unmap'));
      if (typeof header.op !== 'string') throw new ProtocolError(`header.op must be an op name, got ${JSON.stringify(header.op)}`, true);
      const inputs = this.decodeTensors(header.tensors, frame.payload, holds);
      const args = reviveArgs(checkArray(header.args, 'header.args'), inputs.arrays) as unknown[];
      const result = await this.call(header.op, args);
      pieces = this.resultFrame(id, result, inputs);
    } catch (error) {
      this.stats.errors++;
      if ((error as { code?: unknown })?.code === undefined) {
        this.log(`advantage-engine serve: ${header.op}: ${(error as Error)?.stack ?? error}`);
      }
      pieces = this.errorFrame(typeof id === 'string' || typeof id === 'number' ? id : null, error);
    }
    // Client segments stay mapped until the reply has left: a reply may point into them.
    this.reply(pieces, () => holds.forEach((name) => this.shm.release(name)));
  }

  private async call(op: string, args: unknown[]): Promise<unknown> {
    if (op === '$hello') return this.hello(args[0]);
    if (op === '$stats') {
      return { ...this.stats, inFlight: this.inFlight, rss: process.memoryUsage().rss, shm: this.shm.counts() };
    }
    if (op === '$release') return null; // its work is the header's release / unmap lists
    const fn = this.table.ops.get(op);
    if (!fn) {
      const near = closestOps(op, this.table.ops.keys());
      const hint = near.length ? `; did you mean ${near.map((n) => `'${n}'`).join(' or ')}?` : '';
      throw Object.assign(new Error(`unknown op '${op}'${hint} (the server has ${this.table.ops.size} ops; $hello lists them)`), {
        code: BridgeErrorCode.UNKNOWN_OP,
      });
    }
    return await fn(...args);
  }

  private hello(options: unknown): Record<string, unknown> {
    const o = (options && typeof options === 'object' ? options : {}) as Record<string, unknown>;
    if (typeof o.pid === 'number' && Number.isSafeInteger(o.pid) && o.pid > 0) this.session.clientPid = o.pid;
    this.session.shmReplies = o.shm === true && this.shm.available;
    if (typeof o.shmThreshold === 'number' && o.shmThreshold >= 0) this.session.shmThreshold = o.shmThreshold;
    const info = backendInfo();
    return {
      protocol: PROTOCOL_VERSION,
      version: this.version,
      pid: process.pid,
      ops: [...this.table.ops.keys()].sort(),
      constants: this.table.constants,
      shm: { available: this.shm.available, reason: this.shm.unavailable, replies: this.session.shmReplies },
      backend: info.active,
    };
  }

  private decodeTensors(value: unknown, payload: Uint8Array, holds: string[]): Decoded {
    const descs = checkArray(value, 'header.tensors') as TensorDesc[];
    const arrays = descs.map((desc, i) => {
      const where = `header.tensors[${i}]`;
      if (desc === null || typeof desc !== 'object') throw new ProtocolError(`${where} must be a tensor descriptor`, true);
      const kind = WIRE_DTYPES[desc.dtype as WireDtype];
      if (!Object.hasOwn(WIRE_DTYPES, desc.dtype) || !kind) {
        throw new ProtocolError(`${where}.dtype ${JSON.stringify(desc.dtype)} is not one of ${Object.keys(WIRE_DTYPES).join(', ')}`, true);
      }
      const { shape, offset, nbytes } = desc;
      if (!Array.isArray(shape) || shape.length > MAX_DIMS || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new ProtocolError(`${where}.shape must be at most ${MAX_DIMS} integers ≥ 0`, true);
      }
      const count = shape.reduce((a, d) => a * d, 1);
      const itemsize = kind.ctor.BYTES_PER_ELEMENT;
      if (!Number.isSafeInteger(count) || nbytes !== count * itemsize) {
        throw new ProtocolError(`${where}.nbytes ${JSON.stringify(nbytes)} is not ${count} × ${itemsize} bytes for shape [${shape.join(', ')}]`, true);
      }
      if (!Number.isSafeInteger(offset) || offset < 0 || offset % itemsize !== 0) {
        throw new ProtocolError(`${where}.offset ${JSON.stringify(offset)} is not a multiple of ${itemsize} bytes`, true);
      }
      let buffer: ArrayBuffer;
      let base: number;
      if (desc.shm !== undefined) {
        if (typeof desc.shm !== 'string') throw new ProtocolError(`${where}.shm must be a segment name`, true);
        if (!this.shm.available) throw new ProtocolError(`${where} is in shared memory, which this server cannot map: ${this.shm.unavailable}`, true);
        try {
          buffer = this.shm.acquire(desc.shm);
        } catch (error) {
          throw Object.assign(new Error(`${where}: ${(error as Error).message}`), { code: (error as { code?: string }).code ?? BridgeErrorCode.SHM });
        }
        holds.push(desc.shm);
        base = 0;
      } else {
        buffer = payload.buffer as ArrayBuffer;
        base = payload.byteOffset;
      }
      const limit = desc.shm !== undefined ? buffer.byteLength : payload.byteLength;
      if (offset + nbytes > limit) {
        throw new ProtocolError(`${where} (${nbytes} bytes at ${offset}) runs past the end of its ${desc.shm !== undefined ? 'segment' : 'payload'} (${limit} bytes)`, true);
      }
      const array = new kind.ctor(buffer, base + offset, count) as AnyTypedArray;
      if (kind.tensor) {
        Object.defineProperties(array, {
          data: { value: array },
          shape: { value: Object.freeze(shape.slice()) },
          dtype: { value: kind.tensor },
        });
      }
      return array;
    });
    return { arrays, descs };
  }

  private resultFrame(id: unknown, result: unknown, inputs: Decoded): Buffer[] {
    const descs: TensorDesc[] = [];
    const payload: Payload = [];
    const seen = new Map<AnyTypedArray, number>();
    let end = 0;
    const encoded = encodeResult(result, (array) => {
      let k = seen.get(array);
      if (k === undefined) {
        k = descs.length;
        seen.set(array, k);
        const d = this.describe(array, inputs, payload, end);
        if (d.payloadEnd !== undefined) end = d.payloadEnd;
        descs.push(d.desc);
      }
      return { $tensor: k };
    });
    return encodeFrame({ id, ok: true, result: encoded === undefined ? null : encoded, tensors: descs }, payload);
  }

  private describe(array: AnyTypedArray, inputs: Decoded, payload: Payload, end: number): { desc: TensorDesc; payloadEnd?: number } {
    const dtype = wireDtypeOf(array);
    if (!dtype) throw new Error(`the result holds a ${array.constructor.name}, which has no wire dtype`);
    const tagged = (array as { data?: unknown; shape?: unknown }).data === array ? (array as unknown as { shape: number[] }).shape : null;
    const shape = tagged ? [...tagged] : [array.length];
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    const arg = inputs.arrays.indexOf(array);
    if (arg >= 0) {
      const input = inputs.descs[arg];
      // In place: the client's own segment already holds the bytes; from the payload they go back in ours.
      if (input.shm !== undefined) return { desc: { arg, dtype, shape, offset: input.offset, nbytes: input.nbytes, shm: input.shm } };
    }
    const extra = arg >= 0 ? { arg } : {};
    if (this.session.shmReplies && bytes.byteLength >= this.session.shmThreshold && bytes.byteLength > 0) {
      try {
        const name = this.shm.publish(bytes);
        return { desc: { dtype, shape, offset: 0, nbytes: bytes.byteLength, shm: name, ...extra } };
      } catch (error) {
        this.log(`advantage-engine serve: a result segment could not be created (${(error as Error).message}); sending it in the pipe`);
      }
    }
    const offset = alignUp(end);
    payload.push({ offset, bytes });
    return { desc: { dtype, shape, offset, nbytes: bytes.byteLength, ...extra }, payloadEnd: offset + bytes.byteLength };
  }

  private errorFrame(id: unknown, error: unknown): Buffer[] {
    return encodeFrame({ id: id ?? null, ok: false, error: errorBody(error) });
  }

  /** Writes a frame's pieces; `flushed` runs once they have left (or could not be written). */
  private reply(pieces: Buffer[], flushed: () => void = () => {}): void {
    if (this.outputBroken || this.output.destroyed || this.output.writableEnded) {
      flushed();
      return;
    }
    this.writesPending++;
    const done = () => {
      this.writesPending--;
      flushed();
      this.maybeFinish();
    };
    this.output.cork();
    for (let k = 0; k < pieces.length - 1; k++) this.output.write(pieces[k]);
    this.output.write(pieces[pieces.length - 1], done);
    this.output.uncork();
  }
}
