/**
 * The CUDA token-level advantages (cuda/token_advantages_kernels.cuh, cuda/token_advantages.cu), verified without
 * a GPU: the kernels compiled for the CPU emulation of the CUDA execution model (cuda/emu/) and reached through
 * the public ops with `backend: 'cuda'` (gae, discountedReturns, reinforcePlusPlus, whiten, momentsPartial,
 * placeOutcome, optimalTokenBaseline) and through the addon's tokenAdvantages with the cpu addon's arguments, with
 * ADVANTAGE_ENGINE_CUDA_ADDON pointing at the emulation build. Checked:
 *   - every scan (none, discounted, gae) × gap rule (carry, reset, zero) × whitening (none, this batch's moments,
 *     merged moments given) × mask_output × out dtype (f32, f64) × whitening rule, on fresh random inputs,
 *     against a plain float64 reference of the scan and the whitening written below (and test/ref/advantages.ts
 *     refGae / refReturns / refWhiten for the carry rule), bitwise the same under forward, reverse and random
 *     thread schedules, and within f64 rounding of the cpu backend (the chunk-map scan associates differently);
 *   - rows longer than a block's 256 threads (several positions per thread), rows of length 1, rows shorter
 *     than a block (threads with empty chunks: identity maps), fully masked rows, T prime, B = 0 and T = 0;
 *     more rows than the emulation's 4 blocks (blocks loop over rows);
 *   - optimalTokenBaseline: groupSize, Int32 and BigInt64 group ids with singletons, importance weights, the
 *     verl singleton rule, f32 and f64, against a plain float64 reference (and refOtb) and the cpu backend;
 *   - a non-finite reward or value at a valid position names the first such row (outputs still written, as on
 *     the cpu), one at a masked position does not; the async forms equal the Sync ones.
 * On a machine with a GPU, `npm run test:gpu` (AE_CUDA_TEST=gpu) runs the same cases on the device.
 */
import * as ae from '../lib';
import { nativeAddon } from '../lib/backend';
import { cudaDevice } from '../lib/cuda';
import { nativeTokenArgs } from '../lib/ops/moments';
import type { TokenJob } from '../lib/js/token_advantages';
import type { Sfc32 } from '../lib/prng';
import { refGae, refOtb, refReturns, refWhiten } from './ref/advantages';
import { rng, SEED } from './helpers';
import { EmulatorControls, loadCudaBackend, SCHEDULES, TOOLCHAIN, underEverySchedule } from './cuda_setup';

if (!TOOLCHAIN) console.log('cuda token-advantage emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

afterEach(() => emu?.emuSetSchedule(2, SEED));

const SCAN = { none: 0, discounted: 1, gae: 2 } as const;
const GAP = { carry: 0, reset: 1, zero: 2 } as const;
type Rule = TokenJob['rule'];
const RULES: Record<string, Rule> = {
  engine: { meanEps: 0, unbiased: true, epsMode: 'add', eps: 1e-8 },
  verl: { meanEps: 1e-8, unbiased: true, epsMode: 'add', eps: 1e-8 },
  openrlhf: { meanEps: 0, unbiased: false, epsMode: 'clamp', eps: 1e-8 },
};

/**
 * Rows of `shape` whose masks have a response prefix with holes (multi-turn observation tokens) and trailing
 * padding; every fourth row fully masked, rows with one valid token. Values f32-representable when `f32`.
 */
function batchOf(r: Sfc32, [B, T]: [number, number], f32: boolean) {
  const mask = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    if (b % 4 === 3) continue;
    const length = b % 5 === 1 ? 1 : 1 + r.int(T);
    for (let t = 0; t < length; t++) mask[b * T + t] = r.float() < 0.8 || t === 0 ? 1 : 0;
  }
  const draw = (scale: number) => {
    const x = Float64Array.from({ length: B * T }, () => scale * r.normal());
    return f32 ? new Float32Array(x) : x;
  };
  return { mask, rewards: draw(1), values: draw(2) };
}

// ---- the float64 reference: the scan with its gap rules, the whitening with its rules ----

