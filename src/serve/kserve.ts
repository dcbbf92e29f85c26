/**
 * KServe's Open Inference Protocol v2 (the REST dialect Triton and KServe speak): health, server
 * and model metadata, and `infer` on emlens's universal hooked model, with JSON tensors or the
 * binary tensor data extension (`Inference-Header-Content-Length`, `binary_data_size`,
 * `binary_data`, `binary_data_output`).
 *
 * The universal hooked model (what `GET /v2/models/{name}` lists):
 *   inputs   input_ids INT64 [B, T]; attention_mask INT64 [B, T] (optional, 1 = token; each row's
 *            tokens contiguous); steer FP32 [L, D] (optional: row l added to blocks.l.hook_resid_post
 *            at every token, zero rows do nothing); ablate FP32 [L, D] (optional: the unit direction
 *            of row l projected out of blocks.l.hook_resid_post, zero rows do nothing); pool FP32
 *            [B, T] (optional pooling weights for the pooled outputs)
 *   outputs  logits FP32 [B, V] (last token of each row); token_logprobs FP32 [B, T] (log p of token
 *            t given the tokens before it; 0 at a row's first token and at padding);
 *            blocks.L.hook_K FP32 [B, T, D] (per token, 0 at padding); pooled.blocks.L.hook_K FP32
 *            [B, D] (Σ_t pool[b, t] · h[b, t, :]; needs pool)
 */
import { EmlensError } from '../errors.js';
import { HOOK_KINDS, hookName, parseHookName } from '../hooks/names.js';
import type { AblateSpec, Interventions, SteerSpec } from '../hooks/interventions.js';
import { VERSION } from '../version.js';
import { logSumExp } from '../runtime/logprobs.js';
import { HttpError, type Context, type Route } from './http.js';
import type { ServedModel } from './openai.js';

type Datatype = 'INT64' | 'INT32' | 'FP32';
const ELEMENT_BYTES: Record<Datatype, number> = { INT64: 8, INT32: 4, FP32: 4 };

interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: Float64Array | Float32Array;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const bad = (msg: string): never => {
  throw new HttpError(400, msg);
};

/** Float outputs above this many elements in one response are refused (413): ask for fewer rows or hooks. */
export const MAX_OUTPUT_ELEMENTS = 2 ** 28;

export function modelMetadata(s: ServedModel) {
  const { dModel: D, nLayers: L, vocab: V } = s.model.spec;
  return {
    name: s.name,
    versions: ['1'],
    platform: 'emlens_hooked_decoder',
    inputs: [
      { name: 'input_ids', datatype: 'INT64', shape: [-1, -1] },
      { name: 'attention_mask', datatype: 'INT64', shape: [-1, -1], optional: true },
      { name: 'steer', datatype: 'FP32', shape: [L, D], optional: true },
      { name: 'ablate', datatype: 'FP32', shape: [L, D], optional: true },
      { name: 'pool', datatype: 'FP32', shape: [-1, -1], optional: true },
    ],
    outputs: [
      { name: 'logits', datatype: 'FP32', shape: [-1, V] },
      { name: 'token_logprobs', datatype: 'FP32', shape: [-1, -1] },
      ...HOOK_KINDS.map((k) => ({ name: `blocks.{L}.hook_${k}`, datatype: 'FP32', shape: [-1, -1, D] })),
      ...HOOK_KINDS.map((k) => ({ name: `pooled.blocks.{L}.hook_${k}`, datatype: 'FP32', shape: [-1, D] })),
    ],
    parameters: { layers: L, d_model: D, vocab: V, weights_sha256: s.model.weightsSha256() },
  };
}

/** Splits a request body into its JSON header and the binary tensors after it. */
function splitBody(ctx: Context, body: Buffer): { header: unknown; binary: Buffer } {
  const h = ctx.req.headers['inference-header-content-length'];
  if (h === undefined) {
    try {
      return { header: JSON.parse(body.toString('utf8')), binary: Buffer.alloc(0) };
    } catch (e) {
      return bad(`the body is not valid JSON (${String((e as Error).message).split('\n')[0]})`);
    }
  }
  const n = Number(h);
  if (!Number.isInteger(n) || n < 0 || n > body.length) bad(`Inference-Header-Content-Length ${JSON.stringify(h)} must be an integer in 0..${body.length} (the body's size)`);
  try {
    return { header: JSON.parse(body.subarray(0, n).toString('utf8')), binary: body.subarray(n) };
  } catch (e) {
    return bad(`the JSON header (first ${n} bytes) is not valid JSON (${String((e as Error).message).split('\n')[0]})`);
  }
}

