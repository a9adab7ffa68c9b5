/**
 * The CUDA policy losses (cuda/policy_loss_kernels.cuh, cuda/policy_loss.cu), verified without a GPU: the kernels
 * compiled for the CPU emulation of the CUDA execution model (cuda/emu/: a fiber per CUDA thread, real barriers,
 * warp shuffles, race-checked shared memory, checked global accesses) and reached through the public op,
 * `policyLoss(…, {backend: 'cuda'})`, with ADVANTAGE_ENGINE_CUDA_ADDON pointing at the emulation build. Checked:
 *   - every mode × every aggregation against the float64 reference (test/ref/policy_loss.ts) on fresh random
 *     inputs, at the CPU tests' tolerance (1e-5 of each token's Σ|terms|), bitwise the same under forward,
 *     reverse and random thread schedules, and within the CPU tests' parity tolerance of the js backend;
 *   - the extras: each KL estimator, klClamp off, the entropy bonus, importance weights [B] and [B·T], a token
 *     mask, the data-parallel divisors, rollout correction (its kernel, then the loss, on the device);
 *   - rows longer than a block (several tokens per thread), rows of length 1, fully masked rows, batches with
 *     no valid token, B = 0 and T = 0; more rows than the (emulation's) grid: blocks loop over rows;
 *   - errors: a mask entry other than 0/1 (before anything is written), a non-finite input at a valid token,
 *     precision 'f64'; the async form equals the Sync one.
 * On a machine with a GPU, `npm run test:gpu` (AE_CUDA_TEST=gpu) runs the same cases on the device.
 */
import * as ae from '../lib';
import {
  AGGREGATIONS, Aggregation, Batch, KL_ESTIMATORS, makeBatch, Mode, MODE_CASES, MODES, 
  RefPolicy, RefPolicyMetrics, RefPolicyOptions, refPolicyLoss,
} from './ref/policy_loss';
import { rng, SEED } from './helpers';
import { EmulatorControls, loadCudaBackend, TOOLCHAIN, underEverySchedule } from './cuda_setup';
import { batchFor, engineOpts, inputsOf, Inputs, Options, Result, tolerance } from './policy_loss_cases';