/** SPEC §4.2 reverse scans in f64: outputs and returns (0 for a copy), for each gap rule, plainly. */
function refScan(
  scan: number, gap: number, gamma: number, lambda: number, x: ArrayLike<number>, v: ArrayLike<number> | null, m: ArrayLike<number>,
  B: number, T: number,
): { out: Float64Array; ret: Float64Array } {
  const out = new Float64Array(B * T), ret = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let g = 0, next = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      const value = v ? v[i] : 0;
      if (scan === SCAN.none) {
        out[i] = x[i];  // a copy writes no returns
        continue;
      }
      const valid = m[i] === 1;
      if (valid || gap === GAP.zero) {
        // zero: a masked position's reward and value read as 0, the discounting goes on.
        const rv = valid ? x[i] : 0, vv = valid ? value : 0;
        if (scan === SCAN.gae) {
          g = rv + gamma * next - vv + gamma * lambda * g;
          next = vv;
          ret[i] = g + vv;
        } else {
          g = rv + gamma * g;
          ret[i] = g;
        }
        out[i] = g;
      } else if (gap === GAP.reset) {
        // reset: the scan restarts from 0 before this position (the discounted return still reads its reward).
        out[i] = scan === SCAN.gae ? g : x[i] + gamma * g;
        ret[i] = scan === SCAN.gae ? out[i] + value : out[i];
        g = 0;
        next = 0;
      } else {
        out[i] = g;
        ret[i] = scan === SCAN.gae ? g + value : g;
      }
    }
  }
  return { out, ret };
}

interface RefWhitening {
  mean: number;
  invStd: number;
  skipped: boolean;
  moments: [number, number, number];
}

/** The whitening statistics of `x` over mask ≠ 0 (or of `given` merged moments) under a rule, two-pass. */
function refWhitening(x: ArrayLike<number>, m: ArrayLike<number>, rule: Rule, given: [number, number, number] | null): RefWhitening {
  let n: number, mean: number, m2: number;
  if (given) {
    [n, mean, m2] = given;
  } else {
    n = 0;
    let sum = 0;
    for (let i = 0; i < x.length; i++) if (m[i] !== 0) n++, sum += x[i];
    mean = n > 0 ? sum / n : 0;
    m2 = 0;
    for (let i = 0; i < x.length; i++) if (m[i] !== 0) m2 += (x[i] - mean) ** 2;
  }
  if (!(n >= 2)) return { mean: 0, invStd: 1, skipped: true, moments: [n, mean, m2] };
  const shifted = (n * mean) / (n + rule.meanEps);  // verl: Σx / (Σm + ε)
  const centred = m2 + n * (mean - shifted) ** 2;
  const variance = rule.unbiased ? (centred / (n + rule.meanEps)) * (n / (n - 1)) : centred / (n + rule.meanEps);
  const invStd = 1 / Math.sqrt(rule.epsMode === 'clamp' ? Math.max(variance, rule.eps) : variance + rule.eps);
  return { mean: shifted, invStd, skipped: false, moments: [n, mean, m2] };
}

interface Case {
  scan: number;
  gap: number;
  whiten: 'none' | 'own' | 'given';
  maskOutput: boolean;
  f64: boolean;
  rule: string;
  shiftMean: boolean;
  shape: [number, number];
  gamma: number;
  lambda: number;
}

function jobOf(c: Case, batch: ReturnType<typeof batchOf>, given: [number, number, number] | null): TokenJob {
  const [B, T] = c.shape;
  const n = B * T;
  return {
    rows: B, cols: T, scan: c.scan, x: batch.rewards, values: c.scan === SCAN.gae ? batch.values : null, mask: batch.mask,
    gamma: c.gamma, lambda: c.lambda, gap: c.gap, whiten: c.whiten !== 'none', rule: RULES[c.rule], shiftMean: c.shiftMean,
    momentsIn: c.whiten === 'given' ? given : null, maskOutput: c.maskOutput,
    out: c.f64 ? new Float64Array(n) : new Float32Array(n), returns: c.f64 ? new Float64Array(n) : new Float32Array(n),
    momentsOut: new Float64Array(4),
  };
}

