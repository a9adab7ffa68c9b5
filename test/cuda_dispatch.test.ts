/**
 * `backend: 'cuda'` on the public ops (lib/backend.ts resolveCudaBackend / requireCuda), with the emulation
 * build as the CUDA addon (ADVANTAGE_ENGINE_CUDA_ADDON, probed once at the start of this file):
 *   - tokenStats, tokenStatsBackward and fullKl run the device's ops (lib/cuda.ts): bitwise what cudaDevice()
 *     returns, within the SPEC §1 bound of the float64 reference, Sync and async alike; policyLoss runs its
 *     CUDA kernels (its numerics are test/cuda_emulation_policy_loss.test.ts's);
 *   - 'auto' (and no option) never picks cuda: no kernel launches on the emulator;
 *   - precision 'f64' on cuda and an engine-wide 'cuda' throw coded errors saying why;
 *   - CUDA_OPS is exactly the public ops with a `backend` option (read from lib/index.ts's types), so no public
 *     op takes 'cuda' without kernels behind it; the cpu / js resolution still refuses 'cuda' with the list.
 * Without a CUDA addon, backend 'cuda' throws ERR_AE_BACKEND_UNAVAILABLE with the reason: cuda_build.test.ts.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as ts from 'typescript';
import * as ae from '../lib';
import { CUDA_OPS, resolveBackend } from '../lib/backend';
import { cudaDevice, cudaStatus } from '../lib/cuda';
import { refFullKl, refTokenStats, refTokenStatsBackward } from './ref/token_stats';
import { makeBatch } from './ref/policy_loss';
import { makeLogits, rng, STATS_TOL } from './helpers';

const ROOT = path.resolve(__dirname, '..');
const TOOLCHAIN = ['cmake', 'c++'].every((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);
if (!TOOLCHAIN) console.log('cuda dispatch tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN && process.env.AE_CUDA_TEST !== 'gpu' ? describe : describe.skip;

interface Counters {
  emuCounters(): { launches: number };
}

beforeAll(() => {
  if (!TOOLCHAIN || process.env.AE_CUDA_TEST === 'gpu') return;
  const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build_cuda.js'), '--emulation'], { cwd: ROOT, encoding: 'utf8', timeout: 900_000 });
  if (build.status !== 0) throw new Error(`emulation build failed:\n${build.stdout}\n${build.stderr}`);
  const saved = process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
  process.env.ADVANTAGE_ENGINE_CUDA_ADDON = build.stdout.trim().split('\n').pop()!;
  try {
    expect(cudaStatus()).toMatchObject({ available: true, info: { build: 'emulation' } });
  } finally {
    if (saved === undefined) delete process.env.ADVANTAGE_ENGINE_CUDA_ADDON;
    else process.env.ADVANTAGE_ENGINE_CUDA_ADDON = saved;
  }
}, 900_000);

const launches = () => (cudaDevice().addon as unknown as Counters).emuCounters().launches;

maybe('backend: cuda on the ops with CUDA kernels', () => {
  test('tokenStats: the device op, bitwise; the reference; async equals Sync', async () => {
    const { logits, tokens } = makeLogits(rng('dispatch forward'), [5, 333], 'bf16');
    const before = launches();
    const got = ae.tokenStatsSync(logits, { tokens, temperature: 0.7, backend: 'cuda' });
    expect(launches()).toBeGreaterThan(before);
    const direct = cudaDevice().tokenStatsSync(logits, { tokens, temperature: 0.7 });
    const ref = refTokenStats(logits, { tokens, temperature: 0.7 });
    for (const key of ['entropy', 'logprob', 'logsumexp', 'sumPiSquared', 'maxProb'] as const) {
      expect(got[key]).toEqualBitwise(direct[key]!, key);
      expect(got[key]).toMatchReference(ref[key]!, STATS_TOL, key);
    }
    const viaPromise = await ae.tokenStats(logits, { tokens, temperature: 0.7, backend: 'cuda' });
    expect(viaPromise.entropy).toEqualBitwise(got.entropy!, 'async entropy');
  });

  test('tokenStatsBackward: the device op into a host array, bitwise; the reference', () => {
    const { logits, tokens } = makeLogits(rng('dispatch backward'), [4, 101], 'f32');
    const r = rng('dispatch backward grads');
    const gradLogprob = Float32Array.from({ length: 4 }, () => r.normal());
    const gradEntropy = Float32Array.from({ length: 4 }, () => r.normal());
    const got = ae.tokenStatsBackwardSync(logits, { tokens, gradLogprob, gradEntropy, backend: 'cuda' });
    expect(got).toBeInstanceOf(Float32Array);
    const direct = cudaDevice().tokenStatsBackwardSync(logits, { tokens, gradLogprob, gradEntropy }) as Float32Array;
    expect(got).toEqualBitwise(direct, 'gradient');
    const ref = refTokenStatsBackward(logits, { tokens, gradLogprob, gradEntropy });
    expect(got).toMatchReference(ref, STATS_TOL, 'gradient');
  });

  test('fullKl: the device op, bitwise; the reference', async () => {
    const p = makeLogits(rng('dispatch kl p'), [3, 77], 'f16').logits;
    const q = makeLogits(rng('dispatch kl q'), [3, 77], 'f16').logits;
    const got = await ae.fullKl(p, q, { backend: 'cuda' });
    expect(got).toEqualBitwise(cudaDevice().fullKlSync(p, q), 'kl');
    expect(got).toMatchReference(refFullKl(p, q), STATS_TOL, 'kl');
  });

  test('policyLoss runs its CUDA kernels', () => {
    const batch = makeBatch(rng('dispatch policy'), { B: 4, T: 10 });
    const inputs = { logprob: batch.logprob, oldLogprob: batch.oldLogprob, advantages: batch.advantages, mask: batch.mask, shape: [4, 10] } as Parameters<typeof ae.policyLossSync>[0];
    const before = launches();
    const got = ae.policyLossSync(inputs, { backend: 'cuda' });
    expect(launches() - before).toBe(2); // the counts pass and the token pass
    const js = ae.policyLossSync(inputs, { backend: 'js' });
    expect(Math.abs(got.loss - js.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(js.loss)));
  });

  test("precision 'f64' is refused on cuda with the reason", () => {
    const { logits } = makeLogits(rng('dispatch f64'), [2, 16], 'f32');
    expect(() => ae.tokenStatsSync(logits, { backend: 'cuda', precision: 'f64' } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }),
    );
    expect(() => ae.fullKlSync(logits, logits, { backend: 'cuda', precision: 'f64' } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }),
    );
  });
});

maybe('auto and engine-wide cuda', () => {
  test("'auto' and no option never launch on the device, even with one available", () => {
    const info = ae.backendInfo();
    expect(info.cuda.available).toBe(true);
    expect(['cpu', 'js']).toContain(info.active);
    expect(info.skipped.cuda).toMatch(/available per call \(backend: 'cuda'\) for tokenStats, tokenStatsBackward, tokenStatsPartial, fullKl, policyLoss/);
    const { logits, tokens } = makeLogits(rng('dispatch auto'), [64, 256], 'f32');
    const batch = makeBatch(rng('dispatch auto policy'), { B: 64, T: 64 });
    const before = launches();
    ae.tokenStatsSync(logits, { tokens });
    ae.tokenStatsSync(logits, { tokens, backend: 'auto' });
    ae.fullKlSync(logits, logits);
    ae.policyLossSync({ logprob: batch.logprob, oldLogprob: batch.oldLogprob, advantages: batch.advantages, mask: batch.mask, shape: [64, 64] } as never);
    expect(launches()).toBe(before);
  });

  test("'cuda' cannot be selected engine-wide (setBackend)", () => {
    expect(() => ae.setBackend('cuda')).toThrow(expect.objectContaining({
      code: 'ERR_AE_BACKEND_UNAVAILABLE', param: 'backend', message: expect.stringMatching(/per call/),
    }));
    expect(ae.backendInfo().requested).toBe('auto');
  });
});

/**
 * The public ops whose parameters take an object with a `backend` property, by name (a `…Sync` twin under its
 * async name), read from the types lib/index.ts exports: functions at the top level and in exported namespaces
 * such as `rewards`. The async/sync wrappers type their parameters as a rest tuple, whose elements are looked into.
 */
