/**
 * The exit monitor's logits path on the CUDA backend (SPEC §6: entropy and max-prob of each live row by the CUDA
 * token statistics), verified on the emulation build (test/cuda_setup.ts): host logits and device logits
 * (a DeviceTensor that never leaves the device) against the float64 token-statistics reference, decisions equal
 * to the cpu backend's on the same stream (thresholds far from the measured values), pushAsync equal to push,
 * the same bits under every thread schedule; device logits without backend 'cuda', and a row count that does not
 * match the live set, are refused with coded errors.
 */
import { createExitMonitor, fromNumbers, type Tensor } from '../lib';
import { cudaDevice } from '../lib/cuda';
import { refTokenStats } from './ref/token_stats';
import { makeLogits, rng, STATS_TOL } from './helpers';
import { EmulatorControls, loadCudaBackend, SCHEDULES, TOOLCHAIN } from './cuda_setup';

if (!TOOLCHAIN) console.log('cuda exit-monitor emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

/** The rows of `ids` of a [batch, V] stream step as a [rows, V] tensor. */
function rowsOf(stream: Tensor, ids: Int32Array, V: number): Tensor {
  const values = new Float64Array(ids.length * V);
  const widen = (v: number) => (stream.dtype === 'bf16' ? new Float32Array(new Uint32Array([v << 16]).buffer)[0] : v);
  ids.forEach((id, k) => {
    for (let j = 0; j < V; j++) values[k * V + j] = widen(stream.data[id * V + j]);
  });
  return fromNumbers(values, [ids.length, V], stream.dtype);
}

maybe('exit monitor, logits path on the cuda backend', () => {
  test.each(['f32', 'bf16'] as const)('%s logits, host and device: the reference statistics, the cpu decisions', async (dtype) => {
    const r = rng(`cuda monitor ${dtype}`);
    const batch = 6, V = 2051;
    const steps = [0, 1, 2, 3].map(() => makeLogits(r, [batch, V], dtype).logits);
    // Heavy-tailed logits give rows of entropy ≈ 0 (≤ 1e-6 in f32) and rows well above 0.1: a threshold of 0.01 lies
    // far from every value, so each backend decides the same way and some rows exit.
    const rules = { entropyBelow: { threshold: 0.01, k: 2 }, budget: { maxTokens: 4 } };
    const device = cudaDevice();
    const host = createExitMonitor({ batch, rules, temperature: 0.8, backend: 'cuda' });
    const onDevice = createExitMonitor({ batch, rules, temperature: 0.8, backend: 'cuda' });
    const cpu = createExitMonitor({ batch, rules, temperature: 0.8, backend: 'cpu' });
    for (const [k, stream] of steps.entries()) {
      const ids = host.live();
      if (ids.length === 0) break;
      const logits = rowsOf(stream, ids, V);
      const ref = refTokenStats(logits, { temperature: 0.8 });
      emu?.emuSetSchedule(SCHEDULES[k % 3].kind, k);
      const got = k % 2 === 0 ? host.push({ logits }) : await host.pushAsync({ logits });
      expect(got.entropy).toMatchReference(ref.entropy, STATS_TOL, `step ${k} entropy`);
      expect(got.maxProb).toMatchReference(ref.maxProb, STATS_TOL, `step ${k} maxProb`);
      const d = device.toDevice(logits);
      try {
        emu?.emuSetSchedule(SCHEDULES[(k + 1) % 3].kind, k + 1);
        const fromDevice = onDevice.push({ logits: d });
        expect(fromDevice.entropy).toEqualBitwise(got.entropy, `step ${k} device entropy`);
        expect(fromDevice.maxProb).toEqualBitwise(got.maxProb, `step ${k} device maxProb`);
        expect(fromDevice.decisions).toEqual(got.decisions);
      } finally {
        d.dispose();
      }
      const want = cpu.push({ logits });
      expect(got.decisions).toEqual(want.decisions);
      expect(got.rules).toEqual(want.rules);
    }
    expect(host.summary()).toEqual(cpu.summary());
    expect(host.summary().some((s) => s.rule === 'entropyBelow')).toBe(true);
  });

  test('coded errors: device logits without the cuda backend, a row count other than the live set', () => {
    const r = rng('cuda monitor errors');
    const { logits } = makeLogits(r, [3, 17], 'f32');
    const d = cudaDevice().toDevice(logits);
    try {
      const cpu = createExitMonitor({ batch: 3, rules: { budget: { maxTokens: 9 } }, backend: 'cpu' });
      expect(() => cpu.push({ logits: d })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'step.logits' }));
      const monitor = createExitMonitor({ batch: 4, rules: { budget: { maxTokens: 9 } }, backend: 'cuda' });
      expect(() => monitor.push({ logits: d })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'step.logits.shape' }));
      expect(() => monitor.push({ logits })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
    } finally {
      d.dispose();
    }
  });
});