if (!TOOLCHAIN) console.log('cuda policy-loss emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

afterEach(() => emu?.emuSetSchedule(2, SEED));


/** The CPU tests' tolerances (test/policy_loss.test.ts): against the reference, and backend against backend. */
const F32_RTOL = 1e-5;
const PARITY_RTOL = 1e-6;
const PARITY_TOKEN_RTOL = 5e-6;

function near(label: string, name: string, got: number, want: number, allowed: number): void {
  if (!(Math.abs(got - want) <= allowed)) throw new Error(`${label}: ${name} = ${got}, expected ${want} (allowed ${allowed}, seed ${SEED})`);
}

function expectMetrics(got: Result['metrics'], ref: RefPolicyMetrics, batch: Batch, label: string) {
  let delta = 0;
  let entropy = 0;
  let n = 0;
  for (let i = 0; i < batch.mask.length; i++) {
    if (batch.mask[i] === 0) continue;
    n++;
    delta += Math.abs(batch.logprob[i] - batch.oldLogprob[i]);
    if (batch.entropy) entropy += Math.abs(batch.entropy[i]);
  }
  for (const name of ['clipFraction', 'clipFractionLow', 'clipFractionHigh', 'dualClipFraction'] as const) near(label, name, got[name], ref[name], 1e-6);
  near(label, 'approxKl', got.approxKl, ref.approxKl, (F32_RTOL * delta) / Math.max(n, 1) + 1e-12);
  for (const name of ['ratioMean', 'ratioMin', 'ratioMax'] as const) near(label, name, got[name], ref[name], F32_RTOL * Math.abs(ref[name]) + 1e-12);
  near(label, 'validTokens', got.validTokens, ref.validTokens, 0);
  expect(got.emptyBatch).toBe(ref.emptyBatch);
  if (ref.entropyMean !== undefined) near(label, 'entropyMean', got.entropyMean!, ref.entropyMean, (F32_RTOL * entropy) / Math.max(n, 1) + 1e-12);
  if (ref.klMean !== undefined) near(label, 'klMean', got.klMean!, ref.klMean, F32_RTOL * 10 + 1e-12);
  if (ref.covFraction !== undefined) near(label, 'covFraction', got.covFraction!, ref.covFraction, 1e-6);
}

function expectMatches(got: Result, ref: RefPolicy, batch: Batch, label: string) {
  expect(got.tokenLoss).toBeInstanceOf(Float32Array);
  expect(got.tokenLoss).toMatchReference(ref.tokenLoss, tolerance(ref.tokenLossScale, batch.mask, F32_RTOL), `${label} tokenLoss`);
  expect(got.gradLogprob).toMatchReference(ref.gradLogprob, tolerance(ref.gradScale, batch.mask, F32_RTOL), `${label} gradLogprob`);
  if (ref.gradEntropy) expect(got.gradEntropy).toMatchReference(ref.gradEntropy, { rtol: F32_RTOL, atol: 0 }, `${label} gradEntropy`);
  else expect(got.gradEntropy).toBeUndefined();
  near(label, 'loss', got.loss, ref.loss, F32_RTOL * ref.lossScale + 1e-300);
  expectMetrics(got.metrics, ref.metrics, batch, label);
}

/**
 * Backend against backend at the CPU tests' parity tolerance, on the reference's scales; with `ownScale` also
 * relative to b's own values (where the reference does not model the option, its scales do not bound them).
 */
function expectParity(a: Result, b: Result, ref: RefPolicy, batch: Batch, label: string, ownScale = false) {
  const widen = (tol: (r: number, i: number) => number) => (ownScale ? (r: number, i: number) => tol(r, i) + PARITY_TOKEN_RTOL * Math.abs(r) : tol);
  expect(a.tokenLoss).toMatchReference(b.tokenLoss, widen(tolerance(ref.tokenLossScale, batch.mask, PARITY_TOKEN_RTOL)), `${label} tokenLoss`);
  expect(a.gradLogprob).toMatchReference(b.gradLogprob, widen(tolerance(ref.gradScale, batch.mask, PARITY_TOKEN_RTOL)), `${label} gradLogprob`);
  if (ref.gradEntropy) expect(a.gradEntropy).toMatchReference(b.gradEntropy!, { rtol: PARITY_RTOL, atol: 0 }, `${label} gradEntropy`);
  near(label, 'loss vs js', a.loss, b.loss, PARITY_RTOL * (ref.lossScale + (ownScale ? Math.abs(b.loss) : 0)));
}

/**
 * The cuda result (under every schedule), the js result and the reference. clipCov: the selection (made on the
 * host, the same on every backend for a seed) is read from a run without the extras, where a chosen token's loss
 * is exactly 0.
 */
function runAll(label: string, batch: Batch, opts: RefPolicyOptions) {
  const got = underEverySchedule(emu, SEED, label, () => ae.policyLossSync(inputsOf(batch), engineOpts(opts, { backend: 'cuda' })));
  const js = ae.policyLossSync(inputsOf(batch), engineOpts(opts, { backend: 'js' }));
  let refOpts = opts;
  if (opts.mode === 'clipCov') {
    const bare = ae.policyLossSync(inputsOf(batch), engineOpts({ ...opts, klCoef: 0, entropyCoef: 0 }, { backend: 'cuda' }));
    const selection: number[] = [];
    for (let i = 0; i < batch.mask.length; i++) if (batch.mask[i] !== 0 && bare.tokenLoss[i] === 0) selection.push(i);
    refOpts = { ...opts, clipCovSelection: selection };
  }
  return { got, js, ref: refPolicyLoss({ ...batch, shape: [batch.B, batch.T] }, refOpts) };
}

/** Rows shorter than a block (128 threads), of length 1, and longer (several tokens per thread); 9 rows > 4 blocks. */
const SHAPES: readonly [number, number][] = [[9, 17], [6, 1], [3, 300]];

maybe('every mode × every aggregation', () => {
  const grid = MODE_CASES.flatMap(({ mode, opts }, k) => AGGREGATIONS.map((aggregation, j) => ({
    name: `${mode} ${JSON.stringify(opts)} ${aggregation}`,
    mode,
    opts: { ...opts, mode, aggregation } as RefPolicyOptions,
    shape: SHAPES[(k + j) % SHAPES.length],
    advPerToken: (k + j) % 2 === 0,
  })));
  test.each(grid)('$name: the reference, every schedule alike, js parity', ({ name, mode, opts, shape, advPerToken }) => {
    const batch = batchFor(`cuda grid ${name}`, mode, opts, { B: shape[0], T: shape[1], advPerToken });
    const { got, js, ref } = runAll(name, batch, opts);
    expectMatches(got, ref, batch, name);
    expectParity(got, js, ref, batch, `${name} cuda vs js`);
  });
});

interface OptionCase {
  name: string;
  mode: Mode;
  opts: RefPolicyOptions;
  spec?: Partial<Parameters<typeof makeBatch>[1]>;
  isWeights?: 'B' | 'BT';
  tokenMask?: boolean;
  /** Checked against the js backend only, where the reference does not model the option (said why). */
  jsOnly?: string;
}

const OPTION_CASES: OptionCase[] = [
  ...KL_ESTIMATORS.map((klEstimator) => ({
    name: `ppo klCoef 0.1 ${klEstimator}`, mode: 'ppo' as Mode, opts: { klCoef: 0.1, klEstimator }, spec: { withRef: true },
  })),
  {
    name: 'ppo k3 without its guards', mode: 'ppo', opts: { klCoef: 0.1, klEstimator: 'k3', klClamp: false } as RefPolicyOptions,
    spec: { withRef: true }, jsOnly: 'the reference always applies the k3 guards',
  },
  { name: 'ppo refLogprob given, klCoef 0 (klMean only)', mode: 'ppo', opts: {}, spec: { withRef: true } },
  ...MODES.map((mode) => ({
    name: `${mode} entropyCoef 0.02`, mode, opts: { entropyCoef: 0.02, aggregation: 'seq-mean-token-sum' as Aggregation }, spec: { withEntropy: true },
  })),
  ...(['ppo', 'sapo', 'cispo', 'reinforce', 'gspo', 'klCov'] as Mode[]).flatMap((mode) => [
    { name: `${mode} isWeights [B]`, mode, opts: {}, isWeights: 'B' as const },
    { name: `${mode} isWeights [B·T] and tokenMask`, mode, opts: { aggregation: 'seq-mean-token-mean' as Aggregation }, isWeights: 'BT' as const, tokenMask: true },
  ]),
  {
    name: 'gmpo tokenMask', mode: 'gmpo', opts: { aggregation: 'seq-mean-token-mean' }, tokenMask: true,
    jsOnly: 'the reference folds the token mask into gmpo\'s weights, the engine into its token set (cpu and js agree with the engine)',
  },
  { name: 'ppo globalTokens', mode: 'ppo', opts: { aggregation: 'token-mean', globalTokens: 1000 } },
  { name: 'ppo globalSequences', mode: 'ppo', opts: { aggregation: 'seq-mean-token-mean', globalSequences: 64 } },
  { name: 'reinforce normConstant', mode: 'reinforce', opts: { aggregation: 'seq-mean-token-sum-norm', normConstant: 4096 } },
  { name: 'gmpo globalSequences with KL', mode: 'gmpo', opts: { globalSequences: 50, klCoef: 0.1, aggregation: 'token-mean', globalTokens: 700 }, spec: { withRef: true } },
  { name: 'ppo ratioClamp null', mode: 'ppo', opts: { ratioClamp: null, dualClip: 5 } },
  { name: 'sapo ratioClamp 5', mode: 'sapo', opts: { ratioClamp: 5 } },
  { name: 'cispo rollout correction sequence/mask', mode: 'cispo', opts: { rolloutCorrection: { level: 'sequence', mode: 'mask', low: 0.5, high: 2 } }, spec: { withRollout: true } },
  {
    name: 'everything at once (ppo)', mode: 'ppo',
    opts: { dualClip: 2.5, clipHigh: 0.28, klCoef: 0.05, klEstimator: 'k3+', entropyCoef: 0.001, aggregation: 'seq-mean-token-mean' },
    spec: { withRef: true, withEntropy: true, withRollout: true, advPerToken: true, maskKind: 'f32' }, isWeights: 'BT', tokenMask: true,
  },
];

maybe('options', () => {
  test.each(OPTION_CASES)('$name: the reference, every schedule alike, js parity', (oc) => {
    const opts: RefPolicyOptions = { ...oc.opts, mode: oc.mode };
    const batch = batchFor(`cuda option ${oc.name}`, oc.mode, opts, { B: 7, T: 150, ...oc.spec });
    const r = rng(`cuda option weights ${oc.name}`);
    if (oc.isWeights) {
      const w = new Float32Array(oc.isWeights === 'B' ? batch.B : batch.B * batch.T);
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(r.uniform(0.2, 2));
      opts.isWeights = w;
    }
    if (oc.tokenMask) {
      const e = new Uint8Array(batch.B * batch.T);
      for (let i = 0; i < e.length; i++) e[i] = r.float() < 0.8 ? 1 : 0;
      opts.tokenMask = e;
    }
    const { got, js, ref } = runAll(oc.name, batch, opts);
    if (!oc.jsOnly) expectMatches(got, ref, batch, oc.name);
    expectParity(got, js, ref, batch, `${oc.name} cuda vs js`, !!oc.jsOnly);
    if (oc.jsOnly) near(oc.name, 'validTokens vs js', got.metrics.validTokens, js.metrics.validTokens, 0);
  });
});

maybe('edge cases and errors', () => {
  test('no valid token: loss 0, gradients 0, metrics 0, emptyBatch, for every mode and aggregation', () => {
    const batch = makeBatch(rng('cuda empty'), { B: 4, T: 6, withRef: true, withEntropy: true });
    batch.mask.fill(0);
    for (const mode of MODES) {
      for (const aggregation of AGGREGATIONS) {
        const label = `${mode} ${aggregation}`;
        const got = ae.policyLossSync(inputsOf(batch), engineOpts({ mode, aggregation, klCoef: 0.1, entropyCoef: 0.1 }, { backend: 'cuda' }));
        expect([label, got.loss]).toEqual([label, 0]);
        expect(got.tokenLoss).toEqualBitwise(new Float32Array(24), `${label} tokenLoss`);
        expect(got.gradLogprob).toEqualBitwise(new Float32Array(24), `${label} gradLogprob`);
        expect(got.gradEntropy!).toEqualBitwise(new Float32Array(24), `${label} gradEntropy`);
        const m = got.metrics as unknown as Record<string, unknown>;
        expect([label, m.emptyBatch, m.validTokens]).toEqual([label, true, 0]);
        for (const [name, value] of Object.entries(m)) if (typeof value === 'number') expect([label, name, value]).toEqual([label, name, 0]);
      }
    }
  });

  test.each([[0, 5], [3, 0]])('zero-size batch [%i, %i]: loss 0 and empty outputs', (B, T) => {
    const empty = new Float32Array(0);
    const got = ae.policyLossSync(
      { logprob: empty, oldLogprob: empty, advantages: new Float32Array(B), mask: new Uint8Array(0), shape: [B, T] } as unknown as Inputs,
      { mode: 'ppo', backend: 'cuda' } as Options,
    );
    expect(got.loss).toBe(0);
    expect(got.tokenLoss.length).toBe(0);
    expect(got.metrics.emptyBatch).toBe(true);
  });

  test('a mask entry other than 0/1 is refused before anything is written', () => {
    const batch = makeBatch(rng('cuda bad mask'), { B: 5, T: 9 });
    const mask = Uint8Array.from(batch.mask);
    mask[2 * 9 + 4] = 2;
    mask[3 * 9 + 1] = 7;
    const tokenLoss = new Float32Array(45).fill(123);
    const call = () => ae.policyLossSync({ ...inputsOf(batch), mask } as Inputs, { backend: 'cuda', out: { tokenLoss } } as Options);
    expect(call).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'inputs.mask[22]' }));
    expect(tokenLoss).toEqualBitwise(new Float32Array(45).fill(123), 'tokenLoss untouched');
  });

  test('a non-finite input at a valid token names its row; at a masked token it does not matter', () => {
    const batch = makeBatch(rng('cuda non-finite'), { B: 6, T: 9, edgeRows: false, maskedFraction: 0.3, withRef: true });
    const valid = (b: number) => Array.from({ length: 9 }, (_, t) => b * 9 + t).filter((i) => batch.mask[i] !== 0);
    const masked = Array.from(batch.mask.keys()).filter((i) => batch.mask[i] === 0);
    const baseline = ae.policyLossSync(inputsOf(batch), { backend: 'cuda', klCoef: 0.1 } as Options);
    const changed = { ...batch, logprob: batch.logprob.slice(), refLogprob: batch.refLogprob!.slice() };
    for (const i of masked) changed.logprob[i] = NaN;
    const ignored = ae.policyLossSync(inputsOf(changed), { backend: 'cuda', klCoef: 0.1 } as Options);
    expect(ignored.tokenLoss).toEqualBitwise(baseline.tokenLoss, 'tokenLoss with NaN at masked tokens');
    expect(ignored.loss).toBe(baseline.loss);
    const rows = [4, 2].filter((b) => valid(b).length > 0);
    changed.refLogprob[valid(rows[0])[0]] = Infinity;
    changed.refLogprob[valid(rows[1])[0]] = NaN;
    expect(() => ae.policyLossSync(inputsOf(changed), { backend: 'cuda', klCoef: 0.1 } as Options)).toThrow(
      expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: Math.min(...rows) }),
    );
  });

  test("precision 'f64' is the cpu backend's: refused on cuda", () => {
    const batch = makeBatch(rng('cuda f64'), { B: 3, T: 4, dtype: 'f64' });
    expect(() => ae.policyLossSync(inputsOf(batch), { backend: 'cuda', precision: 'f64' } as Options)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }),
    );
  });

  test.each(MODES)('%s: the async form resolves to what the Sync form returns', async (mode) => {
    const opts: RefPolicyOptions = { mode, klCoef: 0.1, entropyCoef: 0.01 };
    const batch = batchFor(`cuda async ${mode}`, mode, opts, { B: 5, T: 9, withRef: true, withEntropy: true });
    const o = engineOpts(opts, { backend: 'cuda', seed: 7 });
    const sync = ae.policyLossSync(inputsOf(batch), o);
    const viaPromise = await ae.policyLoss(inputsOf(batch), o);
    expect(viaPromise.tokenLoss).toEqualBitwise(sync.tokenLoss, 'tokenLoss');
    expect(viaPromise.gradLogprob).toEqualBitwise(sync.gradLogprob, 'gradLogprob');
    expect(viaPromise.gradEntropy!).toEqualBitwise(sync.gradEntropy!, 'gradEntropy');
    expect(viaPromise.loss).toBe(sync.loss);
    expect(viaPromise.metrics).toEqual(sync.metrics);
  });
});