function opsWithBackendOption(): string[] {
  const file = path.join(ROOT, 'lib', 'index.ts');
  const program = ts.createProgram([file], {
    strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, types: ['node'], skipLibCheck: true, noEmit: true,
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file)!;
  const found = new Set<string>();
  const hasBackend = (t: ts.Type): boolean => {
    if (t.isUnionOrIntersection()) return t.types.some(hasBackend);
    if (checker.isTupleType(t)) return checker.getTypeArguments(t as ts.TypeReference).some(hasBackend);
    return checker.getPropertyOfType(t, 'backend') !== undefined;
  };
  const visit = (symbol: ts.Symbol, depth: number): void => {
    const s = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    const type = checker.getTypeOfSymbolAtLocation(s, source);
    const signatures = type.getCallSignatures();
    const params = signatures.flatMap((sig) => sig.getParameters());
    if (params.some((p) => hasBackend(checker.getNonNullableType(checker.getTypeOfSymbolAtLocation(p, source))))) {
      found.add(symbol.name.replace(/Sync$/, ''));
    }
    if (depth === 0 && signatures.length === 0) for (const member of type.getProperties()) visit(member, 1);
  };
  for (const symbol of checker.getExportsOfModule(checker.getSymbolAtLocation(source)!)) visit(symbol, 0);
  return [...found].sort();
}

describe('CUDA_OPS and the public ops', () => {
  test("CUDA_OPS is exactly the public ops with a backend option: none takes 'cuda' without CUDA kernels", () => {
    const exported = { ...ae, ...ae.rewards } as Record<string, unknown>;
    for (const op of CUDA_OPS) {
      expect([op, typeof exported[op], typeof exported[`${op}Sync`]]).toEqual([op, 'function', 'function']);
    }
    const withBackend = opsWithBackendOption();
    // The exit monitor's backend is the backend of the tokenStats it runs on logits (in CUDA_OPS).
    expect(withBackend).toContain('createExitMonitor');
    expect(withBackend.filter((op) => op !== 'createExitMonitor')).toEqual([...CUDA_OPS].sort());
  }, 60_000);

  test("the cpu / js resolution refuses 'cuda' with the ops that have CUDA kernels", () => {
    expect(() => resolveBackend('cuda', 1000, false)).toThrow(expect.objectContaining({
      code: 'ERR_AE_BACKEND_UNAVAILABLE', param: 'opts.backend',
      message: expect.stringMatching(/no CUDA kernels.*tokenStats, tokenStatsBackward, tokenStatsPartial, fullKl, policyLoss/),
    }));
  });
});
