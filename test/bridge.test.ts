/**
 * The bridge server (lib/bridge) in-process, over in-memory streams: frame parsing split at every byte,
 * replies with tensors in the payload, dual arrays (Tensor and TypedArray at once), non-finite numbers, and
 * the failure cases — malformed header, oversized header, truncated payload, bad descriptors, unknown op —
 * answered with coded errors and never thrown. python/tests covers the real process and shared memory.
 */
import { PassThrough } from 'stream';
import * as ae from '../lib';
import { BridgeServer } from '../lib/bridge/server';
import { SharedMemory } from '../lib/bridge/shm';
import { ALIGN, FrameReader, MAX_HEADER_BYTES, encodeFrame, type ReaderEvent } from '../lib/bridge/protocol';
import { buildOpTable } from '../lib/bridge/ops';
import { rng } from './helpers';

interface Reply {
  header: Record<string, any>;
  payload: Uint8Array;
}

function frame(header: Record<string, unknown>, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(JSON.stringify({ ...header, payload: header.payload ?? payload.byteLength }));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32LE(json.length);
  return Buffer.concat([prefix, json, payload]);
}

/** A server on in-memory streams; `replies()` parses what it wrote. */
function start() {
  const input = new PassThrough();
  const output = new PassThrough();
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  const logs: string[] = [];
  const server = new BridgeServer({ input, output, shm: new SharedMemory(null), log: (l) => logs.push(l) });
  const done = server.run();
  const replies = (): Reply[] => {
    const reader = new FrameReader();
    const events: ReaderEvent[] = reader.push(Buffer.concat(chunks));
    return events.map((e) => {
      if (e.kind !== 'frame') throw e.error;
      return { header: e.frame.header as Record<string, any>, payload: e.frame.payload };
    });
  };
  return { input, done, replies, logs };
}

function f32(payload: Uint8Array, d: { offset: number; nbytes: number }): Float32Array {
  return new Float32Array(payload.buffer, payload.byteOffset + d.offset, d.nbytes / 4);
}

