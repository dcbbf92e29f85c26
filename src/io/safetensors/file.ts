/** Reading byte ranges of files with one-line errors naming the file. */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { EmlensError } from '../../errors.js';
import { fname } from './common.js';

/** fs.readSync / writeSync refuse lengths of 2 GiB and more; stay well below. */
export const IO_CHUNK_BYTES = 1 << 28;

export function openForRead(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new EmlensError(`${fname(file)}: cannot open for reading (${code})`);
  }
  // A folder opens fine on Linux and fails only at the first read (EISDIR).
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new EmlensError(`${fname(file)}: is a folder, not a file`);
  }
  return fd;
}

/** Reads exactly target.byteLength bytes at `position`, in chunks. */
export function readFully(fd: number, target: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < target.byteLength) {
    const len = Math.min(IO_CHUNK_BYTES, target.byteLength - off);
    const n = readSync(fd, target, off, len, position + off);
    if (n === 0) {
      throw new EmlensError(
        `${fname(file)}: unexpected end of file at byte ${position + off} (wanted ${target.byteLength - off} more bytes)`,
      );
    }
    off += n;
  }
}
