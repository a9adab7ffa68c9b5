/**
 * The published package, end to end (DESIGN.md "Shipping"): `npm pack` → install the tarball into a fresh
 * project with no compiler on PATH → the prebuilt CPU addon loads and computes; with the prebuilds removed
 * the JS backend serves and `backendInfo()` says why the cpu backend was skipped.
 *
 * Nothing here touches the working tree (other suites load build/Release while this runs): the package is
 * staged in a temp dir (sources + a node_modules symlink), `npm run prebuild` runs there unless the repo's
 * own prebuilds/ are newer than every native source, and `npm pack` runs there (its `prepare` is tsc).
 * The install is offline from the npm cache (the tarball's dependencies, node-addon-api and node-gyp-build,
 * are there after the repo's own install), falling back to --prefer-offline.
 *
 * Slow (a native build + two npm runs): about a minute; it has its own timeouts.
 */
import { spawnSync, SpawnSyncOptions } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const PLATFORM_DIR = `${process.platform}-${process.arch}`;
const SETUP_TIMEOUT_MS = 420_000;
const STEP_TIMEOUT_MS = 120_000;

/** The environment for child npm/node runs: this process's, minus the npm_* variables of the `npm test` around us. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('JEST_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: SpawnSyncOptions & { allowFail?: boolean } = {}): RunResult {
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
function parseNpmJson(stdout: string): unknown {
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
function freshRepoPrebuilds(): string | undefined {
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

// What the staged package needs: its `files`, plus what `prepare` (tsc) and `prebuild` (node-gyp) read.
const STAGE_ENTRIES = ['package.json', 'tsconfig.json', 'README.md', 'LICENSE', 'binding.gyp', 'lib', 'bench', 'examples', 'native', 'cuda'];

let work: string;
let tarball: string;
let project: string;
let installedPkg: string;
let restrictedEnv: NodeJS.ProcessEnv;
let packedFiles: string[];
let prebuildSource: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ae-pack-'));

  // 1. Stage the package and give it the repo's node_modules (typescript, prebuildify, node-addon-api).
  const stage = path.join(work, 'stage');
  fs.mkdirSync(stage);
  for (const entry of STAGE_ENTRIES) {
    const from = path.join(ROOT, entry);
    if (fs.existsSync(from)) fs.cpSync(from, path.join(stage, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'), 'dir');

  // 2. Prebuilds: the repo's when fresh, else `npm run prebuild` in the stage.
  const repoPrebuilds = freshRepoPrebuilds();
  if (repoPrebuilds) {
    fs.cpSync(repoPrebuilds, path.join(stage, 'prebuilds'), { recursive: true });
    prebuildSource = `repo ${repoPrebuilds}`;
  } else {
    run('npm', ['run', 'prebuild'], { cwd: stage, env: cleanEnv() });
    prebuildSource = 'npm run prebuild (staged)';
  }
  console.log(`pack test: prebuilds from ${prebuildSource}; work dir ${work}`);
  const stagedNodes = fs.readdirSync(path.join(stage, 'prebuilds', PLATFORM_DIR)).filter((f) => f.endsWith('.node'));
  expect(stagedNodes.length).toBeGreaterThan(0);

  // 3. npm pack (runs `prepare`: tsc into the stage's dist/).
  const packDir = path.join(work, 'pack');
  fs.mkdirSync(packDir);
  const packed = run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: stage, env: cleanEnv() });
  const meta = parseNpmJson(packed.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(packDir, meta[0].filename);
  packedFiles = meta[0].files.map((f) => f.path);
  expect(fs.existsSync(tarball)).toBe(true);

  // 4. A PATH with node, npm and sh only: no compiler, no make, no python.
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync(which('npm'), path.join(bin, 'npm'));
  fs.symlinkSync(which('sh'), path.join(bin, 'sh'));
  const missing = path.join(work, 'no-such-dir');
  restrictedEnv = cleanEnv({
    PATH: bin,
    CC: path.join(missing, 'cc'),
    CXX: path.join(missing, 'c++'),
    npm_config_nodedir: missing,
    npm_config_update_notifier: 'false',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  });

  // 5. A fresh project; install the tarball offline with install scripts enabled.
  project = path.join(work, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'ae-pack-consumer', version: '1.0.0', private: true }, null, 2),
  );
  const installArgs = ['install', '--ignore-scripts=false', '--foreground-scripts', '--no-audit', '--no-fund', tarball];
  let install = run('npm', [...installArgs, '--offline'], { cwd: project, env: restrictedEnv, allowFail: true });
  let mode = '--offline';
  if (install.status !== 0) {
    install = run('npm', [...installArgs, '--prefer-offline'], { cwd: project, env: restrictedEnv });
    mode = '--prefer-offline (the npm cache lacked a dependency)';
  }
  const ranInstallScript = /advantage-engine@[^\s]+ install/.test(install.stdout + install.stderr);
  console.log(`pack test: installed ${path.basename(tarball)} ${mode}; package install script ran: ${ranInstallScript}`);
  installedPkg = path.join(project, 'node_modules', 'advantage-engine');
}, SETUP_TIMEOUT_MS);

afterAll(() => {
  if (work && !process.env.AE_KEEP_PACK_DIR) fs.rmSync(work, { recursive: true, force: true });
});

/** Runs a script in the consumer project (restricted PATH) and returns what it printed as JSON. */
function probe(): {
  active: string;
  loaded: boolean;
  path?: string;
  skippedCpu?: string;
  attempts: { candidate: string; code: string; message: string }[];
  entropy: number[];
  logprob: number[];
  bf16Entropy: number[];
  explicitCpu: { ok: boolean; code?: string; entropy?: number[] };
  vocab: number;
} {
  const script = `
    const ae = require('advantage-engine');
    const info = ae.backendInfo();
    const V = 4099, N = 3;
    const data = new Float32Array(N * V);
    data.fill(0.5, 0, V); data.fill(-7, V, 2 * V); data.fill(1000, 2 * V);  // uniform rows at three offsets
    const logits = ae.tensor(data, [N, V], 'f32');
    const r = ae.tokenStatsSync(logits, { tokens: [0, 17, V - 1] });
    const bf = new Uint16Array(N * V).fill(ae.numberToBf16(0.25));
    const rb = ae.tokenStatsSync(ae.tensor(bf, [N, V], 'bf16'));
    let explicitCpu;
    try {
      explicitCpu = { ok: true, entropy: Array.from(ae.tokenStatsSync(logits, { backend: 'cpu' }).entropy) };
    } catch (e) {
      explicitCpu = { ok: false, code: e.code };
    }
    process.stdout.write(JSON.stringify({
      active: info.active, loaded: info.native.loaded, path: info.native.path, skippedCpu: info.skipped.cpu,
      attempts: info.native.attempts, entropy: Array.from(r.entropy), logprob: Array.from(r.logprob),
      bf16Entropy: Array.from(rb.entropy), explicitCpu, vocab: V,
    }));
  `;
  const out = run('node', ['-e', script], { cwd: project, env: restrictedEnv });
  return JSON.parse(out.stdout);
}

