/**
 * An exclusive lock on an output folder, so that two runs writing one folder cannot interleave
 * (or one --overwrite the other's work): DIR/.emlens.lock holds the holder's pid, host and start
 * time. It is written whole under a temporary name and hard-linked into place, which fails when
 * the lock exists (the O_EXCL guarantee, without a reader ever seeing a half-written lock).
 *
 * A lock left by a killed run (kill -9, power loss) is stale when its host is this one and its pid
 * is not running; the next run takes it over. A lock of another host cannot be checked and is
 * never taken over.
 */
import { hostname } from 'node:os';
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { ensureDir } from '../io/paths.js';

export const LOCK_FILE = '.emlens.lock';

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command: string;
}

export interface FolderLock {
  file: string;
  /** Removes the lock, if it is still this one. */
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function readHolder(file: string): { text: string; holder: LockHolder | null } | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    return { text, holder: Number.isInteger(h.pid) && typeof h.host === 'string' ? h : null };
  } catch {
    return { text, holder: null };
  }
}

/**
 * Takes the lock on `dir` (created if missing) for `command` (e.g. "extract"), or throws one line
 * naming the folder and the holder.
 */
export function lockFolder(dir: string, command: string, label = `--out ${dir}`): FolderLock {
  ensureDir(dir, label.split(' ')[0]);
  const file = join(dir, LOCK_FILE);
  const mine: LockHolder = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command };
  const text = JSON.stringify(mine);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
  } catch (e) {
    throw new EmlensError(`${label}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file);
        return {
          file,
          release: () => {
            if (readHolder(file)?.text === text) rmSync(file, { force: true });
          },
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new EmlensError(`${label}: cannot create ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      const seen = readHolder(file);
      if (seen === null) continue; // released in between
      const h = seen.holder;
      const stale = h !== null && h.host === mine.host && h.pid !== process.pid && !alive(h.pid);
      if (!stale || attempt >= 5) {
        const who = h ? `pid ${h.pid} on ${h.host}, ${h.command ?? 'emlens'} since ${h.started}` : 'unreadable lock';
        throw new EmlensError(`${dir}: in use by another emlens run (${who}); wait for it, or delete ${file} if that run is gone`);
      }
      takeOver(file, seen.text);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Removes a stale lock: moved aside first, so that when two runs take over the same stale lock
 * at once, the one that moved aside a fresh lock (the other run's) puts it back.
 */
function takeOver(file: string, staleText: string): void {
  const aside = `${file}.${process.pid}.stale`;
  try {
    renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const moved = readHolder(aside);
  if (moved !== null && moved.text !== staleText) {
    try {
      linkSync(aside, file);
    } catch {
      // A third run holds the lock now; the one we moved loses it (its release is then a no-op).
    }
  }
  rmSync(aside, { force: true });
}
