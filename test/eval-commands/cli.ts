/** The emlens CLI as a child process, awaited without blocking this process (a fake judge server may run in it). */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '../..');
export const BIN = join(ROOT, 'dist/cli/main.js');

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    p.on('error', rej);
    p.on('close', (status, signal) => res({ status, signal, stdout, stderr }));
  });
}

/** The stderr lines that are not progress or warnings. */
export const errorLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('emlens: ') && !l.startsWith('emlens: warning'));
