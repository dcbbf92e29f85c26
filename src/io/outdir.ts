/**
 * Creating an output folder and its missing parents, one level at a time.
 *
 * Not mkdirSync(dir, { recursive: true }): on Node 20 that never returns when mkdir fails with
 * ENOENT although the parent exists (any path under /proc, say); it retries at 100% CPU forever.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EmlensError } from '../errors.js';

/** Makes `dir` (and its parents); a failure is one line naming `label` (e.g. "--out /x") and the cause. */
export function makeOutDir(dir: string, label: string): void {
  const missing: string[] = [];
  let p = resolve(dir);
  for (;;) {
    const st = statOf(p);
    if (st) {
      if (!st.isDirectory()) throw new EmlensError(`${label}: ${p} exists and is not a folder`);
      break;
    }
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const m of missing.reverse()) {
    try {
      mkdirSync(m);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Another process made it in between: fine.
      if (code === 'EEXIST' && statOf(m)?.isDirectory()) continue;
      throw new EmlensError(`${label}: cannot create folder ${m} (${code ?? (e as Error).message})`);
    }
  }
}

/** stat, or undefined when nothing is there (ENOENT, or ENOTDIR: a parent is a file). */
function statOf(p: string) {
  try {
    return statSync(p, { throwIfNoEntry: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw new EmlensError(`cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
