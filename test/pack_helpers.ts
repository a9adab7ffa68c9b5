/**
 * Helpers for test/pack.test.ts: child runs with a clean environment, staging a copy of the package,
 * `npm pack`, a PATH with no compiler on it, and installing a tarball into a fresh consumer project.
 */
import { spawnSync, SpawnSyncOptions } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, '..');
export const PLATFORM_DIR = `${process.platform}-${process.arch}`;

/** The environment for child npm/node runs: this process's, minus the npm_* variables of the `npm test` around us. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('JEST_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: SpawnSyncOptions & { allowFail?: boolean } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300_000, ...opts });
  const result = { status: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  if (!opts.allowFail && (r.error || r.status !== 0)) {
    throw new Error(
      `${cmd} ${args.join(' ')} (cwd ${opts.cwd ?? process.cwd()}) failed: ${r.error?.message ?? `exit ${r.status}`}\n` +
        `--- stdout (tail) ---\n${result.stdout.slice(-4000)}\n--- stderr (tail) ---\n${result.stderr.slice(-4000)}`,
    );
  }
  return result;
}

/** The JSON array npm prints with --json (lifecycle script output may come before it). */
export function parseNpmJson(stdout: string): unknown {
  const start = stdout.search(/^\[/m);
  if (start < 0) throw new Error(`no JSON array in npm output:\n${stdout.slice(-2000)}`);
  return JSON.parse(stdout.slice(start));
}

/** Absolute path of a command on the current PATH. */
function which(name: string): string {
  const r = run('sh', ['-c', `command -v ${name}`], { env: cleanEnv() });
  return fs.realpathSync(r.stdout.trim());
}

function newestMtime(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const entry of fs.readdirSync(p)) {
    if (p.endsWith(`${path.sep}native`) && entry === 'test') continue;  // unit tests are not in the addon
    newest = Math.max(newest, newestMtime(path.join(p, entry)));
  }
  return newest;
}

/** The repo's prebuilt addons, when present and newer than everything they are built from. */
export function freshRepoPrebuilds(): string | undefined {
  const dir = path.join(ROOT, 'prebuilds', PLATFORM_DIR);
  if (!fs.existsSync(dir)) return undefined;
  const nodes = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
  if (nodes.length === 0) return undefined;
  const built = Math.min(...nodes.map((f) => fs.statSync(path.join(dir, f)).mtimeMs));
  const inputs = Math.max(
    ...['native', 'cuda', 'binding.gyp', 'package.json'].filter((p) => fs.existsSync(path.join(ROOT, p)))
      .map((p) => newestMtime(path.join(ROOT, p))),
  );
  return built >= inputs ? path.join(ROOT, 'prebuilds') : undefined;
}

// What a staged package needs: its `files`, plus what `prepare` (tsc) and `prebuild` (node-gyp) read.
// No `prebuilds`: a stage gets those only when the caller puts them there.
export const STAGE_ENTRIES = ['package.json', 'tsconfig.json', 'README.md', 'LICENSE', 'binding.gyp', 'lib', 'bench', 'examples', 'native', 'cuda'];

/** Copies `entries` (those that exist) from `from` into a new dir `stage`, and links the repo's node_modules there. */
export function stagePackage(stage: string, from: string = ROOT, entries: string[] = STAGE_ENTRIES): void {
  fs.mkdirSync(stage);
  for (const entry of entries) {
    const src = path.join(from, entry);
    if (fs.existsSync(src)) fs.cpSync(src, path.join(stage, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'), 'dir');
}

/** `npm pack` in `stage` into a new dir `dest`; returns the tarball's path and the files it holds. */
export function packStage(stage: string, dest: string, extraArgs: string[] = []): { tarball: string; files: string[] } {
  fs.mkdirSync(dest);
  const packed = run('npm', ['pack', '--json', '--pack-destination', dest, ...extraArgs], { cwd: stage, env: cleanEnv() });
  const meta = parseNpmJson(packed.stdout) as { filename: string; files: { path: string }[] }[];
  return { tarball: path.join(dest, meta[0].filename), files: meta[0].files.map((f) => f.path) };
}

/** An environment whose PATH (a new dir `bin`) holds node, npm and sh only: no compiler, no make, no python. */
export function noCompilerEnv(bin: string): NodeJS.ProcessEnv {
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync(which('npm'), path.join(bin, 'npm'));
  fs.symlinkSync(which('sh'), path.join(bin, 'sh'));
  const missing = path.join(path.dirname(bin), 'no-such-dir');
  return cleanEnv({
    PATH: bin,
    CC: path.join(missing, 'cc'),
    CXX: path.join(missing, 'c++'),
    npm_config_nodedir: missing,
    npm_config_update_notifier: 'false',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  });
}

/**
 * Creates a fresh consumer project in the new dir `project` and installs `tarball` there with install scripts
 * enabled and their output in the foreground: offline from the npm cache, falling back to --prefer-offline.
 * Throws (with the output's tail) when both fail. `output` is stdout + stderr of the install that counted.
 */
export function installTarball(
  tarball: string, project: string, env: NodeJS.ProcessEnv,
): RunResult & { mode: string; output: string; ranInstallScript: boolean } {
  fs.mkdirSync(project);
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'ae-pack-consumer', version: '1.0.0', private: true }, null, 2),
  );
  const installArgs = ['install', '--ignore-scripts=false', '--foreground-scripts', '--no-audit', '--no-fund', tarball];
  let install = run('npm', [...installArgs, '--offline'], { cwd: project, env, allowFail: true });
  let mode = '--offline';
  if (install.status !== 0) {
    install = run('npm', [...installArgs, '--prefer-offline'], { cwd: project, env });
    mode = '--prefer-offline (the npm cache lacked a dependency)';
  }
  const output = install.stdout + install.stderr;
  const ranInstallScript = /advantage-engine@[^\s]+ install/.test(output);
  return { ...install, mode, output, ranInstallScript };
}
