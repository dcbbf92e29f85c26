/**
 * Inter-process locks on hub blobs, compatible with huggingface_hub: it takes an exclusive
 * flock(2) on `<cache>/.locks/<repo folder>/<etag>.lock` (python `filelock`) while it downloads
 * that blob, so emlens takes the same lock on the same file and the two never append to one
 * `.incomplete` file at once.
 *
 * Node has no flock, so util-linux's `flock` command holds it: it takes the lock, then runs `cat`
 * on a pipe from us; closing the pipe (or our process dying) ends `cat` and releases the lock.
 * Where `flock` is missing (not Linux), downloads go unlocked, as before.
 */
import { spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { EmlensError } from '../errors.js';
import { ensureDir } from '../io/paths.js';

export interface HeldLock {
  release(): Promise<void>;
}

const NO_LOCK: HeldLock = { release: async () => {} };

/**
 * Blocks until the exclusive lock on `path` is ours. `onWait` is called once if the lock is not
 * ours within `waitNoticeMs` (another process holds it).
 */
export function acquireLock(path: string, onWait?: () => void, waitNoticeMs = 1000): Promise<HeldLock> {
  ensureDir(dirname(path));
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', path, 'sh', '-c', 'echo locked && exec cat >/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let settled = false;
    let stderr = '';
    const notice = setTimeout(() => onWait?.(), waitNoticeMs);
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(notice);
      f();
    };
    child.once('error', (e: NodeJS.ErrnoException) =>
      settle(() => (e.code === 'ENOENT' ? resolve(NO_LOCK) : reject(new EmlensError(`cannot lock ${path}: ${e.message}`)))),
    );
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      if (!d.toString().includes('locked')) return;
      settle(() =>
        resolve({
          release: async () => {
            child.stdin.end();
            await exited;
          },
        }),
      );
    });
    child.once('close', (code) => settle(() => reject(new EmlensError(`cannot lock ${path}: flock exited ${code} ${stderr.trim()}`))));
  });
}
