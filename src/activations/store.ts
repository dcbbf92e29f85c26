/**
 * Streaming, crash-safe storage of pooled activations.
 *
 * While extracting, rows arrive in chunks (contiguous ranges of the selected rows). Each chunk is
 * written atomically as its own small safetensors file under DIR/.partial/, so a run killed at
 * any instant (kill -9 included) loses at most the chunk in flight, and `--resume` recomputes
 * only chunks that are not on disk. When every chunk is there, the final file(s) are assembled by
 * streaming the chunks' bytes (memory stays at one chunk), written under temporary names and
 * renamed into place, and the partial folder is removed.
 *
 * Final layout: DIR/activations.safetensors with tensors `blocks.{l}.hook_{kind}` (float32,
 * [rows, d_model], dataset order); past the shard limit (2 GB), shards
 * activations-0000k-of-0000n.safetensors plus activations.safetensors.index.json (the Hugging Face
 * index layout). A tensor larger than the limit gets a shard of its own.
 */
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensorsHeader } from '../io/safetensors/header.js';
import { type StWriteTensor, writeSafetensors } from '../io/safetensors/write.js';
import { ensureDir } from '../io/paths.js';

export const PARTIAL_DIR = '.partial';

/** Where bare extraction-folder names live, under the current folder (git-ignored in the project). */
export const ACTIVATIONS_ROOT = 'activations';

/** A bare name: no path separator, and not "." or "..". */
export const isBareName = (name: string): boolean => name !== '' && name !== '.' && name !== '..' && !/[\\/]/.test(name);

/**
 * The folder an extraction name means, for every flag that names one (extract --out and
 * --balance-with, directions/stability --pos/--neg, project --acts): a bare name NAME is
 * activations/NAME; anything with a slash ("./NAME", "runs/NAME", an absolute path) is used as is.
 */
export function activationsDir(name: string): string {
  return isBareName(name) ? join(ACTIVATIONS_ROOT, name) : name;
}

/** extract --balance-with takes a folder or a JSONL: a bare name that is a file here is that file, else activationsDir. */
export function activationsDirOrFile(name: string): string {
  return isBareName(name) && existsSync(name) && !statSync(name).isDirectory() ? name : activationsDir(name);
}
export const SHARD_LIMIT = 2 * 1024 ** 3;

export interface StoreLayout {
  /** Tensor names, in file order. */
  tensors: string[];
  dModel: number;
  rows: number;
  /** Rows per chunk (the last may be shorter). */
  chunkRows: number;
}

export function chunkCount(l: StoreLayout): number {
  return Math.ceil(l.rows / l.chunkRows);
}

export function chunkRange(l: StoreLayout, k: number): [number, number] {
  return [k * l.chunkRows, Math.min(l.rows, (k + 1) * l.chunkRows)];
}

const chunkFile = (dir: string, k: number) => join(dir, PARTIAL_DIR, `chunk-${String(k).padStart(6, '0')}.safetensors`);

/** Writes one finished chunk: per tensor [chunk rows, d], plus the rows' pooled token counts. */
export function writeChunk(dir: string, layout: StoreLayout, k: number, data: Map<string, Float32Array>, tokens: Float32Array): void {
  const [a, b] = chunkRange(layout, k);
  const n = b - a;
  const tensors = new Map<string, StWriteTensor>();
  for (const name of layout.tensors) {
    const t = data.get(name);
    if (!t || t.length !== n * layout.dModel) throw new Error(`chunk ${k}: tensor ${name} has ${t?.length} values, expected ${n * layout.dModel}`);
    tensors.set(name, { shape: [n, layout.dModel], data: t });
  }
  tensors.set('tokens', { shape: [n], data: tokens });
  ensureDir(join(dir, PARTIAL_DIR));
  writeSafetensors(chunkFile(dir, k), tensors, { chunk: String(k), rows: `${a}-${b}` });
}