/** A fresh copy of a job's outputs (inputs shared), run on the cpu addon or the cuda addon. */
function runJob(job: TokenJob, backend: 'cpu' | 'cuda'): { job: TokenJob; bad: number } {
  const fresh: TokenJob = {
    ...job, out: new (job.out.constructor as Float32ArrayConstructor)(job.out.length),
    returns: job.returns && new (job.returns.constructor as Float32ArrayConstructor)(job.returns.length), momentsOut: new Float64Array(4),
  };
  const bad = backend === 'cpu'
    ? nativeAddon().tokenAdvantages(...nativeTokenArgs(fresh), false)
    : (cudaDevice().kernel('tokenAdvantages', ...nativeTokenArgs(fresh), false) as number);
  return { job: fresh, bad };
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/** |got − ref| ≤ rtol·|ref| + rtol·max|ref| (entries near 0 are judged on the array's scale). */
function scaled(ref: ArrayLike<number>, rtol: number) {
  const floor = rtol * Math.max(maxAbs(ref), 1e-300);
  return (r: number) => rtol * Math.abs(r) + floor;
}

/** The reference outputs of a job: the scan, then (on the stored values, as every backend) the whitening. */
function refJob(job: TokenJob) {
  const B = job.rows, T = job.cols;
  const { out, ret } = refScan(job.scan, job.gap, job.gamma, job.lambda, job.x, job.values, job.mask!, B, T);
  const f32 = job.out instanceof Float32Array;
  const stored = f32 ? out.map(Math.fround) : out;
  const w = job.whiten ? refWhitening(out, job.mask!, job.rule, job.momentsIn) : null;
  const final = w && !w.skipped
    ? stored.map((x, i) => (job.maskOutput && job.mask![i] === 0 ? 0 : (x - w.mean) * w.invStd + (job.shiftMean ? 0 : w.mean)))
    : stored;
  return { out: final, ret, w };
}

/** Checks a cuda run of `job` against the reference and the cpu addon. */
function expectJob(label: string, job: TokenJob, got: { job: TokenJob; bad: number }) {
  const f64 = job.out instanceof Float64Array;
  const ref = refJob(job);
  const rtol = f64 ? 1e-9 : 2e-6;
  expect(got.job.out).toBeInstanceOf(f64 ? Float64Array : Float32Array);
  expect(got.job.out).toMatchReference(ref.out, scaled(ref.out, rtol), `${label} out vs reference`);
  expect(got.job.returns!).toMatchReference(ref.ret, scaled(ref.ret, rtol), `${label} returns vs reference`);
  const cpu = runJob(job, 'cpu');
  // The cpu scans each row sequentially, the cuda kernels compose chunk maps and sum moments in a tree: the
  // same f64 function, different rounding (f32 outputs: at most an ulp or so of the array's scale).
  const parity = f64 ? 1e-11 : 4e-7;
  expect(got.job.out).toMatchReference(cpu.job.out, scaled(cpu.job.out, parity), `${label} out vs cpu`);
  expect(got.job.returns!).toMatchReference(cpu.job.returns!, scaled(cpu.job.returns!, parity), `${label} returns vs cpu`);
  expect(got.job.momentsOut).toMatchReference(cpu.job.momentsOut, { rtol: 1e-11, atol: 1e-11 * maxAbs(cpu.job.momentsOut) }, `${label} momentsOut vs cpu`);
  expect([label, got.bad]).toEqual([label, cpu.bad]);
  if (ref.w) {
    const [n, mean, m2] = got.job.momentsOut;
    expect([label, n, got.job.momentsOut[3]]).toEqual([label, ref.w.moments[0], ref.w.skipped ? 1 : 0]);
    expect(mean).toBeCloseTo(ref.w.moments[1], 9);
    expect(Math.abs(m2 - ref.w.moments[2])).toBeLessThanOrEqual(1e-9 * Math.max(1, ref.w.moments[2]));
  } else {
    expect(Array.from(got.job.momentsOut)).toEqual([0, 0, 0, 0]);
  }
}

/** Rows longer than a block (256 threads × several positions), rows of length 1, rows shorter than a block. */
const SHAPES: readonly [number, number][] = [[9, 1531], [6, 1], [7, 37], [5, 300]];
const SCAN_GAPS = [
  { scan: SCAN.none, gap: GAP.carry, name: 'copy' },
  ...(['discounted', 'gae'] as const).flatMap((s) => (['carry', 'reset', 'zero'] as const).map((g) => ({ scan: SCAN[s], gap: GAP[g], name: `${s} ${g}` }))),
];

maybe('every scan × gap rule × whitening × mask_output × out dtype', () => {
  const grid: (Case & { name: string })[] = [];
  let k = 0;
  for (const sg of SCAN_GAPS) {
    for (const whiten of ['none', 'own', 'given'] as const) {
      for (const maskOutput of [false, true]) {
        for (const f64 of [false, true]) {
          const rule = Object.keys(RULES)[k % 3];
          const shape = SHAPES[k % SHAPES.length];
          const [gamma, lambda] = [[1, 1], [0.99, 0.95], [0.9, 0.5]][(k >> 1) % 3];
          grid.push({
            name: `${sg.name} whiten ${whiten}${maskOutput ? ' maskOutput' : ''} ${f64 ? 'f64' : 'f32'} ${rule} [${shape}] γ ${gamma} λ ${lambda}`,
            scan: sg.scan, gap: sg.gap, whiten, maskOutput, f64, rule, shiftMean: k % 5 !== 2, shape, gamma, lambda,
          });
          k++;
        }
      }
    }
  }
  test.each(grid)('$name', (c) => {
    const batch = batchOf(rng(`cuda token ${c.name}`), c.shape, (c.shape[0] + c.shape[1]) % 2 === 0);
    const given: [number, number, number] = [1000, 0.3, 2500];
    const job = jobOf(c, batch, given);
    const got = underEverySchedule(emu, SEED, c.name, () => runJob(job, 'cuda'));
    expectJob(c.name, job, got);
  });
});

maybe('the chunk-map scan', () => {
  // A row shorter than the block leaves most threads with an empty chunk (the identity map); lengths around
  // the block size and a prime length put the chunk boundaries everywhere.
  test.each([[3, 2], [4, 31], [5, 255], [5, 256], [5, 257], [3, 513], [2, 4099]] as [number, number][])(
    '[%i, %i]: every gap rule agrees with the reference and the cpu, under every schedule',
    (B, T) => {
      const batch = batchOf(rng(`cuda chunk ${B}x${T}`), [B, T], false);
      for (const sg of SCAN_GAPS.slice(1)) {
        const c: Case = {
          scan: sg.scan, gap: sg.gap, whiten: 'none', maskOutput: false, f64: true, rule: 'engine', shiftMean: true, shape: [B, T],
          gamma: 0.97, lambda: 0.9,
        };
        const job = jobOf(c, batch, null);
        const label = `[${B}, ${T}] ${sg.name}`;
        expectJob(label, job, underEverySchedule(emu, SEED, label, () => runJob(job, 'cuda')));
      }
    },
  );

  test('γ = 1 over a long row: the composed maps keep f64 accuracy', () => {
    const B = 2, T = 20011;
    const batch = batchOf(rng('cuda chunk long'), [B, T], false);
    const c: Case = { scan: SCAN.gae, gap: GAP.carry, whiten: 'own', maskOutput: false, f64: true, rule: 'engine', shiftMean: true, shape: [B, T], gamma: 1, lambda: 1 };
    const job = jobOf(c, batch, null);
    expectJob('long row', job, runJob(job, 'cuda'));
  });
});

maybe('the public ops with backend cuda', () => {
  const B = 11, T = 389;
  const shape: [number, number] = [B, T];

  test.each([undefined, 'verl', 'trl', 'openrlhf'] as const)('preset %s: gae, discountedReturns, reinforcePlusPlus equal the cpu backend', (preset) => {
    const { mask, rewards, values } = batchOf(rng(`cuda ops ${preset}`), shape, false);
    for (const precision of ['f32', 'f64'] as const) {
      const label = `${preset} ${precision}`;
      const parity = precision === 'f64' ? 1e-11 : 4e-7;
      const opts = { gamma: 0.99, lambda: 0.95, preset, precision };
      const gae = ae.gaeSync({ rewards, values, mask, shape }, { ...opts, backend: 'cuda' });
      const gaeCpu = ae.gaeSync({ rewards, values, mask, shape }, { ...opts, backend: 'cpu' });
      expect(gae.advantages).toMatchReference(gaeCpu.advantages, scaled(gaeCpu.advantages, parity), `${label} gae`);
      expect(gae.returns).toMatchReference(gaeCpu.returns, scaled(gaeCpu.returns, parity), `${label} gae returns`);
      expect(gae.whitenSkipped).toBe(gaeCpu.whitenSkipped);
      expect(gae.moments.count).toBe(gaeCpu.moments.count);
      expect(gae.moments.mean).toBeCloseTo(gaeCpu.moments.mean, 10);
      const returnsOpts = { gamma: 0.97, preset, precision };
      const G = ae.discountedReturnsSync({ rewards, mask, shape }, { ...returnsOpts, backend: 'cuda' });
      const Gcpu = ae.discountedReturnsSync({ rewards, mask, shape }, { ...returnsOpts, backend: 'cpu' });
      expect(G).toMatchReference(Gcpu, scaled(Gcpu, parity), `${label} discountedReturns`);
      const rpp = ae.reinforcePlusPlusSync({ rewards, mask, shape }, { ...returnsOpts, backend: 'cuda' });
      const rppCpu = ae.reinforcePlusPlusSync({ rewards, mask, shape }, { ...returnsOpts, backend: 'cpu' });
      expect(rpp.advantages).toMatchReference(rppCpu.advantages, scaled(rppCpu.advantages, parity), `${label} reinforcePlusPlus`);
      expect(rpp.returns).toMatchReference(rppCpu.returns, scaled(rppCpu.returns, parity), `${label} reinforcePlusPlus returns`);
    }
  });

  test('the engine preset against test/ref/advantages.ts (refGae, refReturns, refWhiten)', () => {
    const { mask, rewards, values } = batchOf(rng('cuda ops ref'), shape, false);
    const [g, ret] = refGae(rewards, values, mask, B, T, 0.9, 0.8);
    const raw = ae.gaeSync({ rewards, values, mask, shape }, { gamma: 0.9, lambda: 0.8, whiten: false, precision: 'f64', backend: 'cuda' });
    expect(raw.advantages).toMatchReference(g, scaled(g, 1e-9), 'gae');
    expect(raw.returns).toMatchReference(ret, scaled(ret, 1e-9), 'gae returns');
    const white = ae.gaeSync({ rewards, values, mask, shape }, { gamma: 0.9, lambda: 0.8, precision: 'f64', backend: 'cuda' });
    expect(white.advantages).toMatchReference(refWhiten(g, mask), { rtol: 1e-9, atol: 1e-9 }, 'gae whitened');
    const G = refReturns(rewards, mask, B, T, 0.95);
    expect(ae.discountedReturnsSync({ rewards, mask, shape }, { gamma: 0.95, precision: 'f64', backend: 'cuda' })).toMatchReference(G, scaled(G, 1e-9), 'returns');
    const rpp = ae.reinforcePlusPlusSync({ rewards, mask, shape }, { gamma: 0.95, precision: 'f64', backend: 'cuda' });
    expect(rpp.advantages).toMatchReference(refWhiten(G, mask).map((x, i) => x * mask[i]), { rtol: 1e-9, atol: 1e-9 }, 'reinforcePlusPlus');
  });

  test('whiten (shiftMean, eps, given moments) and momentsPartial equal the reference and the cpu backend', () => {
    const { mask, rewards } = batchOf(rng('cuda ops whiten'), shape, true);
    const own = ae.momentsPartialSync(rewards, mask, { shape, backend: 'cuda' });
    const ownCpu = ae.momentsPartialSync(rewards, mask, { shape, backend: 'cpu' });
    const ref = refWhitening(rewards, mask, RULES.engine, null).moments;
    expect(own.count).toBe(ref[0]);
    expect(own.mean).toBeCloseTo(ref[1], 12);
    expect(Math.abs(own.m2 - ref[2])).toBeLessThanOrEqual(1e-10 * ref[2]);
    expect(Math.abs(own.m2 - ownCpu.m2)).toBeLessThanOrEqual(1e-12 * ownCpu.m2);
    expect(ae.momentsPartialSync(rewards, null, { backend: 'cuda' }).count).toBe(B * T);
    for (const options of [{}, { shiftMean: false, eps: 1e-3 }, { moments: { count: 50, mean: -0.2, m2: 80 } }, { preset: 'openrlhf' as const }]) {
      const label = JSON.stringify(options);
      const got = ae.whitenSync(rewards, mask, { ...options, shape, precision: 'f64', backend: 'cuda' });
      const cpu = ae.whitenSync(rewards, mask, { ...options, shape, precision: 'f64', backend: 'cpu' });
      expect(got.values).toMatchReference(cpu.values, scaled(cpu.values, 1e-11), `whiten ${label}`);
      expect(got.skipped).toBe(false);
      expect(got.moments.count).toBe(cpu.moments.count);
      expect(got.moments.mean).toBeCloseTo(cpu.moments.mean, 12);
    }
    const w = ae.whitenSync(rewards, mask, { shape, precision: 'f64', backend: 'cuda' });
    expect(w.values).toMatchReference(refWhiten(rewards, mask), { rtol: 1e-9, atol: 1e-9 }, 'whiten vs refWhiten');
  });

  test('placeOutcome: R at the last valid token, f32 and f64, equal to the cpu backend bitwise', () => {
    const r = rng('cuda ops place');
    const { mask } = batchOf(r, shape, false);
    const R = Float64Array.from({ length: B }, () => r.normal());
    for (const precision of ['f32', 'f64'] as const) {
      const got = ae.placeOutcomeSync(R, mask, { precision, backend: 'cuda' });
      expect(got).toEqualBitwise(ae.placeOutcomeSync(R, mask, { precision, backend: 'cpu' }), `placeOutcome ${precision}`);
      for (let b = 0; b < B; b++) {
        let last = -1;
        for (let t = 0; t < T; t++) if (mask[b * T + t] === 1) last = t;
        for (let t = 0; t < T; t++) {
          const want = t === last ? (precision === 'f32' ? Math.fround(R[b]) : R[b]) : 0;
          if (got[b * T + t] !== want) throw new Error(`placeOutcome ${precision} [${b}, ${t}] = ${got[b * T + t]}, expected ${want} (seed ${SEED})`);
        }
      }
    }
  });

  test('the async forms resolve to what the Sync forms return', async () => {
    const { mask, rewards, values } = batchOf(rng('cuda ops async'), shape, false);
    const opts = { gamma: 0.99, lambda: 0.95, backend: 'cuda' as const };
    const sync = ae.gaeSync({ rewards, values, mask, shape }, opts);
    const viaPromise = await ae.gae({ rewards, values, mask, shape }, opts);
    expect(viaPromise.advantages).toEqualBitwise(sync.advantages, 'gae advantages');
    expect(viaPromise.returns).toEqualBitwise(sync.returns, 'gae returns');
    expect(viaPromise.moments).toEqual(sync.moments);
    expect(await ae.momentsPartial(rewards, mask, { shape, backend: 'cuda' })).toEqual(ae.momentsPartialSync(rewards, mask, { shape, backend: 'cuda' }));
    const R = new Float32Array(B).fill(2);
    expect(await ae.placeOutcome(R, mask, { backend: 'cuda' })).toEqualBitwise(ae.placeOutcomeSync(R, mask, { backend: 'cuda' }), 'placeOutcome');
  });
});

maybe('edge cases and errors', () => {
  test.each([[0, 5], [4, 0]] as [number, number][])('zero-size batch [%i, %i]: empty outputs, the given moments still reported', (B, T) => {
    const empty = new Float32Array(0);
    const mask = new Uint8Array(0);
    const gae = ae.gaeSync({ rewards: empty, values: empty, mask, shape: [B, T] }, { backend: 'cuda' });
    expect(gae.advantages.length).toBe(0);
    expect(gae.whitenSkipped).toBe(true);
    const given = ae.gaeSync({ rewards: empty, values: empty, mask, shape: [B, T] }, { backend: 'cuda', moments: { count: 10, mean: 1, m2: 9 } });
    expect([given.whitenSkipped, given.moments]).toEqual([false, { count: 10, mean: 1, m2: 9 }]);
    expect(ae.momentsPartialSync(empty, mask, { shape: [B, T], backend: 'cuda' })).toEqual({ count: 0, mean: 0, m2: 0 });
    expect(ae.discountedReturnsSync({ rewards: empty, mask, shape: [B, T] }, { backend: 'cuda' }).length).toBe(0);
    expect(ae.placeOutcomeSync(new Float32Array(B), mask, { backend: 'cuda' }).length).toBe(0);
  });

  test('no valid token: whitening skipped, the scan outputs unchanged, as on the cpu', () => {
    const { rewards, values } = batchOf(rng('cuda empty mask'), [3, 40], false);
    const mask = new Uint8Array(120);
    for (const preset of [undefined, 'verl', 'openrlhf'] as const) {
      const got = ae.gaeSync({ rewards, values, mask, shape: [3, 40] }, { backend: 'cuda', preset, precision: 'f64' });
      const cpu = ae.gaeSync({ rewards, values, mask, shape: [3, 40] }, { backend: 'cpu', preset, precision: 'f64' });
      expect(got.whitenSkipped).toBe(true);
      expect(got.advantages).toEqualBitwise(cpu.advantages, `${preset} advantages`);
      expect(got.returns).toMatchReference(cpu.returns, scaled(cpu.returns, 1e-11), `${preset} returns`);
    }
  });

  test('a non-finite reward or value at a valid position names the first such row; at a masked one it does not matter', () => {
    const B = 6, T = 300;
    const { mask, rewards, values } = batchOf(rng('cuda non-finite'), [B, T], false);
    const valid = (b: number) => Array.from({ length: T }, (_, t) => b * T + t).filter((i) => mask[i] === 1);
    const baseline = ae.gaeSync({ rewards, values, mask, shape: [B, T] }, { backend: 'cuda', precision: 'f64' });
    const noisyRewards = rewards.map((x, i) => (mask[i] === 0 ? NaN : x));
    const ignored = ae.gaeSync({ rewards: noisyRewards, values, mask, shape: [B, T] }, { backend: 'cuda', precision: 'f64' });
    expect(ignored.advantages).toEqualBitwise(baseline.advantages, 'advantages with NaN rewards at masked tokens');
    const rows = [4, 2].filter((b) => valid(b).length > 0);
    const badRewards = rewards.slice(), badValues = values.slice();
    badRewards[valid(rows[0])[0]] = Infinity;
    badValues[valid(rows[1]).slice(-1)[0]] = NaN;
    expect(() => ae.gaeSync({ rewards: badRewards, values: badValues, mask, shape: [B, T] }, { backend: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: Math.min(...rows) }),
    );
    expect(() => ae.momentsPartialSync(badRewards, mask, { shape: [B, T], backend: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: rows[0] }),
    );
    // The kernel still writes every output, and reports the row the cpu reports.
    const c: Case = { scan: SCAN.gae, gap: GAP.carry, whiten: 'none', maskOutput: false, f64: true, rule: 'engine', shiftMean: true, shape: [B, T], gamma: 0.9, lambda: 0.9 };
    const job = jobOf(c, { mask, rewards: badRewards, values: badValues }, null);
    const got = runJob(job, 'cuda'), cpu = runJob(job, 'cpu');
    expect([got.bad, cpu.bad]).toEqual([Math.min(...rows), Math.min(...rows)]);
    const finiteRow = [0, 1, 3, 5].find((b) => b < Math.min(...rows))!;
    for (let t = 0; t < T; t++) {
      const i = finiteRow * T + t;
      if (Math.abs(got.job.out[i] - cpu.job.out[i]) > 1e-9 * (1 + Math.abs(cpu.job.out[i]))) {
        throw new Error(`row ${finiteRow} [${t}]: ${got.job.out[i]} vs cpu ${cpu.job.out[i]} (seed ${SEED})`);
      }
    }
  });
});

// ---- optimal token baseline ----

/** SPEC §4.3 in f64, plainly: w = (1 − 2π + Σπ²)·ρ², per group and position b = Σ G·W·m / (Σ W·m + 1e-8). */
function refOtbFull(
  r: ArrayLike<number>, m: ArrayLike<number>, old: ArrayLike<number>, spp: ArrayLike<number>, rho: ArrayLike<number> | null,
  ids: ArrayLike<number>, B: number, T: number, rawSingleton: boolean,
): { advantages: Float64Array; returns: Float64Array } {
  const G = new Float64Array(B * T), W = new Float64Array(B * T), A = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let acc = 0, cum = 0;
    for (let t = T - 1; t >= 0; t--) {
      if (m[b * T + t] === 1) acc += r[b * T + t];
      G[b * T + t] = acc;
    }
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (m[i] === 1) cum += (1 - 2 * Math.exp(old[i]) + spp[i]) * (rho ? rho[i] * rho[i] : 1);
      W[i] = cum;
    }
  }
  const groups = new Map<number, number[]>();
  for (let b = 0; b < B; b++) groups.set(ids[b], [...(groups.get(ids[b]) ?? []), b]);
  for (const rows of groups.values()) {
    for (let t = 0; t < T; t++) {
      let num = 0, den = 0;
      for (const j of rows) if (m[j * T + t] === 1) num += G[j * T + t] * W[j * T + t], den += W[j * T + t];
      for (const j of rows) {
        const i = j * T + t;
        const baseline = rows.length === 1 ? (rawSingleton ? 0 : G[i]) : num / (den + 1e-8);
        A[i] = m[i] === 1 ? G[i] - baseline : 0;
      }
    }
  }
  return { advantages: A, returns: G };
}

