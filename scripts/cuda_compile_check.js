#!/usr/bin/env node
/**
 * Compiles every CUDA source (cuda/*.cu) with nvcc for every architecture the addon ships (SASS for sm_80,
 * sm_86, sm_89, sm_90, PTX for compute_90), warnings as errors, and saves ptxas's register / spill report:
 *   build-cuda/check/ptxas-report.txt    nvcc's own output
 *   build-cuda/check/ptxas-report.json   {seconds, kernels: [{file, arch, kernel, registers, spillStores, spillLoads,
 *                                         stackFrame, sharedMemory}], spills}
 * Exits 0 when everything compiled without a spill, 1 otherwise, and 0 with "skipped" when nvcc is missing.
 * Run by .ci/run (the compile takes minutes on a 2-core machine) and by `npm run check:cuda`.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const outDir = path.join(root, 'build-cuda', 'check');
const ARCHS = ['80', '86', '89', '90'];

if (spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.log('cuda compile check skipped: nvcc not found');
  process.exit(0);
}
fs.mkdirSync(outDir, { recursive: true });
const sources = fs.readdirSync(path.join(root, 'cuda')).filter((f) => f.endsWith('.cu')).sort();
const gencode = ARCHS.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]).concat(['-gencode', 'arch=compute_90,code=compute_90']);
const start = Date.now();
let report = '';
let failed = false;
for (const file of sources) {
  const args = [
    '-std=c++17', '-O3', '--expt-relaxed-constexpr', '-Werror', 'all-warnings', '-Xcompiler', '-Wall,-Wextra,-Werror',
    '-Xptxas', '-v,-warn-spills,-warn-lmem-usage', ...gencode, '-c', path.join('cuda', file), '-o', path.join(outDir, `${file}.o`),
  ];
  const r = spawnSync('nvcc', args, { cwd: root, encoding: 'utf8' });
  report += `==== nvcc ${args.join(' ')}\n${r.stdout}${r.stderr}`;
  if (r.status !== 0) {
    failed = true;
    console.error(`nvcc failed on cuda/${file}:\n${r.stderr}`);
  }
}
const seconds = (Date.now() - start) / 1000;
fs.writeFileSync(path.join(outDir, 'ptxas-report.txt'), report);

// ptxas -v: "Compiling entry function 'X' for 'sm_80'", then "N bytes stack frame, S bytes spill stores, L bytes
// spill loads" and "Used R registers, ... B bytes smem".
const kernels = [];
let current = null;
let currentFile = null;
for (const line of report.split('\n')) {
  let m = /^==== nvcc .* -c cuda\/(\S+)/.exec(line);
  if (m) currentFile = m[1];
  m = /Compiling entry function '([^']+)' for '(\w+)'/.exec(line);
  if (m) {
    current = { file: currentFile, arch: m[2], kernel: m[1], registers: 0, spillStores: 0, spillLoads: 0, stackFrame: 0, sharedMemory: 0 };
    kernels.push(current);
    continue;
  }
  if (!current) continue;
  m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
  if (m) [current.stackFrame, current.spillStores, current.spillLoads] = m.slice(1).map(Number);
  m = /Used (\d+) registers/.exec(line);
  if (m) current.registers = Number(m[1]);
  m = /(\d+) bytes smem/.exec(line);
  if (m) current.sharedMemory = Number(m[1]);
}
const demangled = spawnSync('c++filt', { input: kernels.map((k) => k.kernel).join('\n'), encoding: 'utf8' });
if (demangled.status === 0) demangled.stdout.trim().split('\n').forEach((name, i) => { if (kernels[i]) kernels[i].name = name; });
const spills = kernels.filter((k) => k.spillStores > 0 || k.spillLoads > 0);
fs.writeFileSync(path.join(outDir, 'ptxas-report.json'), JSON.stringify({ seconds, archs: ARCHS, sources, kernels, spills: spills.length }, null, 2));
const maxRegs = kernels.reduce((a, k) => Math.max(a, k.registers), 0);
console.log(`cuda compile check: ${sources.length} sources, ${kernels.length} kernel builds (${ARCHS.map((a) => `sm_${a}`).join(', ')}), ` +
  `${spills.length} with spills, at most ${maxRegs} registers, ${seconds.toFixed(1)} s; report in ${path.relative(root, outDir)}/`);
for (const k of spills) console.error(`spill: ${k.arch} ${k.name ?? k.kernel}: ${k.spillStores} B stores, ${k.spillLoads} B loads`);
process.exit(failed || spills.length > 0 ? 1 : 0);
