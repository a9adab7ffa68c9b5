/**
 * `advantage-engine serve --stdio`: the bridge server (server.ts) on the process's stdin / stdout, for the
 * Python client (python/advantage_engine) that starts it. stdout carries protocol bytes only: console.log
 * and any stray write to process.stdout go to stderr while serving.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as util from 'util';
import type { Writable } from 'stream';
import { backendInfo, nativeAddon } from '../backend';
import { PROGRAM, parseFlags, UsageError } from '../cli_args';
import { BridgeServer } from './server';
import { SharedMemory, sweepSegments } from './shm';

export const HELP_SERVE = `Usage: ${PROGRAM} serve --stdio [--no-shm]

Serves the engine's API to one client over stdin / stdout: the Python package advantage_engine starts this
command and calls every op by name (frames of u32 LE header length | JSON header | payload; DESIGN.md,
"The Python bridge"). Logs go to stderr. Runs until stdin ends, then exits 0 (1 after a protocol error
that ended the connection, or when the client vanished).

Large tensors travel through shared-memory segments /dev/shm/advantage-engine.<pid>.<n> when the native
addon is loaded (otherwise through the pipe). Segments left by dead processes are removed at start.

Options:
  --stdio      the transport (the only one; required)
  --no-shm     never map or create shared-memory segments (every tensor through the pipe)
  -h, --help   this text`;

/** A non-blocking writer on fd 1: process.stdout on a pipe writes synchronously, which would stall every
 * running request while the client is busy writing a large request of its own. */
function protocolOutput(): Writable {
  const stat = fs.fstatSync(1);
  if (stat.isFIFO() || stat.isSocket()) return new net.Socket({ fd: 1, readable: false, writable: true });
  return fs.createWriteStream('', { fd: 1 });
}

function logsToStderr(): void {
  const write = (...args: unknown[]) => {
    process.stderr.write(util.format(...args) + '\n');
  };
  console.log = write;
  console.info = write;
  console.debug = write;
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => process.stderr });
}

function packageVersion(): string {
  for (const up of ['..', '../..', '../../..']) {
    try {
      const file = path.resolve(__dirname, up, 'package.json');
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'advantage-engine') return pkg.version ?? 'unknown';
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

export async function runServe(args: readonly string[]): Promise<number> {
  const flags = parseFlags('serve', args, [], ['stdio', 'no-shm', 'help']);
  if (flags.has('help')) {
    console.log(HELP_SERVE);
    return 0;
  }
  if (!flags.has('stdio')) throw new UsageError('serve: --stdio is required (the only transport)');
  const output = protocolOutput();
  logsToStderr();
  // Logs are best effort: a client that died takes the read end of stderr with it, and an EPIPE there must
  // not stop the server before it has cleaned up.
  process.stderr.on('error', () => {});
  const log = (line: string) => {
    process.stderr.write(line + '\n');
  };
  const loaded = backendInfo().native.loaded;
  const shm = new SharedMemory(loaded ? nativeAddon() : null, flags.has('no-shm') ? 'disabled by --no-shm' : undefined);
  if (!shm.available) log(`advantage-engine serve: shared memory off (${shm.unavailable}); tensors travel through the pipe`);
  else sweepSegments();
  const server = new BridgeServer({ input: process.stdin, output, shm, log, version: packageVersion() });
  // A signal still removes this server's own segments (the 'exit' handler runs on process.exit).
  const onSignal = (signal: NodeJS.Signals) => {
    shm.close();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15));
  };
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  const onExit = () => shm.close();
  process.on('exit', onExit);
  const code = await server.run();
  for (const s of signals) process.off(s, onSignal);
  return code;
}
