/**
 * Per-token and per-row arrays on the device (issue: "a pipeline of ops never leaves the GPU"), verified on the
 * CUDA emulation build (test/cuda_setup.ts): f32 DeviceTensors as the value arrays of policyLoss, klPenalty and
 * the scans (gae, discountedReturns, reinforcePlusPlus), whose outputs are then DeviceTensors too; tokenStats /
 * fullKl with `resultOn: 'device'`; and tokenStatsBackward taking its upstream gradients from the device. Checked:
 *   - each op with device arrays gives the same bits as with host arrays on the same kernels (and so the same
 *     float64-reference agreement the family suites check), for inputs on the device, outputs on the device,
 *     a mix of both, and caller-given device outputs;
 *   - the training step tokenStats → policyLoss → tokenStatsBackward on device logits, and gae → policyLoss,
 *     copy no per-token value array between host and device (the emulator counts every host ↔ device byte) and
 *     give the host pipeline's results bit for bit (the gradient matches the float64 reference);
 *   - async calls hold their device buffers: inputs disposed while the job runs are freed after it;
 *   - errors before any kernel runs: a host backend, precision 'f64', a rollout correction or a covariance mode
 *     with device arrays; a tensor of another dtype, length or device, a disposed one, an output that is an
 *     input; and in the glue a handle whose buffer is too small, and a handle given to the cpu addon.
 */
import * as ae from '../lib';
import { cudaDevice, DeviceTensor } from '../lib/cuda';
import { nativeAddon } from '../lib/backend';
import { refPolicyLoss, drawKlInputs } from './ref/policy_loss';
import { refTokenStatsBackward } from './ref/token_stats';
import { makeLogits, randomFloat32, rng, SEED } from './helpers';
import { EmulatorControls, loadCudaBackend, TOOLCHAIN, underEverySchedule } from './cuda_setup';
import { batchFor, engineOpts, inputsOf, tolerance } from './policy_loss_cases';

if (!TOOLCHAIN) console.log('cuda device-array emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

interface CopyCounters extends EmulatorControls {
  emuCounters(): { launches: number; hostToDeviceBytes: number; deviceToHostBytes: number };
}

let emu: CopyCounters | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend() as CopyCounters | undefined;
}, 900_000);
afterEach(() => emu?.emuSetSchedule(2, SEED));

const F32_RTOL = 1e-5;
const live: DeviceTensor[] = [];
afterEach(() => {
  for (const d of live.splice(0)) d.dispose();
});

/** A host array on the device (disposed after the test). */
function dev(a: Float32Array | Float64Array): DeviceTensor {
  const d = cudaDevice().toDevice(a instanceof Float32Array ? a : Float32Array.from(a));
  live.push(d);
  return d;
}
function host(d: DeviceTensor | undefined): Float32Array {
  expect(d).toBeInstanceOf(DeviceTensor);
  live.push(d!);
  return cudaDevice().fromDevice(d!).data as Float32Array;
}

/** Host ↔ device bytes that `fn` copies (0 / 0 on a GPU run, where nothing counts them). */
function copiesOf<T>(fn: () => T): { result: T; toDevice: number; toHost: number } {
  const before = emu?.emuCounters();
  const result = fn();
  const after = emu?.emuCounters();
  return {
    result,
    toDevice: before && after ? after.hostToDeviceBytes - before.hostToDeviceBytes : 0,
    toHost: before && after ? after.deviceToHostBytes - before.deviceToHostBytes : 0,
  };
}

const POLICY_OPTS = { mode: 'ppo', clipHigh: 0.28, klCoef: 0.05, klEstimator: 'k3', entropyCoef: 0.01 } as const;

function policyBatch(label: string, B: number, T: number) {
  return batchFor(label, 'ppo', { ...POLICY_OPTS }, { B, T, advPerToken: true, withRef: true, withEntropy: true, withRollout: false });
}

