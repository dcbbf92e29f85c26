/**
 * The paper's seeded shuffle-and-truncate, which makes two row sets (e.g. aligned and misaligned
 * responses) the same size before their activation means are compared.
 *
 * Exactly:
 * - shuffled(items, seed): a copy of `items` permuted by Fisher-Yates driven by a FRESH
 *   `rng(seed)` (mulberry32, src/runtime/random.ts): for i = n-1 down to 1,
 *   j = floor(r() * (i + 1)), swap [i] and [j]. It draws exactly n-1 numbers.
 * - balance(a, b, seed) = { a: shuffled(a, seed).slice(0, m), b: shuffled(b, seed).slice(0, m) }
 *   with m = min(a.length, b.length). BOTH sets are shuffled (the smaller one too, so the order of
 *   the output never follows the file order), each with its own generator seeded with the same
 *   seed, as the reference shuffles each data frame with the same random state.
 *
 * Because each side's result depends only on its own items, its size m and the seed, two separate
 * runs — `extract A --balance-with B` and `extract B --balance-with A`, the same seed — select
 * exactly the rows a single balance(A, B, seed) would: see balanceTo.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { rng } from '../runtime/random.js';
import { readJsonl, type ReadOptions } from './rows.js';

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new EmlensError(`--seed must be an integer from 0 to 4294967295, got ${seed}`);
  }
}

/** A seeded Fisher-Yates shuffle of a copy of `items` (see the module comment). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  checkSeed(seed);
  const out = items.slice();
  const r = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

/**
 * One side of a balance: shuffled(items, seed) truncated to min(n, items.length). For
 * `--balance-with`, with n = countRowsForBalance(other): equals the matching side of
 * balance(items, other, seed).
 */
export function balanceTo<T>(items: readonly T[], n: number, seed: number): T[] {
  if (!Number.isInteger(n) || n < 0) throw new EmlensError(`balance size must be a non-negative integer, got ${n}`);
  return shuffled(items, seed).slice(0, Math.min(n, items.length));
}

/**
 * Seeded shuffle-and-truncate of two sets to equal size: both shuffled (each with a fresh
 * rng(seed)), the larger truncated to the smaller's size. Deterministic for a seed; the inputs are
 * not modified.
 */
export function balance<T>(a: T[], b: T[], seed: number): { a: T[]; b: T[] } {
  const m = Math.min(a.length, b.length);
  return { a: balanceTo(a, m, seed), b: balanceTo(b, m, seed) };
}

/**
 * The size of the other side for `--balance-with DIR_OR_FILE`:
 * - a directory: the `rows` field of DIR/meta.json (the meta an `emlens extract` output folder
 *   has), a non-negative integer;
 * - a file: the number of rows of that JSONL selected by `opts` (its `where`, its `skipBad`), i.e.
 *   without options its non-blank lines — every one of which must be a good row.
 */
export function countRowsForBalance(dirOrFile: string, opts: ReadOptions = {}): number {
  if (!existsSync(dirOrFile)) throw new EmlensError(`--balance-with ${dirOrFile}: no such file or folder`);
  if (statSync(dirOrFile).isDirectory()) {
    const metaPath = join(dirOrFile, 'meta.json');
    if (!existsSync(metaPath)) {
      throw new EmlensError(`--balance-with ${dirOrFile}: a folder must be an emlens extract output with a meta.json; this one has none`);
    }
    let meta: unknown;
    try {
      meta = JSON.parse(readFileSync(metaPath, 'utf8'));
    } catch (e) {
      const why = String((e as Error)?.message ?? e).replace(/\s+/g, ' ').slice(0, 160);
      throw new EmlensError(`--balance-with ${metaPath}: not valid JSON (${why})`);
    }
    const rows = meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? (meta as Record<string, unknown>).rows : undefined;
    if (rows === undefined) throw new EmlensError(`--balance-with ${metaPath}: has no "rows" field; is it an emlens extract output?`);
    if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 0) {
      throw new EmlensError(`--balance-with ${metaPath}: "rows" must be a non-negative integer, got ${JSON.stringify(rows)}`);
    }
    return rows;
  }
  try {
    return readJsonl(dirOrFile, opts).rows.length;
  } catch (e) {
    if (e instanceof EmlensError && !e.message.startsWith('--')) throw new EmlensError(`--balance-with ${e.message}`);
    throw e;
  }
}
