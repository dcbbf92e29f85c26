/**
 * The weights of the decode graph as ONNX external data: one file (weights.bin) that every decode
 * session's initializers point into, plus manifest.json. ORT memory-maps external data, so a
 * session holds one copy of what it prepacks (the linear layers), and the rest (embeddings, norms)
 * stay file pages that only the rows used bring into memory (measured on the 7B shape: 1 MB of
 * the embedding table resident after a decode), save MatMulNBits' scales and zero points, which
 * ORT 1.30's x86 kernel keeps mapped after packing them. In a quantised mode the linear
 * layers (q/k/v/o, gate/up/down, the LM head) are stored in MatMulNBits' layout (quantize.ts),
 * and the embedding table in 16 bits (bf16 or f16) when its values are exactly that (a BF16 or
 * F16 checkpoint's are): the graph gathers its rows and casts them to float, the same values at
 * half the file (a 7B model's table is 2.2 GB as fp32). Everything else, and every tensor in
 * mode fp32, is stored as fp32. Mode fp32 (`--fp32-decode store`) runs the same Gemms as the fp32
 * inputs, only on initializers ORT packs once per session instead of on every call: a copy of
 * the checkpoint's weights on disk, the same logits to float rounding (the packed Gemm sums in
 * another order).
 *
 * The store is written tensor by tensor from a reader (a checkpoint file or weights in memory), so
 * writing it takes about one tensor of memory. It lives in emlens's cache under a key of the
 * weights' fingerprint (reused by later runs) or, without a key, in a temporary folder removed at
 * exit. Node only (the browser bundle never imports it).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { emlensCacheDir } from '../cache.js';
import { writeFileAtomic } from '../io/atomic.js';
import { IO, type GraphVariant } from '../arch/decoder.js';
import { CONVERT_CHUNK, f16ToF32Table, f32BitsToF16 } from '../io/safetensors/dtype.js';
import type { ModelSpec } from '../model/config.js';
import type { DecodeWeights } from './engine.js';
import { ACCURACY_LEVEL, bitsOf, blockSizeOf, quantizeMatrix, quantLayout, type WeightMode } from './quantize.js';

/** Bumped when the stored bytes for the same weights would differ (3: the 16-bit embedding table). */
const STORE_VERSION = 3;
const FILE = 'weights.bin';
/** Offsets aligned for mmap (ORT maps external data whose offset is page-aligned; 64 KiB covers every page size). */
const ALIGN = 1 << 16;
const SLICE = 1 << 28;
/**
 * Codes per LM-head MatMulNBits node at most (GraphVariant.projections.headRows). ORT maps and
 * prepacks one node's weights at a time, releasing the codes after; a 7B head's int8 codes
 * (545 MB) mapped whole on top of every layer already packed were the decode's peak-RSS excess.
 */
const HEAD_CHUNK_BYTES = 64 << 20;

/** The linear layers a quantised decode graph runs as MatMulNBits. */
const PROJECTION = /\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/;
const EMBED = 'model.embed_tokens.weight';

/** A 16-bit type the embedding table may be stored in (GraphVariant.projections.embedDtype). */
export type HalfDtype = 'bfloat16' | 'float16';

export interface StoreSource {
  spec: ModelSpec;
  /** Every checkpoint tensor's shape (canonical names). */
  shapes: Map<string, number[]>;
  /** Reads one tensor as fp32 (called once per stored tensor, in order; the result may be dropped after). */
  read(name: string): Float32Array;
}

interface Entry {
  name: string;
  dtype: 'float32' | 'uint8' | HalfDtype;
  shape: number[];
  offset: number;
  length: number;
}

interface Manifest {
  version: number;
  mode: WeightMode;
  blockSize: number;
  entries: Entry[];
}

interface Job {
  source: string;
  names: string[];
  /** Stored as this 16-bit type (values exactly representable, checked before planning). */
  half?: HalfDtype;
}

/** The fp32 bit patterns of `w` (a view, no copy). */
const bitsOf32 = (w: Float32Array) => new Uint32Array(w.buffer, w.byteOffset, w.length);

