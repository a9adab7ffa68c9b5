/**
 * The published package, end to end (DESIGN.md "Shipping"): `npm pack` → install the tarball into a fresh
 * project with no compiler on PATH → the prebuilt CPU addon loads and computes; with the prebuilds removed
 * the JS backend serves and `backendInfo()` says why the cpu backend was skipped; and a tarball packed without
 * prebuilds/ still installs there (the `install` script's `||` fallback warns) and serves from the JS backend.
 *
 * Nothing here touches the working tree (other suites load build/Release while this runs): the package is
 * staged in a temp dir (sources + a node_modules symlink), `npm run prebuild` runs there unless the repo's
 * own prebuilds/ are newer than every native source, and `npm pack` runs there (its `prepare` is tsc).
 * The install is offline from the npm cache (the tarball's dependencies, node-addon-api and node-gyp-build,
 * are there after the repo's own install), falling back to --prefer-offline. Helpers: ./pack_helpers.ts.
 *
 * Slow (a native build + a few npm runs): about a minute; it has its own timeouts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  cleanEnv, freshRepoPrebuilds, installTarball, noCompilerEnv, packStage, parseNpmJson, PLATFORM_DIR, ROOT, run,
  stagePackage, STAGE_ENTRIES,
} from './pack_helpers';

const SETUP_TIMEOUT_MS = 420_000;
const STEP_TIMEOUT_MS = 120_000;

let work: string;
let stage: string;
let tarball: string;
let project: string;
let installedPkg: string;
let restrictedEnv: NodeJS.ProcessEnv;
let packedFiles: string[];
let prebuildSource: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ae-pack-'));

  // 1. Stage the package and give it the repo's node_modules (typescript, prebuildify, node-addon-api).
  stage = path.join(work, 'stage');
  stagePackage(stage);

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
  ({ tarball, files: packedFiles } = packStage(stage, path.join(work, 'pack')));
  expect(fs.existsSync(tarball)).toBe(true);

  // 4. A PATH with node, npm and sh only: no compiler, no make, no python.
  restrictedEnv = noCompilerEnv(path.join(work, 'bin'));

  // 5. A fresh project; install the tarball offline with install scripts enabled.
  project = path.join(work, 'project');
  const install = installTarball(tarball, project, restrictedEnv);
  console.log(`pack test: installed ${path.basename(tarball)} ${install.mode}; package install script ran: ${install.ranInstallScript}`);
  installedPkg = path.join(project, 'node_modules', 'advantage-engine');
}, SETUP_TIMEOUT_MS);

afterAll(() => {
  if (work && !process.env.AE_KEEP_PACK_DIR) fs.rmSync(work, { recursive: true, force: true });
});

/** Runs a script in a consumer project (restricted PATH) on uniform rows of `vocab` logits; returns what it printed. */
function probe(cwd: string = project, vocab = 4099): {
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
    const V = ${vocab}, N = 3;
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
  const out = run('node', ['-e', script], { cwd, env: restrictedEnv });
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
  // dist/examples: the modules of the `train-demo` and `train-early-exit` commands (the examples they run).
  const allowed = /^(package\.json|README\.md|LICENSE|binding\.gyp|dist\/lib\/|dist\/bench\/|dist\/examples\/(train-grpo|policy_mlp|chart_svg|train-early-exit)\.|prebuilds\/|native\/|cuda\/)/;
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

test(
  'a tarball without prebuilds installs without a compiler: the install warns, succeeds, and the js backend serves',
  () => {
    // A copy of the stage with no prebuilds/; its dist/ is what the first pack's `prepare` compiled, so the pack
    // skips scripts (no second tsc run).
    const bare = path.join(work, 'stage-no-prebuilds');
    stagePackage(bare, stage, [...STAGE_ENTRIES, 'dist']);
    expect(fs.existsSync(path.join(bare, 'prebuilds'))).toBe(false);
    const packed = packStage(bare, path.join(work, 'pack-no-prebuilds'), ['--ignore-scripts']);
    expect(packed.files).toEqual(expect.arrayContaining(['dist/lib/index.js', 'binding.gyp']));
    expect(packed.files.filter((f) => f.startsWith('prebuilds/') || f.endsWith('.node'))).toEqual([]);

    // node-gyp-build finds no prebuild and cannot compile; the `||` fallback warns and the install succeeds.
    const bareProject = path.join(work, 'project-no-prebuilds');
    const install = installTarball(packed.tarball, bareProject, restrictedEnv);
    expect(install.status).toBe(0);
    expect(install.ranInstallScript).toBe(true);
    expect(install.output).toContain(
      'advantage-engine: the native addon could not be built or loaded; the js backend will serve (see backendInfo())',
    );
    const pkg = path.join(bareProject, 'node_modules', 'advantage-engine');
    expect(fs.existsSync(path.join(pkg, 'prebuilds'))).toBe(false);
    expect(fs.existsSync(path.join(pkg, 'build', 'Release', 'advantage_engine.node'))).toBe(false);

    const p = probe(bareProject, 50);
    expect({ active: p.active, loaded: p.loaded }).toEqual({ active: 'js', loaded: false });
    expect(p.attempts.length).toBeGreaterThan(0);
    for (const a of p.attempts) expect(a.code).toMatch(/^ERR_/);
    expect((p.skippedCpu ?? '').length).toBeGreaterThan(10);
    expect(p.entropy.length).toBe(3);
    for (const e of p.entropy) expect(Math.abs(e - Math.log(50))).toBeLessThanOrEqual(1e-6);
    expect(p.explicitCpu).toEqual({ ok: false, code: 'ERR_AE_BACKEND_UNAVAILABLE' });
  },
  STEP_TIMEOUT_MS,
);
