import { copyFileSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import {
  cachedCommit,
  env,
  envOffline,
  envToken,
  expandHome,
  hasTokenizerFiles,
  hubCacheDir,
  isFile,
  isSafeRepoPath,
  missingFromSnapshot,
  repoCacheDir,
  shardsOfIndex,
  snapshotDir,
} from './cache.js';
import { downloadBlob, headFile, listRepo, NetworkError, resolveUrl, type FileMeta, type HubClient } from './http.js';
import { acquireLock } from './lock.js';
import { ensureDir } from '../io/paths.js';

export { hubCacheDir } from './cache.js';

export interface ResolveProgress {
  /** The file being transferred now. */
  file: string;
  /** Bytes on disk so far, summed over all files this call downloads (resumed bytes included). */
  bytes: number;
  /** Bytes to download in this call, summed over all its files. */
  total: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit hash; default "main". */
  revision?: string;
  /** Never touch the network; default HF_HUB_OFFLINE. */
  offline?: boolean;
  /** The huggingface_hub cache folder; default hubCacheDir(). */
  cacheDir?: string;
  /** Hub base URL; default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Access token; default HF_TOKEN, else the token file `huggingface-cli login` wrote. "" sends none. */
  token?: string;
  /** Called as bytes arrive (only when something is downloaded). */
  onProgress?: (p: ResolveProgress) => void;
  /** fnmatch-style patterns over repo file paths that replace the default file choice. */
  allowPatterns?: string[];
  /** Called when another process (emlens or huggingface_hub) is downloading a blob we need. */
  onLockWait?: (file: string, lockPath: string) => void;
  /**
   * The files that make a snapshot complete (with allowPatterns choosing what to fetch), instead
   * of config.json and the weights: e.g. adapter_config.json and adapter_model.safetensors.
   */
  requiredFiles?: string[];
}

/** The small files fetched next to the weights when present in the repo. */
const SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
];
const INDEX = 'model.safetensors.index.json';
const HEAD_CONCURRENCY = 8;

/**
 * A local folder holding config.json and friends for `idOrPath`:
 * - an existing folder is returned as given (it must hold config.json);
 * - otherwise `idOrPath` must be a hub id `org/name`. A complete snapshot in the huggingface_hub
 *   cache (refs/<revision> -> snapshots/<commit>/) is used without the network; else, unless
 *   offline, the needed files are downloaded (resumably) into that same cache layout, so Python
 *   and emlens share downloads. The returned folder is the snapshot folder.
 */
export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const local = localFolder(idOrPath);
  if (local !== undefined) return local;
  const id = idOrPath;

  const revision = opts.revision ?? 'main';
  if (!isSafeRepoPath(revision)) throw new EmlensError(`model ${id}: bad revision "${revision}"`);
  const cacheDir = resolve(expandHome(opts.cacheDir ?? hubCacheDir()));
  const repoDir = repoCacheDir(cacheDir, id);
  const offline = opts.offline ?? envOffline();

  const commit = cachedCommit(repoDir, revision);
  const cached = commit ? snapshotDir(repoDir, commit) : undefined;
  const required = opts.requiredFiles;
  const missing = cached ? (required ? required.filter((f) => !isFile(join(cached, f))) : missingFromSnapshot(cached)) : undefined;
  const usable = cached !== undefined && missing !== undefined && missing.length === 0;

  if (offline) {
    if (usable) return cached;
    const rev = revision === 'main' ? '' : ` (revision "${revision}")`;
    if (cached && missing && missing.length > 0) {
      throw new EmlensError(
        `model ${id}${rev}: the cached snapshot ${cached} lacks ${listSome(missing)}, and offline mode is on`,
      );
    }
    throw new EmlensError(`model ${id}${rev} is not in the Hugging Face cache ${repoDir}, and offline mode is on`);
  }
  // Weights and config are there; a snapshot without any tokenizer file is worth one listing call.
  if (usable && (required !== undefined || (hasTokenizerFiles(cached) && !opts.allowPatterns))) return cached;

  const token = opts.token !== undefined ? opts.token : envToken();
  const hub: HubClient = {
    endpoint: (opts.endpoint ?? env('HF_ENDPOINT') ?? 'https://huggingface.co').replace(/\/+$/, ''),
    id,
    headers: {
      'user-agent': 'emlens',
      'accept-encoding': 'identity',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
  };
  try {
    return await download(hub, revision, repoDir, opts);
  } catch (e) {
    if (usable && e instanceof NetworkError) return cached;
    throw e;
  }
}