/** The 16-bit type that holds every value of `w` exactly (bf16 tried first), or null. */
export function exactHalf(w: Float32Array): HalfDtype | null {
  const u = bitsOf32(w);
  let bf16 = true;
  for (let i = 0; i < u.length && bf16; i++) if ((u[i]! & 0xffff) !== 0) bf16 = false;
  if (bf16) return 'bfloat16';
  const back = f16ToF32Table();
  for (let i = 0; i < u.length; i++) if (back[f32BitsToF16(u[i]!)] !== u[i]) return null;
  return 'float16';
}

/** Bit patterns of w[from, to) in `dtype` (values exact there: exactHalf said so). */
function halfBits(u: Uint32Array, from: number, to: number, dtype: HalfDtype, out: Uint16Array): Uint16Array {
  const h = out.subarray(0, to - from);
  if (dtype === 'bfloat16') for (let i = from; i < to; i++) h[i - from] = u[i]! >>> 16;
  else for (let i = from; i < to; i++) h[i - from] = f32BitsToF16(u[i]!);
  return h;
}

/** The LM head's weight: lm_head.weight, or the embedding table when tied. */
function headSource(spec: ModelSpec): string {
  return spec.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
}

/**
 * What the store holds: per stored tensor, its graph input names and sizes, and how to produce
 * their bytes from the source tensor. `embedDtype`: in a quantised mode, how the embedding table
 * is stored (it is then the first job: openWeightStore reads it before planning, to choose).
 */
function plan(src: StoreSource, mode: WeightMode, embedDtype: HalfDtype | 'float32'): { entries: Entry[]; jobs: Job[] } {
  const entries: Entry[] = [];
  const jobs: Job[] = [];
  let offset = 0;
  const add = (name: string, dtype: Entry['dtype'], shape: number[], length: number) => {
    // Large tensors start on a mapping boundary; small ones (norms, biases) only 64-byte aligned.
    const align = length >= ALIGN ? ALIGN : 64;
    offset = Math.ceil(offset / align) * align;
    entries.push({ name, dtype, shape, offset, length });
    offset += length;
    return name;
  };
  const quantised = (source: string, weight: string) => {
    const [N, K] = src.shapes.get(source)!;
    const qmode = mode as Exclude<WeightMode, 'fp32'>;
    const { blocks, blob, zpRow } = quantLayout(K!, bitsOf(qmode), blockSizeOf(qmode));
    const q = IO.quant(weight);
    jobs.push({
      source,
      names: [add(q.weight, 'uint8', [N!, blocks, blob], N! * blocks * blob), add(q.scales, 'float32', [N! * blocks], N! * blocks * 4), add(q.zeroPoints, 'uint8', [N! * zpRow], N! * zpRow)],
    });
  };
  const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const embedFirst = mode !== 'fp32' && src.shapes.has(EMBED);
  if (embedFirst) {
    const shape = src.shapes.get(EMBED)!;
    const half = embedDtype === 'float32' ? undefined : embedDtype;
    jobs.push({ source: EMBED, names: [add(EMBED, embedDtype, shape, numel(shape) * (half ? 2 : 4))], half });
  }
  for (const [name, shape] of src.shapes) {
    if (mode !== 'fp32' && PROJECTION.test(name)) quantised(name, name);
    else if (mode !== 'fp32' && name === 'lm_head.weight') continue; // stored quantised below
    else if (embedFirst && name === EMBED) continue; // stored first
    else jobs.push({ source: name, names: [add(name, 'float32', shape, numel(shape) * 4)] });
  }
  if (mode !== 'fp32') quantised(headSource(src.spec), 'lm_head.weight');
  return { entries, jobs };
}

/** A tensor read already (the embedding table), for its job; dropped (w = null) once used. */
interface Held {
  name: string;
  w: Float32Array | null;
}

/**
 * The bytes of the store, produced tensor by tensor (alignment padding included); `first`'s job
 * uses its tensor instead of reading it again.
 */