function expectUniform(values: number[], want: number): void {
  for (const v of values) expect(Math.abs(v - want)).toBeLessThanOrEqual(Math.max(1e-6, 1e-5 * Math.abs(want)));
}

test('the restricted PATH has no compiler', () => {
  for (const tool of ['g++', 'gcc', 'cc', 'c++', 'make', 'clang++', 'python3']) {
    const r = run('/usr/bin/which', [tool], { env: restrictedEnv, allowFail: true });
    expect({ tool, status: r.status, found: r.stdout.trim() }).toEqual({ tool, status: 1, found: '' });
  }
  const sh = run('sh', ['-c', 'command -v g++ || command -v make || echo none'], { env: restrictedEnv });
  expect(sh.stdout.trim()).toBe('none');
});

test('the tarball holds the compiled API and the prebuilt addon, and nothing from the dev tree', () => {
  expect(packedFiles).toEqual(expect.arrayContaining(['package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'binding.gyp']));
  const prebuilt = packedFiles.filter((f) => f.startsWith(`prebuilds/${PLATFORM_DIR}/`) && f.endsWith('.node'));
  expect(prebuilt.length).toBeGreaterThan(0);
  // The only binaries are the prebuilds; no build dirs, tests, node_modules or tarballs.
  expect(packedFiles.filter((f) => f.endsWith('.node') && !f.startsWith('prebuilds/'))).toEqual([]);
  expect(packedFiles.filter((f) => /^(build|build-cmake[^/]*|node_modules|test|coverage)\//.test(f) || f.endsWith('.tgz'))).toEqual([]);
});

test('the repo itself publishes only its `files` (npm pack --dry-run in the working tree)', () => {
  const r = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env: cleanEnv() });
  const files = (parseNpmJson(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  const allowed = /^(package\.json|README\.md|LICENSE|binding\.gyp|dist\/lib\/|dist\/bench\/|prebuilds\/|native\/|cuda\/)/;
  expect(files.filter((f) => !allowed.test(f))).toEqual([]);
  expect(files.filter((f) => /^(build|build-cmake[^/]*|node_modules)\//.test(f))).toEqual([]);
});

test(
  'installed without a compiler: the prebuilt cpu addon loads and computes',
  () => {
    // node-gyp-build found the prebuild at install time: nothing was compiled.
    expect(fs.existsSync(path.join(installedPkg, 'build'))).toBe(false);
    expect(fs.readdirSync(path.join(installedPkg, 'prebuilds', PLATFORM_DIR)).some((f) => f.endsWith('.node'))).toBe(true);

    const p = probe();
    expect({ active: p.active, loaded: p.loaded }).toEqual({ active: 'cpu', loaded: true });
    expect(p.path).toContain(path.join('node_modules', 'advantage-engine', 'prebuilds', PLATFORM_DIR));
    expect(p.skippedCpu).toBeUndefined();
    const logV = Math.log(p.vocab);
    expectUniform(p.entropy, logV);
    expectUniform(p.logprob, -logV);
    expectUniform(p.bf16Entropy, logV);
    expect(p.explicitCpu.ok).toBe(true);
    expectUniform(p.explicitCpu.entropy ?? [], logV);
  },
  STEP_TIMEOUT_MS,
);

test(
  'prebuilds removed: the js backend serves and backendInfo() says why cpu was skipped',
  () => {
    fs.rmSync(path.join(installedPkg, 'prebuilds'), { recursive: true, force: true });
    const p = probe();
    expect({ active: p.active, loaded: p.loaded }).toEqual({ active: 'js', loaded: false });
    expect(typeof p.skippedCpu).toBe('string');
    expect((p.skippedCpu ?? '').length).toBeGreaterThan(10);
    expect(p.attempts.length).toBeGreaterThan(0);
    expect(p.attempts[0].code).toMatch(/^ERR_/);
    const logV = Math.log(p.vocab);
    expectUniform(p.entropy, logV);
    expectUniform(p.logprob, -logV);
    expectUniform(p.bf16Entropy, logV);
    expect(p.explicitCpu).toEqual({ ok: false, code: 'ERR_AE_BACKEND_UNAVAILABLE' });
  },
  STEP_TIMEOUT_MS,
);