/** The folder for an existing path; undefined for a hub id; throws for anything else. */
function localFolder(p: string): string | undefined {
  const path = expandHome(p);
  let st;
  try {
    st = statSync(path);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) {
    if (!isFile(join(path, 'config.json'))) throw new EmlensError(`${p}: no config.json in this model folder`);
    return path;
  }
  if (st) throw new EmlensError(`model ${p} is a file, not a model folder or a Hugging Face model id`);
  if (!isRepoId(p)) throw new EmlensError(`${p}: no such model folder, and not a Hugging Face model id (org/name)`);
  return undefined;
}

/** `org/name` as huggingface_hub's validate_repo_id accepts it (namespace required here). */
export function isRepoId(s: string): boolean {
  const part = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
  const parts = s.split('/');
  return (
    s.length <= 96 && parts.length === 2 && parts.every((x) => part.test(x)) && !s.includes('--') && !s.includes('..')
  );
}

async function download(hub: HubClient, revision: string, repoDir: string, opts: ResolveOptions): Promise<string> {
  const { sha, files } = await listRepo(hub, revision);
  const snap = snapshotDir(repoDir, sha);
  const inRepo = new Set(files);
  const at = revision === sha ? `at ${sha}` : `at revision "${revision}"`;
  // Like huggingface_hub, record the commit at once: an interrupted download then reads as a
  // partial snapshot (offline says what is missing; online picks up where it stopped).
  if (revision !== sha) writeFileAtomic(join(repoDir, 'refs', revision), [sha]);

  let wanted: string[];
  if (opts.allowPatterns) {
    const pats = opts.allowPatterns.map(globToRegExp);
    wanted = files.filter((f) => pats.some((r) => r.test(f)));
  } else {
    if (!inRepo.has('config.json')) {
      throw new EmlensError(`model ${hub.id} has no config.json ${at}; not a transformers model`);
    }
    wanted = SIDE_FILES.filter((f) => inRepo.has(f));
    if (inRepo.has(INDEX)) {
      await ensureFiles(hub, repoDir, sha, [INDEX], undefined);
      let shards: string[];
      try {
        shards = shardsOfIndex(readFileSync(join(snap, INDEX), 'utf8'));
      } catch (e) {
        throw new EmlensError(`model ${hub.id}: ${INDEX} ${at} is unreadable (${(e as Error).message})`);
      }
      for (const s of shards) {
        if (!isSafeRepoPath(s) || !inRepo.has(s)) {
          throw new EmlensError(`model ${hub.id}: ${INDEX} names ${s}, which is not in the repo ${at}`);
        }
      }
      wanted.push(INDEX, ...shards);
    } else if (inRepo.has('model.safetensors')) {
      wanted.push('model.safetensors');
    } else {
      const loose = files.filter((f) => !f.includes('/') && f.endsWith('.safetensors'));
      if (loose.length === 0) {
        const other = files.filter((f) => /\.(bin|pth|pt|gguf|h5|msgpack|onnx)$/.test(f));
        const only = other.length ? ` (only ${listSome(other)})` : '';
        throw new EmlensError(`model ${hub.id} has no .safetensors weights ${at}${only}; emlens reads safetensors only`);
      }
      wanted.push(...loose);
    }
  }
  wanted = wanted.filter(isSafeRepoPath);
  await ensureFiles(hub, repoDir, sha, wanted, opts.onProgress, opts.onLockWait);

  for (const f of opts.requiredFiles ?? ['config.json']) {
    if (!isFile(join(snap, f))) throw new EmlensError(`model ${hub.id}: no ${f} among the files fetched ${at} (check allowPatterns)`);
  }
  return snap;
}