function* bytesOf(src: StoreSource, mode: WeightMode, entries: Entry[], jobs: Job[], first: Held | null): Generator<Uint8Array> {
  const at = new Map(entries.map((e) => [e.name, e]));
  let written = 0;
  const emit = function* (name: string, data: ArrayBufferView) {
    const e = at.get(name)!;
    if (e.offset > written) yield new Uint8Array(e.offset - written);
    const u8 = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (u8.byteLength !== e.length) throw new Error(`weight store: ${name} has ${u8.byteLength} bytes, planned ${e.length}`);
    // In slices: one write call takes at most 2 GiB (a 7B model's embedding table is 2.2 GB in fp32).
    for (let o = 0; o < u8.byteLength; o += SLICE) yield u8.subarray(o, Math.min(u8.byteLength, o + SLICE));
    written = e.offset + e.length;
  };
  for (const job of jobs) {
    let w: Float32Array;
    if (first?.w && job.source === first.name) {
      w = first.w;
      first.w = null; // the caller's holder too: the table is not kept for the rest of the write
    } else w = src.read(job.source);
    if (job.half) {
      // Converted a chunk at a time into one scratch buffer (each chunk is written before the next).
      const u = bitsOf32(w);
      const scratch = new Uint16Array(Math.min(u.length, CONVERT_CHUNK));
      const e = at.get(job.names[0]!)!;
      if (e.length !== 2 * u.length) throw new Error(`weight store: ${e.name} has ${2 * u.length} bytes, planned ${e.length}`);
      if (e.offset > written) yield new Uint8Array(e.offset - written);
      for (let i = 0; i < u.length; i += CONVERT_CHUNK) {
        const h = halfBits(u, i, Math.min(u.length, i + CONVERT_CHUNK), job.half, scratch);
        yield new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
      }
      written = e.offset + e.length;
      continue;
    }
    if (job.names.length === 1) {
      yield* emit(job.names[0]!, w);
      continue;
    }
    const [N, K] = src.shapes.get(job.source)!;
    const qmode = mode as Exclude<WeightMode, 'fp32'>;
    const q = quantizeMatrix(w, N!, K!, bitsOf(qmode), blockSizeOf(qmode));
    yield* emit(job.names[0]!, q.B);
    yield* emit(job.names[1]!, q.scales);
    yield* emit(job.names[2]!, q.zeroPoints);
  }
}

function decodeWeightsOf(dir: string, m: Manifest, shapes: Map<string, number[]>): DecodeWeights {
  const external = new Map(m.entries.map((e) => [e.name, { location: FILE, offset: e.offset, length: e.length }]));
  const embed = m.entries.find((e) => e.name === EMBED)?.dtype;
  const embedDtype = embed === 'bfloat16' || embed === 'float16' ? { embedDtype: embed } : {};
  if (m.mode === 'fp32') return { mode: m.mode, dir, external, projections: undefined, shapes };
  const projections: GraphVariant['projections'] = { bits: bitsOf(m.mode), blockSize: m.blockSize, accuracyLevel: ACCURACY_LEVEL, head: true, ...embedDtype };
  const d: DecodeWeights = { mode: m.mode, dir, external, projections, shapes };
  const rowBytes = external.get(IO.quant('lm_head.weight').weight)!.length / headShape(d)[0]!;
  return withHeadRows(d, Math.max(1, Math.floor(HEAD_CHUNK_BYTES / rowBytes)));
}

/** The LM head's [vocab, d_model] (lm_head.weight's, or the tied embedding table's). */
function headShape(d: DecodeWeights): number[] {
  return d.shapes.get('lm_head.weight') ?? d.shapes.get(EMBED)!;
}

/**
 * The decode weights with the quantised LM head run `rows` vocabulary rows per MatMulNBits node
 * (GraphVariant.projections.headRows): each part's initializers are the rows' slices of the
 * head's codes, scales and zero points in the same file (each row's bytes are contiguous in
 * MatMulNBits' layout), so nothing is stored twice.
 */
