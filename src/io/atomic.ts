import { closeSync, fsyncSync, openSync, renameSync, writeSync, rmSync, statSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { EmlensError } from '../errors.js';
import { ensureDir, writeError } from './paths.js';

/**
 * Writes a file so that readers see either the old content or the whole new one, never a half:
 * write a temporary sibling, fsync, rename over the target. On any failure the temporary file is
 * removed and the error is one line naming `path`.
 */
export function writeFileAtomic(path: string, chunks: Iterable<Uint8Array | string>): void {
  try {
    ensureDir(dirname(path));
  } catch (e) {
    throw e instanceof EmlensError ? new EmlensError(`cannot write ${path}: ${e.message}`) : e;
  }
  if (isFolder(path)) throw new EmlensError(`cannot write ${path}: is a folder`);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    for (const c of chunks) {
      const buf = typeof c === 'string' ? Buffer.from(c, 'utf8') : c;
      let off = 0;
      while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    throw writeError(path, e);
  }
}

function isFolder(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
