/**
 * emlens's backend API over HTTP: the calls commands make of an engine (forward with captures,
 * generate with interventions), so `--backend URL` is a drop-in for the local runtime
 * (../backend/remote.ts is the client).
 *
 *   GET  /emlens/v1/info      the model's spec and fingerprints (config.json, tokenizer.json, weights)
 *   POST /emlens/v1/forward   {ids, capture, logits, interventions} -> JSON header + float32 blobs
 *   POST /emlens/v1/generate  {prompts, max_new_tokens, temperature, top_p, seed, stop_ids, interventions}
 *
 * Interventions travel as JSON numbers: a float32 printed by JavaScript and parsed back is the
 * same float32, so the server runs exactly the vectors the client holds. Captures and logits come
 * back as little-endian float32 after the JSON header (`Inference-Header-Content-Length`, as
 * KServe's binary extension), in the order the header lists them.
 */
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { parseHookName } from '../hooks/names.js';
import type { AblateSpec, Interventions, SteerSpec } from '../hooks/interventions.js';
import { VERSION } from '../version.js';
import { fileSha256 } from '../model/fingerprint.js';
import { f32, i64, type OrtTensor } from '../runtime/ort.js';
import { runObjective } from '../train/run-objective.js';
import { HttpError, type Context, type Route } from './http.js';
import type { ServedModel } from './openai.js';

export const BACKEND_API = '/emlens/v1';

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const bad = (msg: string): never => {
  throw new HttpError(400, msg);
};


export function backendInfo(s: ServedModel) {
  const { spec } = s.model;
  return {
    name: s.name,
    emlens_version: VERSION,
    model_type: spec.modelType,
    layers: spec.nLayers,
    d_model: spec.dModel,
    vocab: spec.vocab,
    max_positions: spec.maxPositions,
    max_batch: s.limits.maxBatch,
    config_sha256: fileSha256(join(s.model.dir, 'config.json')),
    tokenizer_sha256: fileSha256(join(s.model.dir, 'tokenizer.json')),
    weights_sha256: s.model.weightsSha256(),
    /** How its generate holds the linear layers (serve --weights). */
    weights: s.model.engine.weightMode,
    adapter: s.model.adapter ? true : false,
  };
}

function floats(v: unknown, d: number, where: string): Float32Array {
  if (!Array.isArray(v) || v.length !== d) return bad(`${where} must be a list of ${d} numbers`);
  return Float32Array.from(v, (x, i) => (typeof x === 'number' && Number.isFinite(x) ? x : bad(`${where}[${i}] is not a finite number`)));
}

function hook(v: unknown, L: number, where: string): string {
  const h = typeof v === 'string' ? parseHookName(v) : null;
  if (!h || h.layer >= L) return bad(`${where}: not a hook of this model (blocks.L.hook_K, L < ${L})`);
  return v as string;
}

/** Interventions as the engine takes them, written as JSON (the client's wire form). */
export function parseWireInterventions(v: unknown, L: number, D: number): Interventions {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) return bad('interventions must be an object');
  const iv: Interventions = {};
  if (v.steer !== undefined) {
    if (!Array.isArray(v.steer)) bad('interventions.steer must be a list');
    iv.steer = (v.steer as unknown[]).map((e, i): SteerSpec => {
      if (!isObj(e)) return bad(`interventions.steer[${i}] must be an object`);
      if (typeof e.scale !== 'number' || !Number.isFinite(e.scale)) bad(`interventions.steer[${i}].scale must be a finite number`);
      if (e.fromPosition !== undefined && !(Number.isInteger(e.fromPosition) && (e.fromPosition as number) >= 0)) bad(`interventions.steer[${i}].fromPosition must be a non-negative integer`);
      return { hook: hook(e.hook, L, `interventions.steer[${i}].hook`), vector: floats(e.vector, D, `interventions.steer[${i}].vector`), scale: e.scale as number, ...(e.fromPosition !== undefined ? { fromPosition: e.fromPosition as number } : {}) };
    });
  }
  if (v.ablate !== undefined) {
    if (!Array.isArray(v.ablate)) bad('interventions.ablate must be a list');
    iv.ablate = (v.ablate as unknown[]).map((e, i): AblateSpec => {
      if (!isObj(e) || !Array.isArray(e.directions) || e.directions.length === 0) return bad(`interventions.ablate[${i}] must be {hook, directions: [[...], ...]}`);
      return { hook: hook(e.hook, L, `interventions.ablate[${i}].hook`), directions: (e.directions as unknown[]).map((d, k) => floats(d, D, `interventions.ablate[${i}].directions[${k}]`)) };
    });
  }
  return iv;
}

