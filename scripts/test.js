#!/usr/bin/env node
// The project's test command (`npm test`): jest with the arguments given (e.g. `npm test -- --ci --json
// --outputFile=x`), then the Python bridge's pytest suite (python/tests) against the compiled package.
//
//   - dist/ is recompiled first (tsc) when a .ts file under lib/ or bench/ is newer than dist/lib/cli.js,
//     since the bridge tests start `node dist/lib/cli.js serve --stdio`.
//   - pytest runs under `python3` ($AE_PYTHON overrides), which needs numpy and pytest. When the Debian
//     system Python (/usr/bin/python3) is another interpreter and has torch, the torch tests
//     (python/tests/test_torch.py) run under it too; elsewhere they skip.
//   - With AE_TEST_REPORTS=<dir>, pytest writes JUnit XML there (pytest.xml, pytest-torch.xml); .ci/run
//     reads the counts from it.
//   - AE_SKIP_PYTHON=1 skips the Python suite (for a machine without Python); it says so.
// Exits non-zero when any suite failed or could not run.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const run = (cmd, args, env) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } }).status ?? 1;

function newestSource(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

function python(cmd, code) {
  return spawnSync(cmd, ['-c', code], { cwd: root, encoding: 'utf8' });
}

const failures = [];
if (run(process.execPath, [require.resolve('jest/bin/jest'), ...process.argv.slice(2)]) !== 0) failures.push('jest');

if (process.env.AE_SKIP_PYTHON === '1') {
  console.log('\npython bridge tests: skipped (AE_SKIP_PYTHON=1)');
} else {
  const cli = path.join(root, 'dist', 'lib', 'cli.js');
  const built = fs.existsSync(cli) ? fs.statSync(cli).mtimeMs : 0;
  if (built < Math.max(newestSource(path.join(root, 'lib')), newestSource(path.join(root, 'bench')))) {
    console.log('\npython bridge tests: compiling dist/ (tsc -p tsconfig.json)');
    run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json']);
  }
  const reports = process.env.AE_TEST_REPORTS;
  const junit = (name) => (reports ? [`--junitxml=${path.join(reports, name)}`] : []);
  const py = process.env.AE_PYTHON || 'python3';
  const check = python(py, 'import numpy, pytest, sys; print(sys.executable)');
  if (check.status !== 0) {
    console.error(`\npython bridge tests: ${py} with numpy and pytest is needed (${(check.stderr || check.error || '').toString().trim().split('\n').pop()}); set AE_PYTHON, or AE_SKIP_PYTHON=1 to skip`);
    failures.push('pytest (no python)');
  } else {
    console.log(`\npython bridge tests: ${check.stdout.trim()}`);
    const common = ['-m', 'pytest', 'python/tests', '-q', '-p', 'no:cacheprovider'];
    if (run(py, [...common, ...junit('pytest.xml')]) !== 0) failures.push('pytest');
    const system = '/usr/bin/python3';
    const torch = fs.existsSync(system) ? python(system, 'import torch, numpy, pytest, sys; print(sys.executable)') : null;
    if (torch && torch.status === 0 && torch.stdout.trim() !== check.stdout.trim()) {
      console.log(`\npython bridge tests with torch: ${system}`);
      const args = ['-m', 'pytest', 'python/tests/test_torch.py', '-q', '-p', 'no:cacheprovider', ...junit('pytest-torch.xml')];
      if (run(system, args) !== 0) failures.push('pytest (torch)');
    }
  }
}
if (failures.length) {
  console.error(`\nnpm test: failed: ${failures.join(', ')}`);
  process.exit(1);
}
