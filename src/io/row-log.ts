/**
 * Append-only JSONL logs of finished work (answers of a resumable run): whole lines appended and
 * fsync'd, read back with a torn last line (a kill during the write) dropped and cut off.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { EmlensError } from '../errors.js';

/**
 * The rows in `file` ([] when it does not exist). A torn last line is dropped and, with `repair`,
 * cut from the file, so the next append continues on a clean line. `what` names the file's kind in
 * the error for a line that is not JSON.
 */
export function readRowLog<T>(file: string, what: string, repair = true): T[] {
  if (!existsSync(file)) return [];
  const buf = readFileSync(file);
  const end = buf.lastIndexOf(0x0a) + 1; // bytes after the last newline: a line written in part
  if (repair && end < buf.length) truncateSync(file, end);
  const rows: T[] = [];
  buf
    .subarray(0, end)
    .toString('utf8')
    .split('\n')
    .forEach((l, i) => {
      if (l === '') return;
      try {
        rows.push(JSON.parse(l) as T);
      } catch {
        throw new EmlensError(`${file}: line ${i + 1} is not JSON; this is not ${what} emlens wrote, or it was edited`);
      }
    });
  return rows;
}

/** Appends rows as whole lines and makes them durable before the next batch starts. */
export function appendRowLog(file: string, rows: readonly unknown[]): void {
  if (rows.length === 0) return;
  const fd = openSync(file, 'a');
  try {
    writeSync(fd, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
