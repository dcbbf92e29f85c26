/** Flag parsers for commander: each rejects bad input with one line naming the flag. */
import { readFileSync, statSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { EmlensError } from '../errors.js';

export function intArg(flag: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

export function numArg(flag: string, check?: (n: number) => string | null) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number, got "${v}"`);
    const err = check?.(n);
    if (err) throw new InvalidArgumentError(`${flag} ${err}, got ${v}`);
    return n;
  };
}

/** "all" or a comma list of layer numbers. */
export function layersArg(flag: string) {
  return (v: string): number[] | 'all' => {
    if (v === 'all') return 'all';
    const parts = v.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p))) throw new InvalidArgumentError(`${flag} must be "all" or a comma list of layer numbers, got "${v}"`);
    return [...new Set(parts.map(Number))].sort((a, b) => a - b);
  };
}

/** A flag that takes one of `values`. */
export const choice =
  <T extends string>(flag: string, values: readonly T[]) =>
  (v: string): T => {
    if (!values.includes(v as T)) throw new InvalidArgumentError(`${flag} must be one of ${values.join(', ')}, got "${v}"`);
    return v as T;
  };

/** Warnings go to stderr, one line each, prefixed like errors. */
export function warn(lines: string[]): void {
  for (const l of lines) process.stderr.write(`emlens: warning: ${l}\n`);
}

/**
 * The text of a file named by `flag` (e.g. --prompt-file), verbatim: for values too long or too
 * awkward for a command line. Must be UTF-8.
 */
export function readTextArg(flag: string, path: string): string {
  let bytes: Buffer;
  try {
    if (statSync(path).isDirectory()) throw new EmlensError(`${flag} ${path}: is a folder, not a file`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof EmlensError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new EmlensError(`${flag} ${path}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? (e as Error).message})`}`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new EmlensError(`${flag} ${path}: not valid UTF-8 text`);
  }
}

/** A byte size: "512", "64KiB", "16MiB", "2GiB" (also KB/MB/GB as powers of 1000). */
export function sizeArg(flag: string) {
  const units: Record<string, number> = { '': 1, b: 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, kb: 1e3, mb: 1e6, gb: 1e9, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 };
  return (v: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
    const u = m ? units[m[2]!.toLowerCase()] : undefined;
    if (!m || u === undefined || Number(m[1]) <= 0) throw new InvalidArgumentError(`${flag} must be a size such as 512KiB, 64MiB or 2GiB, got "${v}"`);
    return Math.floor(Number(m[1]) * u);
  };
}