/**
 * Makes each of `files` present in snapshots/<sha>/ as a relative symlink into blobs/<etag>,
 * downloading the blobs that are missing, one after another, with progress over all of them.
 */
async function ensureFiles(
  hub: HubClient,
  repoDir: string,
  sha: string,
  files: string[],
  onProgress: ResolveOptions['onProgress'],
  onLockWait?: ResolveOptions['onLockWait'],
): Promise<void> {
  const snap = snapshotDir(repoDir, sha);
  const blobs = join(repoDir, 'blobs');
  const todo = files.filter((f) => !isFile(join(snap, f)));
  if (todo.length === 0) return;
  const metas = await mapPool(todo, HEAD_CONCURRENCY, (f) => headFile(hub, resolveUrl(hub, sha, f), f));

  const fetches: { file: string; meta: FileMeta; blob: string }[] = [];
  todo.forEach((file, i) => {
    const meta = metas[i]!;
    const blob = join(blobs, meta.etag);
    if (isFile(blob) && (meta.size === undefined || statSync(blob).size === meta.size)) {
      linkIntoSnapshot(join(snap, file), blob);
    } else {
      fetches.push({ file, meta, blob });
    }
  });
  if (fetches.length === 0) return;

  ensureDir(blobs);
  let total = fetches.reduce((n, f) => n + (f.meta.size ?? 0), 0);
  let done = 0;
  for (const { file, meta, blob } of fetches) {
    // huggingface_hub's lock for this blob: one writer per .incomplete file, across processes.
    const lockPath = join(dirname(repoDir), '.locks', basename(repoDir), `${meta.etag}.lock`);
    const lock = await acquireLock(lockPath, () => onLockWait?.(file, lockPath));
    try {
      // Whoever held the lock may have finished this blob meanwhile.
      if (!(isFile(blob) && (meta.size === undefined || statSync(blob).size === meta.size))) {
        await downloadBlob(hub, resolveUrl(hub, sha, file), file, blob, meta.size, (have) => {
          if (meta.size === undefined && done + have > total) total = done + have;
          onProgress?.({ file, bytes: done + have, total });
        });
      }
    } finally {
      await lock.release();
    }
    done += meta.size ?? statSync(blob).size;
    linkIntoSnapshot(join(snap, file), blob);
  }
  onProgress?.({ file: fetches[fetches.length - 1]!.file, bytes: total, total });
}

/** snapshots/<sha>/<file> -> ../../blobs/<etag> (relative, like huggingface_hub); a copy where symlinks fail. */
function linkIntoSnapshot(snapPath: string, blob: string): void {
  ensureDir(dirname(snapPath));
  rmSync(snapPath, { force: true });
  try {
    symlinkSync(relative(dirname(snapPath), blob), snapPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw e;
    copyFileSync(blob, snapPath);
  }
}

async function mapPool<T, R>(items: T[], width: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

/** fnmatch as huggingface_hub uses it: `*` also crosses `/`; a trailing `/` means the whole folder. */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' && p.indexOf(']', i + 2) > 0) {
      const j = p.indexOf(']', i + 2);
      let cls = p.slice(i + 1, j).replace(/\\/g, '\\\\');
      if (cls.startsWith('!')) cls = `^${cls.slice(1)}`;
      re += `[${cls}]`;
      i = j;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function listSome(xs: string[]): string {
  return xs.length <= 3 ? xs.join(', ') : `${xs.slice(0, 3).join(', ')} and ${xs.length - 3} more`;
}
