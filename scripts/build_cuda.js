#!/usr/bin/env node
/**
 * Builds the CUDA addon with cmake-js into its own folder (never build/Release, which holds the CPU addon):
 *   node scripts/build_cuda.js              the GPU build (nvcc) → build-cuda/Release/advantage_engine_cuda.node
 *   node scripts/build_cuda.js --emulation  the same kernels for the CPU emulation (g++ only)
 *                                           → build-cuda-emu/Release/advantage_engine_cuda_emu.node
 * Incremental (ninja / make decide what to recompile). Prints the built file's path on the last line; exits 0
 * with a message and no path when the GPU build is skipped because nvcc is missing; non-zero on a failed build.
 * Concurrent callers (jest workers, CI) are serialised by a lock directory next to the build folder.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const emulation = process.argv.includes('--emulation');
const out = path.join(root, emulation ? 'build-cuda-emu' : 'build-cuda');
const target = emulation ? 'advantage_engine_cuda_emu' : 'advantage_engine_cuda';
const file = path.join(out, 'Release', `${target}.node`);

function haveNvcc() {
  return spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;
}

function withLock(fn) {
  const lock = `${out}.lock`;
  const deadline = Date.now() + 15 * 60 * 1000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      // A lock older than the longest build belongs to a process that died.
      const age = Date.now() - fs.statSync(lock).mtimeMs;
      if (age > 15 * 60 * 1000) fs.rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

if (!emulation && !haveNvcc()) {
  console.log('advantage-engine: nvcc not found; the CUDA addon is not built (the js and cpu backends serve)');
  process.exit(0);
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'build', '-O', out, '-T', target];
if (emulation) args.push('--CDAE_CUDA_EMULATION=ON');
const result = withLock(() => spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] }));
if (result.status !== 0 || !fs.existsSync(file)) {
  console.error(`advantage-engine: the ${emulation ? 'emulation' : 'CUDA'} addon build failed (status ${result.status})`);
  process.exit(result.status || 1);
}
console.log(file);