describe('bridge protocol', () => {
  test('a request split at every byte boundary is parsed once, and its reply matches the direct call', async () => {
    const r = rng('bridge split');
    const logits = Float32Array.from({ length: 3 * 7 }, () => r.normal() * 3);
    const request = frame(
      { id: 5, op: 'tokenStats', args: [{ $tensor: 0 }, { tokens: [1, 2, 6] }], tensors: [{ dtype: 'float32', shape: [3, 7], offset: 0, nbytes: 84 }] },
      new Uint8Array(logits.buffer),
    );
    const s = start();
    for (let k = 0; k < request.length; k++) s.input.write(request.subarray(k, k + 1));
    s.input.end();
    expect(await s.done).toBe(0);
    const [reply] = s.replies();
    expect(reply.header.ok).toBe(true);
    expect(reply.header.id).toBe(5);
    const want = ae.tokenStatsSync(ae.tensor(logits, [3, 7]), { tokens: [1, 2, 6] });
    const descs = reply.header.tensors;
    for (const [name, ref] of Object.entries(reply.header.result as Record<string, { $tensor: number }>)) {
      const d = descs[ref.$tensor];
      expect(d.offset % ALIGN).toBe(0);
      expect(Array.from(f32(reply.payload, d))).toEqual(Array.from(want[name as keyof typeof want]!));
    }
  });

  test('float tensors arrive as dual arrays: a Tensor for logits, a TypedArray for flat arrays', async () => {
    const h = new Float32Array([0.5, 2, 1, 3]);
    const s = start();
    s.input.write(frame(
      { id: 1, op: 'entropyMask', args: [{ $tensor: 0 }, null, { topQuantile: 0.5 }], tensors: [{ dtype: 'float32', shape: [2, 2], offset: 0, nbytes: 16 }] },
      new Uint8Array(h.buffer),
    ));
    s.input.end();
    await s.done;
    const [reply] = s.replies();
    expect(reply.header.result.threshold).toBe(1.5);
    const d = reply.header.tensors[reply.header.result.mask.$tensor];
    expect(d.dtype).toBe('uint8');
    expect(Array.from(reply.payload.subarray(d.offset, d.offset + d.nbytes))).toEqual([0, 1, 0, 1]);
  });

  test('non-finite numbers travel as {$num}', async () => {
    const s = start();
    s.input.write(frame({ id: 1, op: 'numberToBf16', args: [{ $num: 'Infinity' }] }));
    s.input.write(frame({ id: 2, op: 'bf16ToNumber', args: [0xff80] }));
    s.input.end();
    await s.done;
    const byId = Object.fromEntries(s.replies().map((x) => [x.header.id, x.header.result]));
    expect(byId[1]).toBe(0x7f80);
    expect(byId[2]).toEqual({ $num: '-Infinity' });
  });

  test('an unknown op is answered with ERR_AE_UNKNOWN_OP and a suggestion; the server goes on', async () => {
    const s = start();
    s.input.write(frame({ id: 1, op: 'tokenStatz', args: [] }));
    s.input.write(frame({ id: 2, op: 'bf16ToNumber', args: [0x3f80] }));
    s.input.end();
    expect(await s.done).toBe(0);
    const [a, b] = s.replies().sort((x, y) => x.header.id - y.header.id);
    expect(a.header.error.code).toBe('ERR_AE_UNKNOWN_OP');
    expect(a.header.error.message).toContain("'tokenStats'");
    expect(b.header.result).toBe(1);
  });

  test('op errors keep their code and details', async () => {
    const s = start();
    s.input.write(frame(
      { id: 9, op: 'tokenStats', args: [{ $tensor: 0 }, { tokens: [4] }], tensors: [{ dtype: 'float32', shape: [1, 4], offset: 0, nbytes: 16 }] },
      new Uint8Array(16),
    ));
    s.input.end();
    await s.done;
    const [reply] = s.replies();
    expect(reply.header.error).toMatchObject({ code: 'ERR_AE_TOKEN_RANGE', param: 'opts.tokens[0]' });
  });

  test.each([
    [{ dtype: 'float128', shape: [1], offset: 0, nbytes: 16 }, 'dtype'],
    [{ dtype: 'float32', shape: [5], offset: 0, nbytes: 16 }, 'nbytes'],
    [{ dtype: 'float64', shape: [1], offset: 4, nbytes: 8 }, 'offset'],
    [{ dtype: 'float32', shape: [8], offset: 0, nbytes: 32 }, 'past the end'],
    [{ dtype: 'float32', shape: [1], offset: 0, nbytes: 4, shm: 'advantage-engine.1.a' }, 'shared memory'],
  ])('a bad descriptor %j is answered with ERR_AE_PROTOCOL', async (desc, fragment) => {
    const s = start();
    s.input.write(frame({ id: 3, op: 'entropyMask', args: [{ $tensor: 0 }, null, { topQuantile: 1 }], tensors: [desc] }, new Uint8Array(16)));
    s.input.write(frame({ id: 4, op: 'bf16ToNumber', args: [0] }));
    s.input.end();
    expect(await s.done).toBe(0);
    const replies = s.replies().sort((x, y) => x.header.id - y.header.id);
    expect(replies[0].header.error.code).toBe('ERR_AE_PROTOCOL');
    expect(replies[0].header.error.message).toContain(fragment);
    expect(replies[1].header.result).toBe(0);
  });

  test('a malformed header is answered (id null) and ends the connection, after running requests finish', async () => {
    const s = start();
    const logits = new Float32Array(64 * 2048).fill(1);
    s.input.write(frame(
      { id: 1, op: 'tokenStats', args: [{ $tensor: 0 }, { outputs: ['entropy'] }], tensors: [{ dtype: 'float32', shape: [64, 2048], offset: 0, nbytes: logits.byteLength }] },
      new Uint8Array(logits.buffer),
    ));
    const bad = Buffer.from('{"id": 2, "op"');
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32LE(bad.length);
    s.input.write(Buffer.concat([prefix, bad]));
    s.input.write(frame({ id: 3, op: 'bf16ToNumber', args: [0] })); // after the break: never read
    expect(await s.done).toBe(1);
    const replies = s.replies();
    expect(replies.map((x) => x.header.id).sort()).toEqual([1, null].sort());
    expect(replies.find((x) => x.header.id === null)!.header.error.code).toBe('ERR_AE_PROTOCOL');
    expect(replies.find((x) => x.header.id === 1)!.header.ok).toBe(true);
  });

  test('an oversized header length is refused before reading it', async () => {
    const s = start();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32LE(MAX_HEADER_BYTES + 1);
    s.input.write(prefix);
    expect(await s.done).toBe(1);
    const [reply] = s.replies();
    expect(reply.header).toMatchObject({ id: null, ok: false, error: { code: 'ERR_AE_PROTOCOL' } });
    expect(reply.header.error.message).toContain('over the limit');
  });

  test('a truncated payload is answered with the request id when the input ends', async () => {
    const s = start();
    const whole = frame({ id: 'x', op: 'bf16ToNumber', args: [0], payload: 100 }, new Uint8Array(100));
    s.input.write(whole.subarray(0, whole.length - 60));
    s.input.end();
    expect(await s.done).toBe(1);
    const [reply] = s.replies();
    expect(reply.header.id).toBe('x');
    expect(reply.header.error.code).toBe('ERR_AE_PROTOCOL');
    expect(reply.header.error.message).toContain('truncated payload');
  });

  test('a frame reader survives any chunking of several frames', () => {
    const r = rng('bridge chunks');
    const frames = Buffer.concat([1, 2, 3].map((id) => Buffer.concat(encodeFrame({ id }, [{ offset: 0, bytes: new Uint8Array(id * 100).fill(id) }]))));
    const reader = new FrameReader();
    const ids: unknown[] = [];
    for (let at = 0; at < frames.length;) {
      const n = 1 + r.int(97);
      for (const e of reader.push(frames.subarray(at, at + n))) if (e.kind === 'frame') ids.push(e.frame.header.id);
      at += n;
    }
    expect(ids).toEqual([1, 2, 3]);
    expect(reader.idle).toBe(true);
  });

  test('the op table serves every exported function and its Sync twin, and no class', () => {
    const { ops, constants } = buildOpTable();
    for (const name of ['tokenStats', 'tokenStatsSync', 'tokenStatsBackward', 'fullKl', 'tokenStatsPartial', 'mergeTokenStats', 'entropyMask', 'backendInfo', 'setBackend', 'setThreads']) {
      expect(ops.has(name)).toBe(true);
    }
    for (const [name, value] of Object.entries(ae)) {
      if (typeof value === 'function' && !/^class[\s{]/.test(Function.prototype.toString.call(value))) expect(ops.has(name)).toBe(true);
    }
    expect(ops.has('EngineError')).toBe(false);
    expect(constants.STAT_NAMES).toEqual([...ae.STAT_NAMES]);
  });
});
