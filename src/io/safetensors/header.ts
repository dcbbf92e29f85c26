/**
 * Safetensors header (https://github.com/huggingface/safetensors).
 *
 * Layout: u64 little-endian header length N, then N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`,
 * then the data section; data_offsets are relative to the start of the data section.
 *
 * Reading never loads a whole file: readSafetensorsHeader reads only the header and
 * readTensorF32 (read.ts) only the byte range of one tensor.
 */
import { closeSync, fstatSync } from 'node:fs';
import { EmlensError } from '../../errors.js';
import { describe, DTYPE_SIZE, fmtShape, fname, isDType, isPlainObject, numelOf, tname, type StDType } from './common.js';
import { openForRead, readFully } from './file.js';

export type { StDType } from './common.js';

/** One tensor of a safetensors file; begin/end are absolute byte offsets in `file` (header included). */
export interface StTensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  begin: number;
  end: number;
  file: string;
}

export interface StHeader {
  file: string;
  /** In header order. */
  tensors: Map<string, StTensorInfo>;
  metadata: Record<string, string>;
}

/** Same limit as the reference implementation (safetensors MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100_000_000;

/** Reads and validates the header of one safetensors file (not the data). */
export function readSafetensorsHeader(file: string): StHeader {
  const f = fname(file);
  const fd = openForRead(file);
  let json: string;
  let fileSize: number;
  let headerLen: number;
  try {
    fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw new EmlensError(`${f}: file is ${fileSize} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, file);
    const len = lenBuf.readBigUInt64LE(0);
    if (len > BigInt(MAX_HEADER_BYTES)) {
      throw new EmlensError(`${f}: header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
    }
    headerLen = Number(len);
    if (8 + headerLen > fileSize) {
      throw new EmlensError(`${f}: header length ${headerLen} runs past the end of the ${fileSize}-byte file`);
    }
    const hbuf = Buffer.alloc(headerLen);
    readFully(fd, hbuf, 8, file);
    try {
      json = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(hbuf);
    } catch {
      throw new EmlensError(`${f}: header is not valid UTF-8`);
    }
  } finally {
    closeSync(fd);
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new EmlensError(`${f}: header is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!isPlainObject(parsed)) throw new EmlensError(`${f}: header is ${describe(parsed)}, not a JSON object`);

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: [string, string][] = [];
  const tensors = new Map<string, StTensorInfo>();

  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) {
        throw new EmlensError(`${f}: __metadata__ is ${describe(entry)}, not a map of strings to strings`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          throw new EmlensError(
            `${f}: __metadata__ must map strings to strings, but key ${JSON.stringify(k)} holds ${describe(v)}`,
          );
        }
        metadata.push([k, v]);
      }
      continue;
    }
    const t = `${f}: ${tname(name)}`;
    if (!isPlainObject(entry)) throw new EmlensError(`${t}: entry is ${describe(entry)}, not an object`);
    const { dtype, shape, data_offsets: offs } = entry;
    if (!isDType(dtype)) {
      throw new EmlensError(
        `${t}: unknown dtype ${JSON.stringify(dtype) ?? 'undefined'} (known: ${Object.keys(DTYPE_SIZE).join(', ')})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new EmlensError(`${t}: shape ${JSON.stringify(shape) ?? 'undefined'} is not an array of non-negative integers`);
    }
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      throw new EmlensError(
        `${t}: data_offsets ${JSON.stringify(offs) ?? 'undefined'} are not [begin, end] non-negative integers with begin <= end`,
      );
    }
    const [b, e] = offs as [number, number];
    if (e > dataSize) {
      throw new EmlensError(`${t}: data offsets [${b}, ${e}) end beyond the data section, which holds ${dataSize} bytes`);
    }
    const dims = shape as number[];
    const need = numelOf(dims) * DTYPE_SIZE[dtype];
    if (need !== e - b) {
      throw new EmlensError(
        `${t}: data offsets [${b}, ${e}) hold ${e - b} bytes but shape ${fmtShape(dims)} of ${dtype} needs ${need}`,
      );
    }
    tensors.set(name, { name, dtype, shape: dims.slice(), begin: dataStart + b, end: dataStart + e, file });
  }

  // The format requires the tensors to tile the data section: no overlaps, no holes, nothing
  // after the last one. A hole or a tail means the header length or the offsets are off (a
  // header length shrunk into its padding reads every tensor shifted). Empty tensors take no bytes.
  const ranges = [...tensors.values()].filter((x) => x.end > x.begin).sort((x, y) => x.begin - y.begin);
  let at = dataStart;
  let prev: StTensorInfo | undefined;
  for (const cur of ranges) {
    if (prev && cur.begin < prev.end) {
      throw new EmlensError(
        `${f}: ${tname(cur.name)}: data offsets [${cur.begin - dataStart}, ${cur.end - dataStart}) overlap ` +
          `${tname(prev.name)} at [${prev.begin - dataStart}, ${prev.end - dataStart})`,
      );
    }
    if (cur.begin > at) {
      throw new EmlensError(
        `${f}: bytes [${at - dataStart}, ${cur.begin - dataStart}) of the data section belong to no tensor ` +
          `(${prev ? `between ${tname(prev.name)} and ` : 'before '}${tname(cur.name)}); the format allows no holes`,
      );
    }
    at = cur.end;
    prev = cur;
  }
  if (at !== fileSize) {
    throw new EmlensError(
      `${f}: file is ${fileSize} bytes but 8 + header ${headerLen} + tensor data ${at - dataStart} make ${at}: ` +
        `${fileSize - at} bytes after the last tensor (wrong header length or offsets)`,
    );
  }

  return { file, tensors, metadata: Object.fromEntries(metadata) };
}
