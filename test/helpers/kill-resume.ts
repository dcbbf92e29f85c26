/**
 * Starts an extraction process, kills it with SIGKILL once it has written `minChunks` chunk files
 * under OUT/.partial, and returns how many it had written and its pid: the first half of every
 * "resume after kill -9" test.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export async function killAfterChunks(argv: string[], out: string, opts: { minChunks: number; timeoutMs: number }): Promise<{ chunks: number; pid: number | undefined }> {
  const child = spawn(process.execPath, argv, { stdio: 'ignore' });
  const partial = join(out, '.partial');
  const chunks = () => (existsSync(partial) ? readdirSync(partial).filter((f) => f.startsWith('chunk-')).length : 0);
  const t0 = Date.now();
  while (chunks() < opts.minChunks && Date.now() - t0 < opts.timeoutMs) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  return { chunks: chunks(), pid: child.pid };
}