function idRows(v: unknown, V: number, maxBatch: number, what: string): number[][] {
  if (!Array.isArray(v) || v.length === 0) return bad(`${what} must be a non-empty list of token-id lists`);
  if (v.length > maxBatch) bad(`${what} has ${v.length} rows; this server takes at most ${maxBatch} (--max-batch)`);
  return (v as unknown[]).map((r, b) => {
    if (!Array.isArray(r) || r.length === 0) return bad(`${what}[${b}] must be a non-empty list of token ids`);
    return r.map((t, i) => (Number.isInteger(t) && t >= 0 && t < V ? (t as number) : bad(`${what}[${b}][${i}] = ${JSON.stringify(t)} is not a token id (0..${V - 1})`)));
  });
}

/** Engine errors about the caller's rows are the caller's 400s. */
async function engineCall<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof EmlensError) throw new HttpError(400, e.message);
    throw e;
  }
}

async function forward(ctx: Context, s: ServedModel): Promise<void> {
  const o = await ctx.json();
  if (!isObj(o)) bad('the body must be a JSON object');
  const { nLayers: L, dModel: D, vocab: V } = s.model.spec;
  const b = o as Record<string, unknown>;
  const ids = idRows(b.ids, V, s.limits.maxBatch, 'ids');
  const capture = b.capture === undefined ? [] : Array.isArray(b.capture) ? (b.capture as unknown[]).map((h, i) => hook(h, L, `capture[${i}]`)) : bad('capture must be a list of hook names');
  const logits = b.logits ?? 'none';
  if (logits !== 'none' && logits !== 'last' && logits !== 'all') bad('logits must be "none", "last" or "all"');
  const iv = parseWireInterventions(b.interventions, L, D);
  const r = await s.queue.run(() => engineCall(() => s.model.engine.forward({ ids, capture, interventions: iv, logits: logits as 'none' | 'last' | 'all' })), ctx.signal);
  const blobs: { name: string; shape: number[]; data: Float32Array }[] = [];
  const B = ids.length;
  const T = r.layout.seq;
  for (const [name, data] of r.captures) blobs.push({ name, shape: [B, T, D], data });
  if (r.logits) blobs.push({ name: 'logits', shape: logits === 'all' ? [B, T, V] : [B, V], data: r.logits });
  const head = Buffer.from(JSON.stringify({ layout: r.layout, tensors: blobs.map((x) => ({ name: x.name, shape: x.shape, bytes: x.data.byteLength })) }));
  const body = Buffer.concat([head, ...blobs.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength))]);
  ctx.note('rows', B);
  ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length), 'content-length': String(body.length) });
  ctx.res.end(body);
}

async function generate(ctx: Context, s: ServedModel): Promise<void> {
  const o = await ctx.json();
  if (!isObj(o)) bad('the body must be a JSON object');
  const b = o as Record<string, unknown>;
  const { nLayers: L, dModel: D, vocab: V } = s.model.spec;
  const prompts = idRows(b.prompts, V, s.limits.maxBatch, 'prompts');
  const int = (k: string, def: number, max: number) => {
    const v = b[k] ?? def;
    return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max ? (v as number) : bad(`${k} must be an integer in 0..${max}`);
  };
  const num = (k: string, def: number, ok: (x: number) => boolean) => {
    const v = b[k] ?? def;
    return typeof v === 'number' && ok(v) ? v : bad(`${k} is out of range`);
  };
  const stopIds = b.stop_ids === undefined ? undefined : Array.isArray(b.stop_ids) ? (b.stop_ids as unknown[]).map((t) => (Number.isInteger(t) && (t as number) >= 0 && (t as number) < V ? (t as number) : bad('stop_ids must be token ids'))) : bad('stop_ids must be a list');
  const opts = {
    maxNewTokens: int('max_new_tokens', 64, s.limits.maxNewTokens),
    temperature: num('temperature', 0, (x) => x >= 0 && Number.isFinite(x)),
    topP: num('top_p', 1, (x) => x > 0 && x <= 1),
    ...(b.seeds !== undefined
      ? { seeds: Array.isArray(b.seeds) && b.seeds.length === prompts.length && b.seeds.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32) ? (b.seeds as number[]) : bad('seeds must be one integer in 0..2^32-1 per prompt') }
      : { seed: int('seed', 0, 2 ** 32 - 1) }),
    stopIds,
    interventions: parseWireInterventions(b.interventions, L, D),
  };
  const r = await s.queue.run(() =>
    engineCall(() =>
      s.model.engine.generate(prompts, {
        ...opts,
        onStep: () => {
          if (ctx.signal.aborted) throw ctx.signal.reason;
        },
      }),
    ),
    ctx.signal,
  );
  ctx.note('tokens', r.tokens.reduce((a, t) => a + t.length, 0));
  ctx.sendJson(200, { tokens: r.tokens, finished: r.finished, context_full: r.contextFull });
}