function readInputs(header: Record<string, unknown>, binary: Buffer): Map<string, Tensor> {
  if (!Array.isArray(header.inputs) || header.inputs.length === 0) bad('inputs must be a non-empty list');
  const out = new Map<string, Tensor>();
  let offset = 0;
  (header.inputs as unknown[]).forEach((x, i) => {
    if (!isObj(x)) return bad(`inputs[${i}] must be an object`);
    const name = x.name;
    if (typeof name !== 'string' || !['input_ids', 'attention_mask', 'steer', 'ablate', 'pool'].includes(name)) bad(`inputs[${i}].name must be one of input_ids, attention_mask, steer, ablate, pool`);
    if (out.has(name as string)) bad(`inputs[${i}]: ${name} is given twice`);
    const dt = x.datatype;
    const want: Datatype[] = name === 'input_ids' || name === 'attention_mask' ? ['INT64', 'INT32'] : ['FP32'];
    if (typeof dt !== 'string' || !want.includes(dt as Datatype)) bad(`inputs[${i}] (${name}): datatype must be ${want.join(' or ')}, got ${JSON.stringify(dt)}`);
    const shape = x.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) bad(`inputs[${i}] (${name}): shape must be a list of non-negative integers`);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const params = isObj(x.parameters) ? x.parameters : {};
    let data: Float64Array | Float32Array;
    if (params.binary_data_size !== undefined) {
      const size = params.binary_data_size;
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) bad(`inputs[${i}] (${name}): binary_data_size must be a non-negative integer`);
      if (size !== count * ELEMENT_BYTES[dt as Datatype]) bad(`inputs[${i}] (${name}): binary_data_size ${size} does not match shape [${shape}] of ${dt} (${count * ELEMENT_BYTES[dt as Datatype]} bytes)`);
      if (offset + (size as number) > binary.length) bad(`inputs[${i}] (${name}): the body ends before its ${size} bytes of binary data`);
      const b = binary.subarray(offset, offset + (size as number));
      offset += size as number;
      data = new Float64Array(count);
      for (let k = 0; k < count; k++) data[k] = dt === 'INT64' ? Number(b.readBigInt64LE(k * 8)) : dt === 'INT32' ? b.readInt32LE(k * 4) : b.readFloatLE(k * 4);
    } else {
      if (x.data === undefined) bad(`inputs[${i}] (${name}): needs data or parameters.binary_data_size`);
      if (!Array.isArray(x.data)) bad(`inputs[${i}] (${name}): data must be a list`);
      const flat = (x.data as unknown[]).flat(Infinity);
      if (flat.length !== count) bad(`inputs[${i}] (${name}): data has ${flat.length} elements, shape [${shape}] needs ${count}`);
      data = new Float64Array(count);
      flat.forEach((v, k) => {
        if (typeof v !== 'number' || !Number.isFinite(v)) bad(`inputs[${i}] (${name}): data[${k}] is not a finite number`);
        if (dt !== 'FP32' && !Number.isInteger(v)) bad(`inputs[${i}] (${name}): data[${k}] is not an integer`);
        data[k] = v as number;
      });
    }
    if (dt === 'FP32') data = Float32Array.from(data);
    out.set(name as string, { name: name as string, datatype: dt as Datatype, shape: shape as number[], data });
  });
  if (offset !== binary.length) bad(`the body has ${binary.length - offset} bytes of binary data no input claims`);
  return out;
}

interface Requested {
  name: string;
  binary: boolean;
}

function requestedOutputs(header: Record<string, unknown>, L: number): Requested[] {
  const allBinary = isObj(header.parameters) && header.parameters.binary_data_output === true;
  if (header.outputs === undefined) return [{ name: 'logits', binary: allBinary }];
  if (!Array.isArray(header.outputs) || header.outputs.length === 0) bad('outputs must be a non-empty list');
  const seen = new Set<string>();
  return (header.outputs as unknown[]).map((x, i) => {
    if (!isObj(x) || typeof x.name !== 'string') return bad(`outputs[${i}] must be an object with a name`);
    const name = x.name;
    if (seen.has(name)) bad(`outputs[${i}]: ${name} is asked for twice`);
    seen.add(name);
    const hook = parseHookName(name.replace(/^pooled\./, ''));
    if (name !== 'logits' && name !== 'token_logprobs' && !hook) bad(`outputs[${i}]: unknown output ${JSON.stringify(name)} (logits, token_logprobs, blocks.L.hook_K, pooled.blocks.L.hook_K)`);
    if (hook && hook.layer >= L) bad(`outputs[${i}]: layer ${hook.layer} is out of range (the model has ${L} layers)`);
    const p = isObj(x.parameters) ? x.parameters : {};
    return { name, binary: p.binary_data === true || allBinary };
  });
}

