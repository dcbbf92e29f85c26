/**
 * Output paths, checked before anything is written: every ancestor that exists must be a folder
 * and the nearest one writable. Folders are then created one level at a time, because Node's
 * recursive mkdir never returns where mkdir says ENOENT for a parent that exists (under /proc it
 * spins at 100% CPU). Errors are one line naming the flag (when given) and the path.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EmlensError } from '../errors.js';

/** Prefix of a message: the flag and the path the user gave, or nothing for internal paths. */
const prefix = (path: string, flag?: string) => (flag ? `${flag} ${path}: ` : '');

function errno(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENOENT: 'no such file or folder',
    ENOTDIR: 'a parent is not a folder',
    EISDIR: 'is a folder',
  };
  return code ? `${words[code] ?? 'failed'} (${code})` : (e as Error).message.replace(/\s*\n\s*/g, ' ');
}

/** What is at `p`: a folder, something else, nothing, or nothing because a parent is not a folder. */
function kindAt(p: string): 'dir' | 'other' | 'none' | 'under-file' {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'other';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'none';
    if (code === 'ENOTDIR') return 'under-file';
    throw new EmlensError(`cannot inspect ${p}: ${errno(e)}`);
  }
}

/**
 * Checks that folder `dir` exists or can be created; returns the folders to create, outermost
 * first. Creates nothing.
 */
function missingFolders(dir: string, who: string): string[] {
  const abs = resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    const k = kindAt(p);
    if (k === 'dir') break;
    if (k === 'other') throw new EmlensError(`${who}${p} is a file, not a folder`);
    if (k === 'none') missing.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  try {
    accessSync(p, constants.W_OK | constants.X_OK);
  } catch {
    throw new EmlensError(`${who}folder ${p} is not writable`);
  }
  return missing;
}

/** Makes folder `dir` (and its missing parents) after checking the chain; see the file comment. */
export function ensureDir(dir: string, flag?: string): void {
  const who = prefix(dir, flag);
  for (const p of missingFolders(dir, who)) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && kindAt(p) === 'dir') continue;
      throw new EmlensError(`${who}cannot create folder ${p}: ${errno(e)}`);
    }
  }
}

/**
 * Checks, creating nothing, that `path` can be written as a `kind` ('file': not an existing
 * folder, its folder creatable and writable; 'dir': not an existing file, creatable). For the
 * CLI to refuse a bad --out before any work is done.
 */
export function checkOutputPath(path: string, kind: 'file' | 'dir', flag?: string): void {
  const who = prefix(path, flag);
  if (kind === 'file') {
    if (kindAt(resolve(path)) === 'dir') throw new EmlensError(`${who}is a folder; a file name is expected here`);
    missingFolders(dirname(resolve(path)), who);
  } else {
    missingFolders(path, who);
  }
}

/** One line for a file-system error while writing `path`; other errors (bugs) pass unchanged. */
export function writeError(path: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? new EmlensError(`cannot write ${path}: ${errno(e)}`) : e;
}