function otbBatch(r: Sfc32, [B, T]: [number, number], f32: boolean) {
  const { mask, rewards } = batchOf(r, [B, T], f32);
  const pi = Float64Array.from({ length: B * T }, () => 0.05 + 0.9 * r.float());
  const cast = (x: Float64Array) => (f32 ? new Float32Array(x) : x);
  return {
    mask, rewards,
    oldLogprobs: cast(pi.map(Math.log)),
    sumPiSquared: cast(pi.map((p) => p * p + (1 - p) * (1 - p) * r.float())),
    isWeights: cast(Float64Array.from({ length: B * T }, () => 0.5 + r.float())),
  };
}

maybe('optimalTokenBaseline', () => {
  const CASES = [
    { name: 'groupSize 4 [12, 700] f32', shape: [12, 700], groups: 'size', f32: true },
    { name: 'Int32 ids with singletons [9, 37] f64 isWeights', shape: [9, 37], groups: 'ids32', f32: false, weights: true },
    { name: 'BigInt64 ids [10, 1] verl', shape: [10, 1], groups: 'ids64', f32: false, preset: 'verl' as const },
    { name: 'Int32 ids [7, 300] verl f32 isWeights', shape: [7, 300], groups: 'ids32', f32: true, weights: true, preset: 'verl' as const },
  ] as const;
  test.each(CASES)('$name: the reference, every schedule alike, cpu parity', (c) => {
    const [B, T] = c.shape as unknown as [number, number];
    const r = rng(`cuda otb ${c.name}`);
    const batch = otbBatch(r, [B, T], c.f32);
    const ids = Int32Array.from({ length: B }, (_, b) => (c.groups === 'size' ? Math.floor(b / 4) : [5, -3, 5, 8, 5, -3, 100, 8, 0, 0][b % 10]));
    const inputs = {
      rewards: batch.rewards, mask: batch.mask, shape: [B, T] as [number, number], oldLogprobs: batch.oldLogprobs, sumPiSquared: batch.sumPiSquared,
      ...('weights' in c ? { isWeights: batch.isWeights } : {}),
      ...(c.groups === 'size' ? { groupSize: 4 } : c.groups === 'ids32' ? { groupIds: ids } : { groupIds: BigInt64Array.from(ids, (x) => BigInt(x) * 2n ** 40n) }),
    };
    for (const precision of ['f32', 'f64'] as const) {
      const opts = { precision, preset: 'preset' in c ? c.preset : undefined };
      const label = `${c.name} ${precision}`;
      let first: ReturnType<typeof ae.optimalTokenBaselineSync> | undefined;
      for (const s of emu ? SCHEDULES : SCHEDULES.slice(0, 1)) {
        emu?.emuSetSchedule(s.kind, SEED);
        const got = ae.optimalTokenBaselineSync(inputs, { ...opts, backend: 'cuda' });
        if (!first) first = got;
        expect(got.advantages).toEqualBitwise(first.advantages, `${label} ${s.name} advantages`);
        expect(got.returns).toEqualBitwise(first.returns, `${label} ${s.name} returns`);
      }
      const ref = refOtbFull(
        batch.rewards, batch.mask, batch.oldLogprobs, batch.sumPiSquared, 'weights' in c ? batch.isWeights : null, ids, B, T, 'preset' in c,
      );
      const rtol = precision === 'f64' ? 1e-9 : 2e-6;
      expect(first!.advantages).toMatchReference(ref.advantages, scaled(ref.advantages, rtol), `${label} advantages`);
      expect(first!.returns).toMatchReference(ref.returns, scaled(ref.returns, rtol), `${label} returns`);
      const cpu = ae.optimalTokenBaselineSync(inputs, { ...opts, backend: 'cpu' });
      const parity = precision === 'f64' ? 1e-11 : 4e-7;
      expect(first!.advantages).toMatchReference(cpu.advantages, scaled(cpu.advantages, parity), `${label} advantages vs cpu`);
      expect(first!.returns).toMatchReference(cpu.returns, scaled(cpu.returns, parity), `${label} returns vs cpu`);
    }
  });

  test('the engine rule against test/ref/advantages.ts refOtb', () => {
    const B = 8, T = 515;
    const batch = otbBatch(rng('cuda otb refOtb'), [B, T], false);
    const ids = Int32Array.from([1, 1, 2, 2, 2, 3, 4, 4]);
    const got = ae.optimalTokenBaselineSync(
      { rewards: batch.rewards, mask: batch.mask, shape: [B, T], oldLogprobs: batch.oldLogprobs, sumPiSquared: batch.sumPiSquared, groupIds: ids },
      { precision: 'f64', backend: 'cuda' },
    );
    const ref = refOtb(batch.rewards, batch.mask, batch.oldLogprobs, batch.sumPiSquared, ids, B, T);
    expect(got.advantages).toMatchReference(ref.advantages, scaled(ref.advantages, 1e-9), 'advantages');
    expect(got.returns).toMatchReference(ref.returns, scaled(ref.returns, 1e-9), 'returns');
  });

  test('a non-finite weight at a valid token names its row; zero-size batches', async () => {
    const B = 6, T = 40;
    const batch = otbBatch(rng('cuda otb non-finite'), [B, T], false);
    const old = batch.oldLogprobs.slice();
    const firstValid = (b: number) => Array.from({ length: T }, (_, t) => b * T + t).find((i) => batch.mask[i] === 1)!;
    old[firstValid(4)] = NaN;
    old[firstValid(2)] = Infinity;
    const inputs = { rewards: batch.rewards, mask: batch.mask, shape: [B, T] as [number, number], oldLogprobs: old, sumPiSquared: batch.sumPiSquared, groupSize: 2 };
    expect(() => ae.optimalTokenBaselineSync(inputs, { backend: 'cuda' })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
    await expect(ae.optimalTokenBaseline(inputs, { backend: 'cuda' })).rejects.toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
    for (const [b, t] of [[0, 3], [4, 0]]) {
      const empty = new Float32Array(b * t);
      for (const backend of ['cuda', 'cpu'] as const) {
        const got = ae.optimalTokenBaselineSync(
          { rewards: empty, mask: new Uint8Array(b * t), shape: [b, t], oldLogprobs: empty, sumPiSquared: empty, groupIds: new Int32Array(b) },
          { backend },
        );
        expect([backend, got.advantages.length, got.returns.length]).toEqual([backend, 0, 0]);
      }
    }
  });
});