maybe('policyLoss with DeviceTensor arrays', () => {
  test('device inputs give device outputs with the host arrays\' bits, and the reference within f32 rounding', () => {
    const batch = policyBatch('device policy', 7, 45);
    const opts = engineOpts({ ...POLICY_OPTS }, { backend: 'cuda' });
    const want = ae.policyLossSync(inputsOf(batch), opts);
    const inputs = {
      ...inputsOf(batch), logprob: dev(batch.logprob), oldLogprob: dev(batch.oldLogprob), advantages: dev(batch.advantages),
      refLogprob: dev(batch.refLogprob!), entropy: dev(batch.entropy!),
    };
    const got = underEverySchedule(emu, SEED, 'device policyLoss', () => {
      const r = ae.policyLossSync(inputs, { ...POLICY_OPTS, backend: 'cuda' });
      return { ...r, tokenLoss: host(r.tokenLoss), gradLogprob: host(r.gradLogprob), gradEntropy: host(r.gradEntropy) };
    });
    expect(got.tokenLoss).toEqualBitwise(want.tokenLoss, 'tokenLoss');
    expect(got.gradLogprob).toEqualBitwise(want.gradLogprob, 'gradLogprob');
    expect(got.gradEntropy).toEqualBitwise(want.gradEntropy!, 'gradEntropy');
    expect(got.loss).toBe(want.loss);
    expect(got.metrics).toEqual(want.metrics);
    const ref = refPolicyLoss({ ...batch, shape: [batch.B, batch.T] }, { ...POLICY_OPTS });
    expect(got.gradLogprob).toMatchReference(ref.gradLogprob, tolerance(ref.gradScale, batch.mask, F32_RTOL), 'gradLogprob vs reference');
    expect(got.tokenLoss).toMatchReference(ref.tokenLoss, tolerance(ref.tokenLossScale, batch.mask, F32_RTOL), 'tokenLoss vs reference');
  });

  test('a mix: host logprob with device inputs returns host outputs; per-row advantages stay on the host', () => {
    const batch = batchFor('device policy mix', 'ppo', {}, { B: 5, T: 33, withRef: false, withEntropy: false });
    expect(batch.advantages.length).toBe(5);
    const want = ae.policyLossSync(inputsOf(batch), { backend: 'cuda' });
    const mixed = ae.policyLossSync({ ...inputsOf(batch), oldLogprob: dev(batch.oldLogprob) }, {});
    expect(mixed.gradLogprob).toBeInstanceOf(Float32Array);
    expect(mixed.gradLogprob).toEqualBitwise(want.gradLogprob, 'host logprob, device oldLogprob');
    const onDevice = ae.policyLossSync({ ...inputsOf(batch), logprob: dev(batch.logprob) }, { backend: 'auto' });
    expect(host(onDevice.gradLogprob)).toEqualBitwise(want.gradLogprob, 'device logprob, host per-row advantages');
    expect(onDevice.gradEntropy).toBeUndefined();
  });

  test('caller-given device outputs are filled and returned; async equals sync and holds disposed inputs', async () => {
    const batch = policyBatch('device policy out', 4, 20);
    const n = batch.B * batch.T;
    const want = ae.policyLossSync(inputsOf(batch), engineOpts({ ...POLICY_OPTS }, { backend: 'cuda' }));
    const out = { tokenLoss: dev(new Float32Array(n)), gradLogprob: dev(new Float32Array(n)), gradEntropy: dev(new Float32Array(n)) };
    const lp = cudaDevice().toDevice(Float32Array.from(batch.logprob));
    const old = cudaDevice().toDevice(Float32Array.from(batch.oldLogprob));
    const pending = ae.policyLoss({
      ...inputsOf(batch), logprob: lp, oldLogprob: old, advantages: dev(batch.advantages), refLogprob: dev(batch.refLogprob!),
      entropy: dev(batch.entropy!),
    }, { ...POLICY_OPTS, out });
    lp.dispose(); // the job holds the buffers until it ends
    old.dispose();
    const got = await pending;
    expect(got.gradLogprob).toBe(out.gradLogprob);
    expect(cudaDevice().fromDevice(out.gradLogprob).data).toEqualBitwise(want.gradLogprob, 'async gradLogprob');
    expect(cudaDevice().fromDevice(out.gradEntropy).data).toEqualBitwise(want.gradEntropy!, 'async gradEntropy');
    expect(got.loss).toBe(want.loss);
  });

  test('errors before any kernel runs', () => {
    const batch = policyBatch('device policy errors', 3, 8);
    const n = batch.B * batch.T;
    const lp = dev(batch.logprob);
    const base = { ...inputsOf(batch), logprob: lp };
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'no error';
    };
    expect(code(() => ae.policyLossSync(base, { backend: 'cpu' }))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync(base, { precision: 'f64' }))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync({ ...base, rolloutLogprob: batch.logprob }, {}))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync(base, { mode: 'clipCov' }))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync({ ...base, oldLogprob: dev(new Float32Array(n + 1)) }, {}))).toBe('ERR_AE_SHAPE_MISMATCH');
    const bf16 = cudaDevice().empty([n], 'bf16');
    live.push(bf16);
    expect(code(() => ae.policyLossSync({ ...base, oldLogprob: bf16 }, {}))).toBe('ERR_AE_DTYPE');
    const gone = cudaDevice().toDevice(Float32Array.from(batch.oldLogprob));
    gone.dispose();
    expect(code(() => ae.policyLossSync({ ...base, oldLogprob: gone }, {}))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync(base, { out: { gradLogprob: lp } }))).toBe('ERR_INVALID_ARG_VALUE');
    expect(code(() => ae.policyLossSync(base, { out: { gradLogprob: new Float32Array(n) } }))).toBe('ERR_INVALID_ARG_TYPE');
    const foreign = ae.openCudaAddon(cudaDevice().path).empty([n], 'f32');
    expect(code(() => ae.policyLossSync({ ...base, oldLogprob: foreign }, {}))).toBe('ERR_INVALID_ARG_VALUE');
    foreign.dispose();
  });
});

