/**
 * The judges' on-disk cache: one JSON file per key (sha256 of what defines the call), written
 * atomically, so a rerun or a run resumed after a kill makes no call it already made, and
 * several processes can share one folder.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export class JudgeCache<T> {
  constructor(readonly dir: string) {}

  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  /** The stored value, or undefined when absent or unreadable (then it is fetched again). */
  get(key: string, valid: (v: unknown) => v is T): T | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(key), 'utf8');
    } catch {
      return undefined;
    }
    try {
      const v: unknown = JSON.parse(text);
      return valid(v) ? v : undefined;
    } catch {
      return undefined;
    }
  }

  put(key: string, value: T): void {
    writeFileAtomic(this.path(key), [JSON.stringify(value), '\n']);
  }
}
