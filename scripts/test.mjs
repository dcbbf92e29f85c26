#!/usr/bin/env node
// npm test: build, run vitest, then print the plain closing line CI reads ("N passed, N failed").
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit' }).status ?? 1;
if (run('npx', ['tsc', '-p', 'tsconfig.json']) !== 0) process.exit(1);
// The browser bundle (dist-web/): the playground and its tests serve it.
if (run('node', ['scripts/build-web.mjs']) !== 0) process.exit(1);
const out = '.vitest-results.json';
rmSync(out, { force: true });
const code = run('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`, ...process.argv.slice(2)]);
try {
  const r = JSON.parse(readFileSync(out, 'utf8'));
  const skipped = r.numPendingTests + r.numTodoTests;
  // A file that fails to load or in a hook fails no single test; count it as one failure.
  const brokenFiles = r.testResults.filter((f) => f.status === 'failed' && !f.assertionResults.some((a) => a.status === 'failed')).length;
  console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests + brokenFiles} failed${skipped ? `, ${skipped} skipped` : ''}`);
} catch {
  console.log('\ntests: 0 passed, 1 failed');
}
process.exit(code);