export function withHeadRows(d: DecodeWeights, rows: number): DecodeWeights {
  if (!d.projections) throw new Error('withHeadRows: fp32 decode weights have no quantised head');
  const [V] = headShape(d) as [number];
  const external = new Map(d.external);
  const whole = IO.quant('lm_head.weight');
  for (let n0 = 0; n0 < V && rows < V; n0 += rows) {
    const n = Math.min(rows, V - n0);
    const part = IO.quant(IO.headRows(n0));
    for (const k of ['weight', 'scales', 'zeroPoints'] as const) {
      const e = d.external.get(whole[k])!;
      const row = e.length / V;
      external.set(part[k], { location: e.location, offset: e.offset + n0 * row, length: n * row });
    }
  }
  return { ...d, external, projections: { ...d.projections, headRows: rows } };
}

/** Removes `<dir>.<pid>.tmp` folders whose writing process no longer runs. */
function removeDeadWriters(dir: string): void {
  const parent = dirname(dir);
  if (!existsSync(parent)) return;
  for (const name of readdirSync(parent)) {
    const m = name.startsWith(`${basename(dir)}.`) ? /\.(\d+)\.tmp$/.exec(name) : null;
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(parent, name), { recursive: true, force: true });
    }
  }
}

const tempDirs: string[] = [];
let cleanupHooked = false;

/**
 * The decode weights of `src` in `mode`: opened from the cache when `key` (the weights'
 * fingerprint) names a store already written, else written now. Without a key, written to a
 * temporary folder removed when the process exits.
 */
export function openWeightStore(src: StoreSource, mode: WeightMode, key: string | null, onTensor?: (done: number, total: number) => void): DecodeWeights {
  const blockSize = mode === 'fp32' ? 0 : blockSizeOf(mode);
  const tag = `${mode}${blockSize ? `-b${blockSize}` : ''}-v${STORE_VERSION}`;
  const dir = key ? join(emlensCacheDir(), 'decode-weights', `${key.slice(0, 32)}-${tag}`) : null;
  if (dir && existsSync(join(dir, 'manifest.json'))) {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    if (m.version === STORE_VERSION && m.mode === mode && m.blockSize === blockSize) return decodeWeightsOf(dir, m, src.shapes);
  }
  let done = 0;
  // The job count does not depend on how the embedding table is stored.
  const total = plan(src, mode, 'float32').jobs.length;
  const counted: StoreSource = { ...src, read: (name) => { const w = src.read(name); onTensor?.(++done, total); return w; } };
  // In a quantised mode the embedding table is read first: whether its values are exactly
  // 16-bit decides how it is stored, and so the plan.
  const first: Held | null = mode !== 'fp32' && src.shapes.has(EMBED) ? { name: EMBED, w: counted.read(EMBED) } : null;
  const { entries, jobs } = plan(src, mode, first ? (exactHalf(first.w!) ?? 'float32') : 'float32');
  const m: Manifest = { version: STORE_VERSION, mode, blockSize, entries };
  if (!dir) {
    const tmp = mkdtempSync(join(tmpdir(), `emlens-${tag}-`));
    tempDirs.push(tmp);
    if (!cleanupHooked) {
      cleanupHooked = true;
      process.once('exit', () => {
        for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
      });
    }
    writeFileAtomic(join(tmp, FILE), bytesOf(counted, mode, entries, jobs, first));
    writeFileAtomic(join(tmp, 'manifest.json'), JSON.stringify(m));
    return decodeWeightsOf(tmp, m, src.shapes);
  }
  // Written beside the final folder, renamed into place whole: a crash leaves no half store, and
  // what a killed writer left (its pid gone) is removed here.
  removeDeadWriters(dir);
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    writeFileAtomic(join(tmp, FILE), bytesOf(counted, mode, entries, jobs, first));
    writeFileAtomic(join(tmp, 'manifest.json'), JSON.stringify(m));
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return decodeWeightsOf(dir, m, src.shapes);
}
