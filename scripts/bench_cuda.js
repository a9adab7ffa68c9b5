#!/usr/bin/env node
/**
 * GPU benchmark of the CUDA token statistics (npm run bench:cuda -- [flags]): each op on device-resident
 * logits, timed on the device (CUDA events around the kernels, lib/cuda.ts lastDeviceMs), against the device's
 * bandwidth measured in the same process by device-to-device copies (bytes read + written per second).
 * Prints one JSON object per case on stdout, in the fields of `advantage-engine bench --json`, and a table on
 * stderr.
 *
 *   --op token-stats|token-stats-backward|token-stats-backward-inplace|full-kl|all   (default all)
 *   --dtype bf16|f16|f32 (default bf16)   --rows 16384   --cols 151936   --repeats 20
 *   --addon <path>   another build of the addon (the emulation, to check this script on a machine without a GPU)
 *
 * Targets (issue 7): forward ≥ 0.85 of the measured bandwidth at 16384 × 151936 bf16; backward ≥ 0.75.
 * Needs the compiled TypeScript (npm run build:ts) and the GPU addon (npm run build:cuda).
 */
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');
const { openCudaAddon, cudaDevice } = require(path.join(root, 'dist', 'lib', 'cuda.js'));
const { numberToBf16, numberToF16 } = require(path.join(root, 'dist', 'lib', 'tensor.js'));

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const opArg = flag('op', 'all');
const dtype = flag('dtype', 'bf16');
const rows = Number(flag('rows', '16384'));
const cols = Number(flag('cols', '151936'));
const repeats = Number(flag('repeats', '20'));
const addonPath = flag('addon', null);
const OPS = ['token-stats', 'token-stats-backward', 'token-stats-backward-inplace', 'full-kl'];
const ops = opArg === 'all' ? OPS : [opArg];
if (!ops.every((o) => OPS.includes(o)) || !['bf16', 'f16', 'f32'].includes(dtype) || !(rows >= 1) || !(cols >= 1)) {
  console.error(`bench_cuda: bad arguments (ops ${OPS.join(', ')}; dtype bf16 | f16 | f32; rows, cols ≥ 1)`);
  process.exit(2);
}
const device = addonPath ? openCudaAddon(addonPath) : cudaDevice();
const info = device.info();
const elementBytes = dtype === 'f32' ? 4 : 2;

// A plain LCG and Box-Muller: the logits only need a realistic spread (values do not change the traffic).
let state = 0x9e3779b9;
function uniform() {
  state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
  return (state + 0.5) / 2 ** 32;
}
function normal() {
  return Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}
const encode = dtype === 'bf16' ? numberToBf16 : dtype === 'f16' ? numberToF16 : (x) => x;

/** A device tensor of rows × cols random logits, filled block by block (the host never holds all of it). */
function deviceLogits() {
  const d = device.empty([rows, cols], dtype);
  const blockRows = Math.max(1, Math.min(rows, Math.floor((64 << 20) / (cols * elementBytes))));
  const block = dtype === 'f32' ? new Float32Array(blockRows * cols) : new Uint16Array(blockRows * cols);
  for (let i = 0; i < block.length; i++) block[i] = encode(3 * normal());
  for (let r = 0; r < rows; r += blockRows) {
    const n = Math.min(blockRows, rows - r);
    device.addon.copy(d.handle('logits'), block.subarray(0, n * cols), r * cols * elementBytes, true);
  }
  return d;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const bandwidth = device.measureBandwidth(Math.min(1 << 30, rows * cols * elementBytes), repeats);
console.error(`device: ${info.name} (${info.build}), copy bandwidth ${bandwidth.medianGbPerSec.toFixed(1)} GB/s median, ` +
  `${bandwidth.bestGbPerSec.toFixed(1)} best`);
const logits = deviceLogits();
const tokens = new Int32Array(rows).map((_, i) => (i * 7919) % cols);
const gradLogprob = new Float32Array(rows).fill(-1 / rows);
const gradEntropy = new Float32Array(rows).fill(-0.01 / rows);
const forward = device.tokenStatsSync(logits, { tokens, outputs: ['logsumexp', 'entropy'] });
const logitBytes = rows * cols * elementBytes;
for (const op of ops) {
  let run;
  let bytesMoved;
  let extra = null;
  if (op === 'token-stats') {
    const out = { entropy: new Float32Array(rows), logprob: new Float32Array(rows), logsumexp: new Float32Array(rows),
      sumPiSquared: new Float32Array(rows), maxProb: new Float32Array(rows) };
    run = () => device.tokenStatsSync(logits, { tokens, out });
    bytesMoved = logitBytes;
  } else if (op === 'token-stats-backward') {
    extra = device.empty([rows, cols], 'f32');
    const out = extra;
    run = () => device.tokenStatsBackwardSync(logits, { tokens, gradLogprob, gradEntropy, logsumexp: forward.logsumexp, entropy: forward.entropy, out });
    bytesMoved = logitBytes + rows * cols * 4;
  } else if (op === 'token-stats-backward-inplace') {
    // Over a copy each time would add a copy; over the same logits the values drift but the traffic is the same.
    extra = deviceLogits();
    const target = extra;
    run = () => device.tokenStatsBackwardSync(target, { tokens, gradLogprob, gradEntropy, logsumexp: forward.logsumexp, entropy: forward.entropy, inPlace: true });
    bytesMoved = 2 * logitBytes;
  } else {
    extra = deviceLogits();
    const ref = extra;
    run = () => device.fullKlSync(logits, ref, { nonFinite: 'nan' });
    bytesMoved = 2 * logitBytes;
  }
  run(); // warm-up
  const samples = [];
  for (let k = 0; k < repeats; k++) {
    run();
    samples.push(device.lastDeviceMs());
  }
  if (extra) extra.dispose();
  const ms = median(samples);
  const gbPerSec = bytesMoved / (ms / 1e3) / 1e9;
  const result = {
    op, backend: 'cuda', dtype, rows, cols, threads: 1, medianMs: ms, elementsPerSec: rows * cols / (ms / 1e3), gbPerSec,
    readBandwidthGbPerSec: bandwidth.medianGbPerSec, bandwidthFraction: gbPerSec / bandwidth.medianGbPerSec, isa: null,
    samples: samples.length, device: info.name,
  };
  console.log(JSON.stringify(result));
  console.error(`${op.padEnd(30)} ${dtype} ${rows}×${cols}  ${ms.toFixed(3)} ms  ${gbPerSec.toFixed(1)} GB/s  ` +
    `${(result.bandwidthFraction * 100).toFixed(1)}% of the copy bandwidth`);
}
logits.dispose();