function layerInterventions(t: Tensor | undefined, L: number, D: number, what: 'steer' | 'ablate'): (SteerSpec | AblateSpec)[] {
  if (!t) return [];
  if (t.shape.length !== 2 || t.shape[0] !== L || t.shape[1] !== D) bad(`${what} must have shape [${L}, ${D}] (layers × width), got [${t.shape}]`);
  const out: (SteerSpec | AblateSpec)[] = [];
  for (let l = 0; l < L; l++) {
    const v = Float32Array.from(t.data.subarray(l * D, (l + 1) * D));
    if (!v.some((x) => x !== 0)) continue;
    out.push(what === 'steer' ? { hook: hookName(l, 'resid_post'), vector: v, scale: 1 } : { hook: hookName(l, 'resid_post'), directions: [v] });
  }
  return out;
}

async function infer(ctx: Context, s: ServedModel): Promise<void> {
  if (ctx.params[0] !== s.name) throw new HttpError(404, `unknown model "${ctx.params[0]}"; this server serves "${s.name}"`);
  const { header, binary } = splitBody(ctx, await ctx.body());
  if (!isObj(header)) bad('the request must be a JSON object');
  const h = header as Record<string, unknown>;
  const { dModel: D, nLayers: L, vocab: V } = s.model.spec;
  const inputs = readInputs(h, binary);
  const ids = inputs.get('input_ids') ?? bad('input_ids is required');
  if (ids.shape.length !== 2 || ids.shape[0]! < 1 || ids.shape[1]! < 1) bad(`input_ids must have shape [B, T] with B, T ≥ 1, got [${ids.shape}]`);
  const [B, T] = ids.shape as [number, number];
  if (B > s.limits.maxBatch) bad(`input_ids has ${B} rows; this server takes at most ${s.limits.maxBatch} (--max-batch)`);
  const mask = inputs.get('attention_mask');
  if (mask && (mask.shape.length !== 2 || mask.shape[0] !== B || mask.shape[1] !== T)) bad(`attention_mask must have input_ids' shape [${B}, ${T}], got [${mask.shape}]`);
  const pool = inputs.get('pool');
  if (pool && (pool.shape.length !== 2 || pool.shape[0] !== B || pool.shape[1] !== T)) bad(`pool must have input_ids' shape [${B}, ${T}], got [${pool.shape}]`);
  // Each row's tokens: the contiguous run where the mask is 1.
  const spans: [number, number][] = [];
  const rows: number[][] = [];
  for (let b = 0; b < B; b++) {
    let start = -1;
    let end = -1;
    for (let t = 0; t < T; t++) {
      const m = mask ? mask.data[b * T + t]! : 1;
      if (m !== 0 && m !== 1) bad(`attention_mask[${b}, ${t}] is ${m}; it must be 0 or 1`);
      if (m === 1) {
        if (start < 0) start = t;
        else if (end >= 0) bad(`attention_mask row ${b}: its tokens are not contiguous`);
      } else if (start >= 0 && end < 0) end = t;
    }
    if (start < 0) bad(`attention_mask row ${b} has no token`);
    if (end < 0) end = T;
    spans.push([start, end]);
    const row: number[] = [];
    for (let t = start; t < end; t++) {
      const id = ids.data[b * T + t]!;
      if (id < 0 || id >= V) bad(`input_ids[${b}, ${t}] = ${id} is outside the vocabulary (0..${V - 1})`);
      row.push(id);
    }
    rows.push(row);
  }
  const outputs = requestedOutputs(h, L);
  const wantsLogprobs = outputs.some((o) => o.name === 'token_logprobs');
  const hooks = [...new Set(outputs.filter((o) => o.name.includes('hook_')).map((o) => o.name.replace(/^pooled\./, '')))];
  if (outputs.some((o) => o.name.startsWith('pooled.')) && !pool) bad('pooled outputs need the pool input');
  const elements = outputs.reduce((a, o) => a + (o.name === 'logits' ? B * V : o.name === 'token_logprobs' ? B * T : o.name.startsWith('pooled.') ? B * D : B * T * D), 0) + (wantsLogprobs ? B * T * V : 0);
  if (elements > MAX_OUTPUT_ELEMENTS) throw new HttpError(413, `the outputs asked for need ${elements} floats; this server returns at most ${MAX_OUTPUT_ELEMENTS} per request (ask for fewer rows or hooks)`);
  const iv: Interventions = {};
  const st = layerInterventions(inputs.get('steer'), L, D, 'steer') as SteerSpec[];
  const ab = layerInterventions(inputs.get('ablate'), L, D, 'ablate') as AblateSpec[];
  if (st.length) iv.steer = st;
  if (ab.length) iv.ablate = ab;

  const r = await s.queue.run(async () => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    try {
      return await s.model.engine.forward({ ids: rows, capture: hooks, interventions: iv, logits: wantsLogprobs ? 'all' : 'last' });
    } catch (e) {
      if (e instanceof EmlensError) throw new HttpError(400, e.message);
      throw e;
    }
  }, ctx.signal);
  const Te = r.layout.seq;
  const results: { name: string; data: Float32Array; shape: number[] }[] = [];
  for (const o of outputs) {
    if (o.name === 'logits') {
      const out = new Float32Array(B * V);
      for (let b = 0; b < B; b++) {
        const src = wantsLogprobs ? (b * Te + Te - 1) * V : b * V;
        out.set(r.logits!.subarray(src, src + V), b * V);
      }
      results.push({ name: o.name, data: out, shape: [B, V] });
    } else if (o.name === 'token_logprobs') {
      const out = new Float32Array(B * T);
      for (let b = 0; b < B; b++) {
        const [s0] = spans[b]!;
        const pad = r.layout.pad[b]!;
        for (let j = 1; j < rows[b]!.length; j++) {
          const off = (b * Te + pad + j - 1) * V;
          out[b * T + s0 + j] = r.logits![off + rows[b]![j]!]! - logSumExp(r.logits!, off, V);
        }
      }
      results.push({ name: o.name, data: out, shape: [B, T] });
    } else {
      const pooled = o.name.startsWith('pooled.');
      const cap = r.captures.get(o.name.replace(/^pooled\./, ''))!;
      const out = new Float32Array(pooled ? B * D : B * T * D);
      for (let b = 0; b < B; b++) {
        const [s0] = spans[b]!;
        const pad = r.layout.pad[b]!;
        for (let j = 0; j < rows[b]!.length; j++) {
          const src = (b * Te + pad + j) * D;
          if (pooled) {
            const w = pool!.data[b * T + s0 + j]!;
            if (w !== 0) for (let k = 0; k < D; k++) out[b * D + k]! += w * cap[src + k]!;
          } else out.set(cap.subarray(src, src + D), (b * T + s0 + j) * D);
        }
      }
      results.push({ name: o.name, data: out, shape: pooled ? [B, D] : [B, T, D] });
    }
  }
  const id = typeof h.id === 'string' ? { id: h.id } : {};
  const binaries: Buffer[] = [];
  const outJson = results.map((x, i) => {
    if (!outputs[i]!.binary) return { name: x.name, datatype: 'FP32', shape: x.shape, data: Array.from(x.data) };
    const buf = Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength);
    binaries.push(buf);
    return { name: x.name, datatype: 'FP32', shape: x.shape, parameters: { binary_data_size: buf.length } };
  });
  const json = JSON.stringify({ model_name: s.name, model_version: '1', ...id, outputs: outJson });
  ctx.note('rows', B);
  if (binaries.length === 0) {
    ctx.sendJson(200, JSON.parse(json));
    return;
  }
  const head = Buffer.from(json, 'utf8');
  const body = Buffer.concat([head, ...binaries]);
  ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length), 'content-length': String(body.length) });
  ctx.res.end(body);
}

