/**
 * A hash of a model's weights for provenance: sha256 over the sha256 of each weight file (sorted
 * by name). Files in the Hugging Face cache are LFS blobs named by their sha256, so their hash
 * is free; other files are hashed once and remembered by (real path, size, mtime).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { emlensCacheDir } from '../cache.js';
import { writeFileAtomic } from '../io/atomic.js';

type HashCache = Record<string, { size: number; mtimeMs: number; sha256: string }>;

function cacheFile(): string {
  return join(emlensCacheDir(), 'file-hashes.json');
}

function loadCache(): HashCache {
  try {
    return JSON.parse(readFileSync(cacheFile(), 'utf8')) as HashCache;
  } catch {
    return {};
  }
}

export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

export function fileSha256Cached(file: string, cache: HashCache): string {
  const real = realpathSync(file);
  // An HF cache blob's name is its sha256 (LFS files).
  const name = basename(real);
  if (/^[0-9a-f]{64}$/.test(name) && real.includes(`${sep}blobs${sep}`)) return name;
  const st = statSync(real);
  const hit = cache[real];
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.sha256;
  const sha256 = sha256File(real);
  cache[real] = { size: st.size, mtimeMs: st.mtimeMs, sha256 };
  return sha256;
}

export function weightsFingerprint(files: string[]): string {
  const cache = loadCache();
  const before = JSON.stringify(cache);
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => basename(a).localeCompare(basename(b)))) {
    h.update(`${basename(f)}:${fileSha256Cached(f, cache)}\n`);
  }
  if (JSON.stringify(cache) !== before) {
    try {
      writeFileAtomic(cacheFile(), [JSON.stringify(cache)]);
    } catch {
      // A read-only cache only costs re-hashing next time.
    }
  }
  return h.digest('hex');
}


/** sha256 of a file of a model folder, null when the folder has none (server and client compare them). */
export function fileSha256(file: string): string | null {
  return existsSync(file) ? sha256File(file) : null;
}