maybe('klPenalty with DeviceTensor arrays', () => {
  test('device in, device out (new or given), the host arrays\' bits', () => {
    const { lp, ref } = drawKlInputs(rng('device kl'), 2501, Float32Array);
    for (const estimator of ['k1', 'k3', 'k2+'] as const) {
      const want = ae.klPenaltySync(lp, ref, { estimator, backend: 'cuda' });
      const got = ae.klPenaltySync(dev(lp), dev(ref), { estimator });
      expect(host(got.value)).toEqualBitwise(want.value, `${estimator} value`);
      expect(host(got.grad)).toEqualBitwise(want.grad, `${estimator} grad`);
      const out = { value: dev(new Float32Array(lp.length)), grad: dev(new Float32Array(lp.length)) };
      const given = ae.klPenaltySync(dev(lp), ref, { estimator, out });
      expect(given.grad).toBe(out.grad);
      expect(cudaDevice().fromDevice(out.grad).data).toEqualBitwise(want.grad, `${estimator} given grad`);
      const toHost = ae.klPenaltySync(lp, dev(ref), { estimator });
      expect(toHost.value).toEqualBitwise(want.value, `${estimator} host logprob, device ref`);
    }
  });

  test('errors: a host backend, an output that is an input, a length mismatch', () => {
    const { lp, ref } = drawKlInputs(rng('device kl errors'), 10, Float32Array);
    const d = dev(lp);
    expect(() => ae.klPenaltySync(d, ref, { backend: 'js' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => ae.klPenaltySync(d, ref, { out: { value: d } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => ae.klPenaltySync(d, ref.subarray(1))).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
  });
});

maybe('token-level advantages with DeviceTensor arrays', () => {
  const B = 5, T = 97, n = B * T;
  function scanInputs(label: string) {
    const r = rng(label);
    const mask = new Uint8Array(n);
    for (let i = 0; i < n; i++) mask[i] = r.float() < 0.85 ? 1 : 0;
    return { rewards: randomFloat32(r, n), values: randomFloat32(r, n, 0.5), mask, shape: [B, T] as [number, number] };
  }

  test('gae, discountedReturns and reinforcePlusPlus on device arrays give the host arrays\' bits', () => {
    const x = scanInputs('device scans');
    const want = ae.gaeSync(x, { gamma: 0.99, lambda: 0.95, backend: 'cuda' });
    const got = ae.gaeSync({ ...x, rewards: dev(x.rewards), values: dev(x.values) }, { gamma: 0.99, lambda: 0.95 });
    expect(host(got.advantages)).toEqualBitwise(want.advantages, 'gae advantages');
    expect(host(got.returns)).toEqualBitwise(want.returns, 'gae returns');
    expect(got.moments).toEqual(want.moments);
    const mixed = ae.gaeSync({ ...x, values: dev(x.values) }, { gamma: 0.99, lambda: 0.95, whiten: false });
    expect(mixed.advantages).toBeInstanceOf(Float32Array);
    expect(mixed.returns).toEqualBitwise(want.returns, 'host rewards, device values');
    const returns = ae.discountedReturnsSync({ rewards: dev(x.rewards), mask: x.mask, shape: x.shape }, { gamma: 0.9 });
    const hostRewards = { rewards: x.rewards, mask: x.mask, shape: x.shape };
    expect(host(returns)).toEqualBitwise(ae.discountedReturnsSync(hostRewards, { gamma: 0.9, backend: 'cuda' }), 'discountedReturns');
    const rpp = ae.reinforcePlusPlusSync({ rewards: dev(x.rewards), mask: x.mask, shape: x.shape });
    const rppWant = ae.reinforcePlusPlusSync(hostRewards, { backend: 'cuda' });
    expect(host(rpp.advantages)).toEqualBitwise(rppWant.advantages, 'reinforcePlusPlus');
    expect(host(rpp.returns)).toEqualBitwise(rppWant.returns, 'reinforcePlusPlus returns');
  });

  test('a PPO step: gae on the device feeds policyLoss its advantages without a host copy', () => {
    const x = scanInputs('device ppo');
    // Device → host: per-row moments, sums and flags only; a per-token f32 array would be 4·n bytes.
    const perRowBytes = 256 * B + 256;
    expect(perRowBytes).toBeLessThan(4 * n);
    const batch = batchFor('device ppo batch', 'ppo', {}, { B, T, withRef: false, withEntropy: false });
    const mask = Uint8Array.from(x.mask);
    const want = ae.policyLossSync(
      { logprob: batch.logprob, oldLogprob: batch.oldLogprob, advantages: ae.gaeSync(x, { backend: 'cuda' }).advantages, mask, shape: [B, T] },
      { backend: 'cuda' });
    const rewards = dev(x.rewards), values = dev(x.values), lp = dev(batch.logprob), old = dev(batch.oldLogprob);
    const { result: got, toHost } = copiesOf(() => {
      const { advantages, returns } = ae.gaeSync({ rewards, values, mask, shape: [B, T] });
      live.push(advantages, returns);
      return ae.policyLossSync({ logprob: lp, oldLogprob: old, advantages, mask, shape: [B, T] });
    });
    expect(host(got.gradLogprob)).toEqualBitwise(want.gradLogprob, 'gradLogprob');
    live.push(got.tokenLoss);
    expect(got.loss).toBe(want.loss);
    if (emu) expect(toHost).toBeLessThan(perRowBytes);
  });

  test('errors: a host backend or precision \'f64\' with device arrays, a length mismatch', () => {
    const x = scanInputs('device scan errors');
    const rewards = dev(x.rewards);
    expect(() => ae.gaeSync({ ...x, rewards }, { backend: 'cpu' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => ae.discountedReturnsSync({ ...x, rewards }, { precision: 'f64' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => ae.gaeSync({ ...x, values: dev(x.values.subarray(1)) })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
    const otb = { rewards, mask: x.mask, shape: x.shape, oldLogprobs: x.values, sumPiSquared: x.values, groupSize: 1 };
    expect(() => ae.optimalTokenBaselineSync(otb as never))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

maybe('token statistics with per-row arrays on the device', () => {
  test('tokenStats and fullKl with resultOn device give the host results\' bits', () => {
    const { logits, tokens } = makeLogits(rng('device stats'), [6, 1037], 'f32');
    const device = cudaDevice();
    const z = device.toDevice(logits);
    live.push(z);
    const want = device.tokenStatsSync(z, { tokens });
    const got = device.tokenStatsSync(z, { tokens, resultOn: 'device' });
    for (const name of ae.STAT_NAMES) expect(host(got[name])).toEqualBitwise(want[name]!, name);
    const out = { logprob: dev(new Float32Array(6)) };
    const given = device.tokenStatsSync(z, { tokens, outputs: ['logprob'], resultOn: 'device', out });
    expect(given.logprob).toBe(out.logprob);
    expect(device.fromDevice(out.logprob).data).toEqualBitwise(want.logprob!, 'given logprob');
    expect(() => device.tokenStatsSync(z, { tokens, out: { logprob: out.logprob } as never }))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const noisy = makeLogits(rng('device stats ref'), [6, 1037], 'f32').logits;
    const klWant = device.fullKlSync(logits, noisy);
    expect(host(device.fullKlSync(logits, noisy, { resultOn: 'device' }))).toEqualBitwise(klWant, 'fullKl');
    expect(() => device.fullKlSync(logits, noisy, { resultOn: 'gpu' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });

  test('the training step on the device copies no per-token array through the host, and gives the host pipeline\'s bits', () => {
    const B = 4, T = 60, V = 517, n = B * T;
    const r = rng('device pipeline');
    const { logits, tokens } = makeLogits(r, [B, T, V], 'f32');
    const oldLogprob = randomFloat32(r, n, 0.1);
    const advantages = randomFloat32(r, B);
    const mask = new Uint8Array(n).fill(1);
    const device = cudaDevice();
    const temperature = 0.8;
    const step = (z: ae.Tensor | DeviceTensor, old: Float32Array | DeviceTensor, onDevice: boolean) => {
      const stats = onDevice
        ? device.tokenStatsSync(z, { tokens, temperature, outputs: ['logprob'], resultOn: 'device' })
        : device.tokenStatsSync(z, { tokens, temperature, outputs: ['logprob'] });
      const loss = ae.policyLossSync({ logprob: stats.logprob!, oldLogprob: old, advantages, mask, shape: [B, T] }, { backend: 'cuda' });
      // (the overloads type a result from a union of inputs as host arrays: here it follows stats.logprob)
      const gradLogprob = loss.gradLogprob as unknown as Float32Array | DeviceTensor;
      const grad = device.tokenStatsBackwardSync(z, { tokens, temperature, gradLogprob });
      return { stats, loss: { loss: loss.loss, gradLogprob }, grad };
    };
    const hostRun = step(logits, oldLogprob, false);
    const z = device.toDevice(logits);
    const old = dev(oldLogprob);
    live.push(z);
    const { result: deviceRun, toDevice, toHost } = copiesOf(() => step(z, old, true));
    expect(deviceRun.stats.logprob).toBeInstanceOf(DeviceTensor);
    expect(deviceRun.loss.gradLogprob).toBeInstanceOf(DeviceTensor);
    expect(host(deviceRun.grad as DeviceTensor)).toEqualBitwise(hostRun.grad as Float32Array, 'gradient w.r.t. the logits');
    expect(host(deviceRun.loss.gradLogprob as DeviceTensor)).toEqualBitwise(hostRun.loss.gradLogprob as Float32Array, 'gradLogprob');
    live.push(deviceRun.stats.logprob as DeviceTensor);
    expect(deviceRun.loss.loss).toBe(hostRun.loss.loss);
    if (emu) {
      // Host → device: the token ids (twice), the mask and the per-row advantages and row weights; device → host:
      // per-row sums and flags. A single per-token f32 array would be 4·n bytes.
      expect(toDevice).toBeLessThan(2 * 4 * n + n + 64 * B + 1024);
      expect(toHost).toBeLessThan(4 * n);
      const hostCopies = copiesOf(() => step(logits, oldLogprob, false));
      expect(hostCopies.toDevice).toBeGreaterThan(toDevice + 4 * V * n);
    }
    const glp = Float64Array.from(hostRun.loss.gradLogprob as Float32Array);
    const ref = refTokenStatsBackward(logits, { tokens, temperature, gradLogprob: Float32Array.from(glp) });
    expect(hostRun.grad as Float32Array).toMatchReference(ref, { rtol: 1e-4, atol: 1e-7 }, 'gradient vs the float64 reference');
  });
});

maybe('the glue guards device handles', () => {
  test('a buffer too small for the shape, and a handle given to the cpu addon', () => {
    const device = cudaDevice();
    const small = device.empty([3], 'f32');
    live.push(small);
    const h = small.handle('small');
    const args = (a: unknown) => [4, false, a, new Float32Array(4), new Float32Array(4), new Float32Array(4), 3, 0, false, false] as const;
    expect(() => (device.addon.klPenalty as (...a: unknown[]) => unknown)(...args(h)))
      .toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
    expect(() => (nativeAddon().klPenalty as (...a: unknown[]) => unknown)(...args(h)))
      .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
