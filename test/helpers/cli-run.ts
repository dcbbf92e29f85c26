/**
 * The compiled CLI as a child process, for tests of its flags: offline, on a private cache, never
 * on a backend from the environment; and the project's rule for bad input (one stderr line).
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { expect } from 'vitest';

const BIN = join(resolve(__dirname, '../..'), 'dist/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A runner of `emlens ARGS` with EMLENS_CACHE = cache (and any extra environment). */
export function cliRunner(cache: string): (args: string[], env?: Record<string, string>) => CliResult {
  return (args, env = {}) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', EMLENS_CACHE: cache, EMLENS_BACKEND: '', ...env }, timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
}

/** Exit `code` with exactly one stderr line matching `pattern`. */
export function expectOneLine(r: CliResult, code: number, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}