export function kserveRoutes(s: ServedModel, ready: () => boolean): Route[] {
  const model = (ctx: Context) => {
    if (ctx.params[0] !== s.name) throw new HttpError(404, `unknown model "${ctx.params[0]}"; this server serves "${s.name}"`);
  };
  return [
    { method: 'GET', path: /^\/v2\/health\/live$/, open: true, handle: async (ctx) => ctx.sendJson(200, { live: true }) },
    {
      method: 'GET',
      path: /^\/v2\/health\/ready$/,
      open: true,
      handle: async (ctx) => ctx.sendJson(ready() ? 200 : 503, { ready: ready() }),
    },
    { method: 'GET', path: /^\/v2$/, handle: async (ctx) => ctx.sendJson(200, { name: 'emlens', version: VERSION, extensions: ['binary_tensor_data'] }) },
    {
      method: 'GET',
      path: /^\/v2\/models\/([^/]+)(?:\/versions\/1)?$/,
      handle: async (ctx) => {
        model(ctx);
        ctx.sendJson(200, modelMetadata(s));
      },
    },
    {
      method: 'GET',
      path: /^\/v2\/models\/([^/]+)(?:\/versions\/1)?\/ready$/,
      handle: async (ctx) => {
        model(ctx);
        ctx.sendJson(ready() ? 200 : 503, { name: s.name, ready: ready() });
      },
    },
    { method: 'POST', path: /^\/v2\/models\/([^/]+)(?:\/versions\/1)?\/infer$/, handle: (ctx) => infer(ctx, s) },
  ];
}