/** Chunks already on disk and whole (a chunk is written atomically, so present = complete). */
export function doneChunks(dir: string, layout: StoreLayout): Set<number> {
  const done = new Set<number>();
  const p = join(dir, PARTIAL_DIR);
  if (!existsSync(p)) return done;
  for (const f of readdirSync(p)) {
    const m = /^chunk-(\d{6})\.safetensors$/.exec(f);
    if (!m) continue;
    const k = Number(m[1]);
    if (k >= chunkCount(layout)) continue;
    const h = readSafetensorsHeader(join(p, f));
    const [a, b] = chunkRange(layout, k);
    const ok = layout.tensors.every((t) => {
      const info = h.tensors.get(t);
      return info && info.shape[0] === b - a && info.shape[1] === layout.dModel && info.dtype === 'F32';
    });
    if (ok) done.add(k);
  }
  return done;
}

/** Pooled token counts of every row, read back from the chunks. */
export function readChunkTokens(dir: string, layout: StoreLayout): number[] {
  const out: number[] = [];
  for (let k = 0; k < chunkCount(layout); k++) {
    const info = readSafetensorsHeader(chunkFile(dir, k)).tensors.get('tokens')!;
    const buf = readBytes(info.file, info.begin, info.end - info.begin);
    out.push(...new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4));
  }
  return out;
}

function readBytes(file: string, pos: number, n: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const r = readSync(fd, buf, off, n - off, pos + off);
      if (r === 0) throw new EmlensError(`${file}: truncated`);
      off += r;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Groups tensors into shards of at most `limit` bytes (one tensor per shard when larger). */
export function planShards(layout: StoreLayout, limit: number): string[][] {
  const bytes = layout.rows * layout.dModel * 4;
  const shards: string[][] = [];
  let cur: string[] = [];
  let size = 0;
  for (const t of layout.tensors) {
    if (cur.length && size + bytes > limit) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += bytes;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

/**
 * Streams the chunks into the final file(s); the caller removes the partial folder once its own
 * files (meta.json) are written, so a crash in between still resumes. Returns the file
 * names written. Every file is written under a temporary name, fsynced, then renamed; the index
 * (sharded case) last, so a reader never sees an index pointing at missing shards.
 */
export function assemble(dir: string, layout: StoreLayout, metadata: Record<string, string>, shardLimit = SHARD_LIMIT): string[] {
  const shards = planShards(layout, shardLimit);
  const n = chunkCount(layout);
  const chunkHeaders = Array.from({ length: n }, (_, k) => readSafetensorsHeader(chunkFile(dir, k)));
  const names =
    shards.length === 1
      ? ['activations.safetensors']
      : shards.map((_, i) => `activations-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const tensorBytes = layout.rows * layout.dModel * 4;
  shards.forEach((tensors, s) => {
    // Header first: every tensor's offsets are known from the row count alone.
    const entries: string[] = [`"__metadata__":${JSON.stringify(metadata)}`];
    tensors.forEach((t, i) => {
      entries.push(`${JSON.stringify(t)}:{"dtype":"F32","shape":[${layout.rows},${layout.dModel}],"data_offsets":[${i * tensorBytes},${(i + 1) * tensorBytes}]}`);
    });
    let header = `{${entries.join(',')}}`;
    const pad = (8 - (Buffer.byteLength(header) % 8)) % 8;
    header += ' '.repeat(pad);
    const hbuf = Buffer.from(header, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hbuf.length));
    const target = join(dir, names[s]!);
    const tmp = `${target}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeAll(fd, len);
      writeAll(fd, hbuf);
      for (const t of tensors) {
        for (const h of chunkHeaders) {
          const info = h.tensors.get(t)!;
          writeAll(fd, readBytes(info.file, info.begin, info.end - info.begin));
        }
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
  });
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    shards.forEach((ts, s) => ts.forEach((t) => (weightMap[t] = names[s]!)));
    const index = { metadata: { ...metadata, total_size: tensorBytes * layout.tensors.length }, weight_map: weightMap };
    writeFileAtomic(join(dir, 'activations.safetensors.index.json'), [JSON.stringify(index, null, 2)]);
  }
  return shards.length > 1 ? [...names, 'activations.safetensors.index.json'] : names;
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export function removePartial(dir: string): void {
  rmSync(join(dir, PARTIAL_DIR), { recursive: true, force: true });
}

/** Removes a previous extraction's files (used with --overwrite). */
export function clearOutput(dir: string): void {
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (f === PARTIAL_DIR || /^activations.*\.safetensors(\.index\.json)?$/.test(f) || f === 'meta.json' || f === 'rows.jsonl') {
      rmSync(join(dir, f), { recursive: true, force: true });
    }
  }
}