/** The training objective (train, measure) for a `--backend` client: binary feeds in, binary outputs out. */
async function objectiveRoute(ctx: Context, s: ServedModel): Promise<void> {
  const body = await ctx.body();
  const hl = Number(ctx.req.headers['inference-header-content-length']);
  if (!Number.isInteger(hl) || hl <= 0 || hl > body.length) bad('Inference-Header-Content-Length must give the JSON header\'s size');
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(body.subarray(0, hl).toString('utf8'));
  } catch {
    return bad('the JSON header is not valid JSON');
  }
  const { nLayers: L, dModel: D, vocab: V } = s.model.spec;
  const ids = idRows(h.ids, V, s.limits.maxBatch, 'ids');
  if (!Array.isArray(h.feeds)) bad('feeds must be a list');
  const feeds: Record<string, OrtTensor> = {};
  let off = hl;
  for (const [i, f] of (h.feeds as unknown[]).entries()) {
    if (!isObj(f) || typeof f.name !== 'string' || (f.dtype !== 'float32' && f.dtype !== 'int64') || !Array.isArray(f.dims) || !Number.isInteger(f.bytes)) bad(`feeds[${i}] must be {name, dtype float32|int64, dims, bytes}`);
    const g = f as { name: string; dtype: 'float32' | 'int64'; dims: number[]; bytes: number };
    // Only the objective's own inputs and LoRA factors: never a weight or anything else of the server's.
    if (!/^train\./.test(g.name) && !/\.lora_(A|B)\.weight$|\.lora_scale$/.test(g.name)) bad(`feeds[${i}]: ${g.name} is not an objective input`);
    const count = g.dims.reduce((a, b) => a * b, 1);
    if (g.bytes !== count * (g.dtype === 'int64' ? 8 : 4) || off + g.bytes > body.length) bad(`feeds[${i}] (${g.name}): ${g.bytes} bytes do not match dims [${g.dims}] or run past the body`);
    const raw = body.buffer.slice(body.byteOffset + off, body.byteOffset + off + g.bytes);
    feeds[g.name] = g.dtype === 'int64' ? i64(new BigInt64Array(raw), g.dims) : f32(new Float32Array(raw), g.dims);
    off += g.bytes;
  }
  const lora = Array.isArray(h.lora) ? (h.lora as unknown[]).map((x) => (Array.isArray(x) && typeof x[0] === 'string' && Number.isInteger(x[1]) ? ([x[0], x[1]] as [string, number]) : bad('lora must be [[projection, rank], ...]'))) : bad('lora must be a list');
  const wrt = Array.isArray(h.wrt) && h.wrt.every((w) => typeof w === 'string') ? (h.wrt as string[]) : bad('wrt must be a list of input names');
  const out = await s.queue.run(() => engineCall(() => runObjective(s.model, { ids, interventions: parseWireInterventions(h.interventions, L, D), lora, feeds, withKl: h.withKl === true, wrt })), ctx.signal);
  const blobs = Object.entries(out);
  const head = Buffer.from(JSON.stringify({ tensors: blobs.map(([name, t]) => ({ name, shape: t.dims, bytes: t.data.byteLength })) }));
  const res = Buffer.concat([head, ...blobs.map(([, t]) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
  ctx.note('rows', ids.length);
  ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length), 'content-length': String(res.length) });
  ctx.res.end(res);
}

export function backendRoutes(s: ServedModel): Route[] {
  return [
    { method: 'GET', path: /^\/emlens\/v1\/info$/, handle: async (ctx) => ctx.sendJson(200, backendInfo(s)) },
    { method: 'POST', path: /^\/emlens\/v1\/forward$/, handle: (ctx) => forward(ctx, s) },
    { method: 'POST', path: /^\/emlens\/v1\/generate$/, handle: (ctx) => generate(ctx, s) },
    { method: 'POST', path: /^\/emlens\/v1\/objective$/, handle: (ctx) => objectiveRoute(ctx, s) },
  ];
}
