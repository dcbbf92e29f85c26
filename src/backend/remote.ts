/**
 * The client side of `--backend URL[,URL…]`: forward and generate run on `emlens serve` processes
 * (../serve/backend-api.ts) instead of the local runtime, with the same results (the same graphs
 * on the same weights; interventions travel exactly). A forward call's rows are split across the
 * servers and run at once; a server that fails (network error, 5xx, 429) has its part retried on
 * the others with backoff, and is left out for a while. A generate call is one sampling stream
 * (one seeded generator across its rows), so it runs whole on one server, failing over the same way.
 */
import { EmlensError } from '../errors.js';
import type { Interventions } from '../hooks/interventions.js';
import type { ModelSpec } from '../model/config.js';
import { InputRowError, type ForwardRequest, type ForwardResult, type GenerateOptions, type GenerateResult } from '../runtime/engine.js';
import type { BatchLayout } from '../runtime/masks.js';
import type { ObjectiveCall, ObjectiveOutputs } from '../train/run-objective.js';

/** What the experiment layer asks of a model's runtime, local (Engine) or remote. */
export interface ModelBackend {
  readonly spec: ModelSpec;
  forward(req: ForwardRequest): Promise<ForwardResult>;
  generate(prompts: number[][], opts?: GenerateOptions): Promise<GenerateResult>;
}

export interface BackendOptions {
  urls: string[];
  /** Most rows to send in one call (the servers' smallest --max-batch; default 64). */
  maxRows?: number;
  token?: string;
  /** Per-request timeout (default 10 minutes). */
  timeoutMs?: number;
  /** Attempts per part before the call fails (default 3 per server, at least 4). */
  maxAttempts?: number;
  /** Base of the exponential backoff between attempts (default 250 ms). */
  backoffMs?: number;
  onRetry?: (url: string, reason: string) => void;
}

export interface ServerInfo {
  name: string;
  emlens_version: string;
  model_type: string;
  layers: number;
  d_model: number;
  vocab: number;
  max_positions: number;
  /** Most rows the server takes in one call (--max-batch). */
  max_batch: number;
  config_sha256: string | null;
  tokenizer_sha256: string | null;
  weights_sha256: string;
  adapter: boolean;
}

/** A failure worth retrying elsewhere (the server or the network), not the caller's mistake. */
class Transient extends Error {}

function wireInterventions(iv: Interventions | undefined) {
  if (!iv) return undefined;
  return {
    ...(iv.steer ? { steer: iv.steer.map((s) => ({ hook: s.hook, vector: Array.from(s.vector), scale: s.scale, ...(s.fromPosition !== undefined ? { fromPosition: s.fromPosition } : {}) })) } : {}),
    ...(iv.ablate ? { ablate: iv.ablate.map((a) => ({ hook: a.hook, directions: a.directions.map((d) => Array.from(d)) })) } : {}),
  };
}

/** A base URL as the user wrote it, checked. */
export function parseBackendUrls(list: string, flag = '--backend'): string[] {
  const urls = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (urls.length === 0) throw new EmlensError(`${flag}: no URL given`);
  return urls.map((u) => {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new EmlensError(`${flag}: "${u}" is not a URL (expected http://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EmlensError(`${flag}: "${u}" is not http(s)`);
    return u.replace(/\/+$/, '');
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A backend URL: an `emlens serve` base URL, or a KServe v2 model URL (`…/v2/models/NAME`, e.g.
 * Triton serving `emlens export --triton`), which takes forward calls only.
 */
export function kserveModelOf(url: string): { base: string; model: string } | null {
  const m = /^(.*)\/v2\/models\/([^/]+)$/.exec(url);
  return m ? { base: m[1]!, model: decodeURIComponent(m[2]!) } : null;
}

/** What a KServe v2 server says of its model: its shape, and the weights' fingerprint when it has one. */
export interface KserveInfo {
  layers: number;
  d_model: number;
  vocab: number;
  weights_sha256: string | null;
}

interface WireRequest {
  path: string;
  headers: Record<string, string>;
  body: Uint8Array | string;
}

export class RemoteEngine implements ModelBackend {
  private next = 0;
  /** url -> time before which it is skipped (after a failure). */
  private readonly downUntil = new Map<string, number>();
  /** Requests sent, retries included (tests, logs). */
  requests = 0;

  constructor(
    readonly spec: ModelSpec,
    readonly o: BackendOptions,
  ) {
    if (o.urls.length === 0) throw new EmlensError('--backend: no URL given');
  }

  /** GET /emlens/v1/info of one server (no retries: used to check a server before a run). */
  static async info(url: string, token?: string): Promise<ServerInfo> {
    let r: Response;
    try {
      r = await fetch(`${url}/emlens/v1/info`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(30_000) });
    } catch (e) {
      throw new EmlensError(`--backend ${url}: unreachable (${(e as { cause?: { code?: string } })?.cause?.code ?? (e as Error).message})`);
    }
    if (!r.ok) throw new EmlensError(`--backend ${url}: HTTP ${r.status}: ${await errorMessage(r)}`);
    return (await r.json()) as ServerInfo;
  }

  /** GET the KServe metadata (and Triton's model config, for the fingerprint) of a model URL. */
  static async kserveInfo(url: string, token?: string): Promise<KserveInfo> {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const get = async (u: string) => {
      let r: Response;
      try {
        r = await fetch(u, { headers, signal: AbortSignal.timeout(30_000) });
      } catch (e) {
        throw new EmlensError(`--backend ${url}: unreachable (${(e as { cause?: { code?: string } })?.cause?.code ?? (e as Error).message})`);
      }
      return r;
    };
    const r = await get(url);
    if (!r.ok) throw new EmlensError(`--backend ${url}: HTTP ${r.status}: ${await errorMessage(r)}`);
    const m = (await r.json()) as { inputs?: { name: string; shape: number[] }[]; outputs?: { name: string; shape: number[] }[]; parameters?: { weights_sha256?: string } };
    const steer = m.inputs?.find((i) => i.name === 'steer');
    const logits = m.outputs?.find((o) => o.name === 'logits');
    if (!steer || !logits || !m.inputs?.some((i) => i.name === 'input_ids')) throw new EmlensError(`--backend ${url}: not an emlens hooked model (its metadata has no input_ids / steer / logits)`);
    let sha = m.parameters?.weights_sha256 ?? null;
    if (sha === null) {
      // Triton: the fingerprint is a parameter of the model config emlens export wrote.
      const c = await get(`${url}/config`);
      if (c.ok) sha = ((await c.json()) as { parameters?: { emlens_weights_sha256?: { string_value?: string } } }).parameters?.emlens_weights_sha256?.string_value ?? null;
    }
    return { layers: steer.shape[0]!, d_model: steer.shape[1]!, vocab: logits.shape[1]!, weights_sha256: sha };
  }

  private order(): string[] {
    const now = Date.now();
    const n = this.o.urls.length;
    const rot = Array.from({ length: n }, (_, i) => this.o.urls[(this.next + i) % n]!);
    this.next = (this.next + 1) % n;
    const up = rot.filter((u) => (this.downUntil.get(u) ?? 0) <= now);
    return up.length ? [...up, ...rot.filter((u) => !up.includes(u))] : rot;
  }

  /**
   * One call with failover: each attempt goes to the next server in turn that can take it;
   * `build` writes the request for a server (null: that kind of server cannot do this call).
   */
  private async call<T>(build: (url: string) => WireRequest | null, read: (r: Response, url: string) => Promise<T>): Promise<T> {
    const servers = this.order().filter((u) => build(u) !== null);
    if (servers.length === 0) throw new EmlensError('--backend: this call needs an emlens serve server; the KServe model URLs given take forward calls only');
    const attempts = this.o.maxAttempts ?? Math.max(4, 3 * servers.length);
    let last = '';
    for (let a = 0; a < attempts; a++) {
      const url = servers[a % servers.length]!;
      const q = build(url)!;
      try {
        this.requests++;
        let r: Response;
        try {
          r = await fetch((kserveModelOf(url)?.base ?? url) + q.path, {
            method: 'POST',
            headers: { ...q.headers, ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}) },
            body: q.body as BodyInit,
            signal: AbortSignal.timeout(this.o.timeoutMs ?? 600_000),
          });
        } catch (e) {
          throw new Transient(`unreachable (${(e as { cause?: { code?: string } })?.cause?.code ?? (e as Error).message})`);
        }
        if (r.status === 429 || r.status >= 500) throw new Transient(`HTTP ${r.status}: ${await errorMessage(r)}`);
        // Rows are checked here first, so a 4xx is a real disagreement, reported as the server says it.
        if (!r.ok) throw new EmlensError(`--backend ${url}: HTTP ${r.status}: ${await errorMessage(r)}`);
        try {
          return await read(r, url);
        } catch (e) {
          if (e instanceof EmlensError) throw e;
          throw new Transient(`the answer broke off (${(e as Error).message})`);
        }
      } catch (e) {
        if (!(e instanceof Transient)) throw e;
        last = `${url}: ${e.message}`;
        this.downUntil.set(url, Date.now() + 30_000);
        this.o.onRetry?.(url, e.message);
        if (a + 1 < attempts) await sleep((this.o.backoffMs ?? 250) * 2 ** Math.min(a, 6) * (0.5 + Math.random()));
      }
    }
    throw new EmlensError(`--backend: every attempt failed (${attempts}); last: ${last}`);
  }

  /** The checks the local engine makes on rows, so errors name the same rows. */
  private check(rows: number[][]): void {
    if (rows.length === 0) throw new EmlensError('no input rows');
    rows.forEach((r, b) => {
      if (r.length === 0) throw new InputRowError(b, 'has no tokens');
      for (const id of r) if (!Number.isInteger(id) || id < 0 || id >= this.spec.vocab) throw new InputRowError(b, `token id ${id} is outside the vocabulary (0..${this.spec.vocab - 1})`);
    });
  }

  private forwardPart(ids: number[][], req: ForwardRequest) {
    const json = JSON.stringify({ ids, capture: req.capture ?? [], logits: req.logits ?? 'none', interventions: wireInterventions(req.interventions) });
    return this.call(
      (url) => (kserveModelOf(url) ? this.kserveRequest(url, ids, req) : { path: '/emlens/v1/forward', headers: { 'content-type': 'application/json' }, body: json }),
      async (r, url) => {
        const buf = Buffer.from(await r.arrayBuffer());
        const hl = Number(r.headers.get('inference-header-content-length'));
        if (!Number.isInteger(hl) || hl <= 0 || hl > buf.length) throw new Error('no Inference-Header-Content-Length');
        const head = JSON.parse(buf.subarray(0, hl).toString('utf8'));
        let off = hl;
        const tensors = new Map<string, Float32Array>();
        // emlens: {layout, tensors: [{name, bytes}]}; KServe: {outputs: [{name, parameters: {binary_data_size}}]}.
        const list: { name: string; bytes: number }[] = kserveModelOf(url)
          ? (head.outputs as { name: string; parameters?: { binary_data_size?: number } }[]).map((o) => ({ name: o.name, bytes: o.parameters?.binary_data_size ?? NaN }))
          : head.tensors;
        for (const t of list) {
          if (!Number.isInteger(t.bytes) || off + t.bytes > buf.length) throw new Error('the body is shorter than its header says');
          // Copied out: the response buffer's offset need not be 4-byte aligned.
          tensors.set(t.name, new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + t.bytes)));
          off += t.bytes;
        }
        const T = Math.max(...ids.map((x) => x.length));
        const layout: BatchLayout = kserveModelOf(url) ? { pad: ids.map((x) => T - x.length), past: 0, seq: T } : head.layout;
        return { layout, tensors };
      },
    );
  }

  /**
   * The universal hooked model's request for these rows (left-padded), as binary tensors: steering
   * and ablation become its per-layer [L, D] rows, which express steering and single-direction
   * ablation at resid_post; anything else is refused.
   */
  private kserveRequest(url: string, ids: number[][], req: ForwardRequest): WireRequest {
    const { nLayers: L, dModel: D } = this.spec;
    const B = ids.length;
    const T = Math.max(...ids.map((x) => x.length));
    const idBuf = Buffer.alloc(B * T * 8);
    const maskBuf = Buffer.alloc(B * T * 8);
    ids.forEach((r, b) => r.forEach((id, j) => {
      idBuf.writeBigInt64LE(BigInt(id), (b * T + T - r.length + j) * 8);
      maskBuf.writeBigInt64LE(1n, (b * T + T - r.length + j) * 8);
    }));
    const steer = new Float32Array(L * D);
    const ablate = new Float32Array(L * D);
    const layerOf = (hook: string, what: string) => {
      const m = /^blocks\.(\d+)\.hook_resid_post$/.exec(hook);
      if (!m) throw new EmlensError(`--backend ${url}: the KServe hooked model ${what}s at blocks.L.hook_resid_post only, not ${hook}`);
      return Number(m[1]);
    };
    for (const s of req.interventions?.steer ?? []) {
      if (s.fromPosition) throw new EmlensError(`--backend ${url}: the KServe hooked model steers every token; fromPosition ${s.fromPosition} needs an emlens serve server`);
      const l = layerOf(s.hook, 'steer');
      for (let k = 0; k < D; k++) steer[l * D + k]! += s.scale * s.vector[k]!;
    }
    for (const a of req.interventions?.ablate ?? []) {
      const l = layerOf(a.hook, 'ablate');
      if (a.directions.length !== 1 || ablate.subarray(l * D, (l + 1) * D).some((x) => x !== 0)) throw new EmlensError(`--backend ${url}: the KServe hooked model ablates one direction per layer`);
      ablate.set(a.directions[0]!, l * D);
    }
    // Per-token captures (an exported model has resid_post ones; emlens serve every hook).
    const outputs = (req.capture ?? []).map((h) => ({ name: h, parameters: { binary_data: true } }));
    if (req.logits === 'all') throw new EmlensError(`--backend ${url}: the KServe hooked model returns the last token's logits only`);
    if (req.logits === 'last') outputs.push({ name: 'logits', parameters: { binary_data: true } });
    const f32 = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    const tensors = [
      { name: 'input_ids', datatype: 'INT64', shape: [B, T], data: idBuf },
      { name: 'attention_mask', datatype: 'INT64', shape: [B, T], data: maskBuf },
      { name: 'steer', datatype: 'FP32', shape: [L, D], data: f32(steer) },
      { name: 'ablate', datatype: 'FP32', shape: [L, D], data: f32(ablate) },
      { name: 'pool', datatype: 'FP32', shape: [B, T], data: Buffer.alloc(B * T * 4) },
    ];
    const head = Buffer.from(JSON.stringify({ inputs: tensors.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: t.data.length } })), outputs }));
    return {
      path: `/v2/models/${encodeURIComponent(kserveModelOf(url)!.model)}/infer`,
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
      body: Buffer.concat([head, ...tensors.map((t) => t.data)]),
    };
  }

  async forward(req: ForwardRequest): Promise<ForwardResult> {
    this.check(req.ids);
    const logits = req.logits ?? 'none';
    const capture = req.capture ?? [];
    if (logits === 'none' && capture.length === 0) throw new EmlensError('forward: nothing requested (no captures, no logits)');
    const B = req.ids.length;
    // Contiguous parts, at least one per server and none over the servers' batch limit, run at once.
    const k = Math.min(B, Math.max(this.o.urls.length, Math.ceil(B / (this.o.maxRows ?? 64))));
    const cuts = Array.from({ length: k + 1 }, (_, i) => Math.round((i * B) / k));
    const parts = await Promise.all(Array.from({ length: k }, (_, i) => this.forwardPart(req.ids.slice(cuts[i], cuts[i + 1]), req)));
    // One left-padded layout over all rows, as the local engine returns.
    const T = Math.max(...req.ids.map((r) => r.length));
    const layout: BatchLayout = { pad: req.ids.map((r) => T - r.length), past: 0, seq: T };
    const D = this.spec.dModel;
    const V = this.spec.vocab;
    const merge = (name: string, width: number, perToken: boolean): Float32Array => {
      const out = new Float32Array(B * (perToken ? T : 1) * width);
      parts.forEach((p, i) => {
        const src = p.tensors.get(name);
        if (!src) throw new EmlensError(`--backend: the server's answer has no ${name}`);
        const Tp = p.layout.seq;
        for (let b = cuts[i]!; b < cuts[i + 1]!; b++) {
          const bp = b - cuts[i]!;
          if (!perToken) {
            out.set(src.subarray(bp * width, (bp + 1) * width), b * width);
            continue;
          }
          const n = req.ids[b]!.length;
          const from = (bp * Tp + (Tp - n)) * width;
          out.set(src.subarray(from, from + n * width), (b * T + (T - n)) * width);
        }
      });
      return out;
    };
    const captures = new Map<string, Float32Array>();
    for (const c of capture) captures.set(c, merge(c, D, true));
    return { layout, captures, logits: logits === 'none' ? undefined : merge('logits', V, logits === 'all') };
  }

  /**
   * The training objective on a server (train, measure): the feeds travel as binary tensors
   * after a JSON header; outputs come back the same way. Runs whole on one server.
   */
  async objective(c: ObjectiveCall): Promise<ObjectiveOutputs> {
    this.check(c.ids);
    // The objective is a sum over rows (its per-token weights are fixed by the caller), and so are
    // its gradients: the rows split over the servers and the parts' outputs add up.
    const B = c.ids.length;
    const k = Math.min(B, Math.max(this.o.urls.length, Math.ceil(B / (this.o.maxRows ?? 64))));
    const cuts = Array.from({ length: k + 1 }, (_, i) => Math.round((i * B) / k));
    const T = Math.max(...c.ids.map((r) => r.length));
    const parts = await Promise.all(Array.from({ length: k }, (_, i) => this.objectivePart(c, cuts[i]!, cuts[i + 1]!, T)));
    const out: ObjectiveOutputs = {};
    for (const p of parts) {
      for (const [name, t] of Object.entries(p)) {
        const acc = out[name];
        if (!acc) out[name] = { data: Float32Array.from(t.data), dims: t.dims };
        else for (let i = 0; i < t.data.length; i++) acc.data[i]! += t.data[i]!;
      }
    }
    return out;
  }

  /** Rows [a, b) of an objective call; per-token feeds ([B*T, ...]) are cut to the part's own left-padded layout. */
  private objectivePart(c: ObjectiveCall, a: number, b: number, T: number): Promise<ObjectiveOutputs> {
    const ids = c.ids.slice(a, b);
    const Tp = Math.max(...ids.map((r) => r.length));
    const N = c.ids.length * T;
    const feeds = Object.entries(c.feeds).map(([name, t]) => {
      let data = t.data as Float32Array | BigInt64Array;
      let dims = [...t.dims];
      if (dims[0] === N) {
        // Left padding aligns rows at their end: a row's last Tp slots are the part's.
        const width = data.length / N;
        const cut = <A extends Float32Array | BigInt64Array>(src: A, make: (n: number) => A): A => {
          const part = make(ids.length * Tp * width);
          for (let r = a; r < b; r++) (part as Float32Array).set((src as Float32Array).subarray(((r + 1) * T - Tp) * width, (r + 1) * T * width), (r - a) * Tp * width);
          return part;
        };
        data = data instanceof BigInt64Array ? cut(data, (n) => new BigInt64Array(n)) : cut(data, (n) => new Float32Array(n));
        dims = [ids.length * Tp, ...dims.slice(1)];
      }
      return { name, dtype: t.type as 'float32' | 'int64', dims, buf: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    });
    const head = Buffer.from(
      JSON.stringify({
        ids,
        interventions: wireInterventions(c.interventions),
        lora: c.lora ?? [],
        withKl: c.withKl,
        wrt: c.wrt,
        feeds: feeds.map((f) => ({ name: f.name, dtype: f.dtype, dims: f.dims, bytes: f.buf.length })),
      }),
    );
    const body = Buffer.concat([head, ...feeds.map((f) => f.buf)]);
    return this.call(
      (url) => (kserveModelOf(url) ? null : { path: '/emlens/v1/objective', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) }, body }),
      async (r) => {
        const buf = Buffer.from(await r.arrayBuffer());
        const hl = Number(r.headers.get('inference-header-content-length'));
        if (!Number.isInteger(hl) || hl <= 0 || hl > buf.length) throw new Error('no Inference-Header-Content-Length');
        const h = JSON.parse(buf.subarray(0, hl).toString('utf8')) as { tensors: { name: string; shape: number[]; bytes: number }[] };
        let off = hl;
        const out: ObjectiveOutputs = {};
        for (const t of h.tensors) {
          if (off + t.bytes > buf.length) throw new Error('the body is shorter than its header says');
          out[t.name] = { data: new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + t.bytes)), dims: t.shape };
          off += t.bytes;
        }
        return out;
      },
    );
  }

  async generate(prompts: number[][], opts: GenerateOptions = {}): Promise<GenerateResult> {
    if (opts.onStep || opts.keepLogits) throw new EmlensError('--backend: per-step callbacks and kept logits need the local runtime');
    // The local engine's checks first, so errors name the caller's rows.
    this.check(prompts);
    const M = this.spec.maxPositions;
    const maxNew = opts.maxNewTokens ?? 64;
    prompts.forEach((p, b) => {
      if (maxNew > 0 && p.length >= M) throw new InputRowError(b, `the prompt is ${p.length} tokens; the model's context (max_position_embeddings) is ${M}, which leaves no room to generate`);
    });
    if (opts.seeds) {
      // One generator per row: rows are independent, so they split over the servers.
      if (opts.seeds.length !== prompts.length) throw new EmlensError(`generate: ${opts.seeds.length} seeds for ${prompts.length} rows`);
      const B = prompts.length;
      const k = Math.min(B, Math.max(this.o.urls.length, Math.ceil(B / (this.o.maxRows ?? 64))));
      if (k > 1) {
        const cuts = Array.from({ length: k + 1 }, (_, i) => Math.round((i * B) / k));
        const parts = await Promise.all(Array.from({ length: k }, (_, i) => this.generateWhole(prompts.slice(cuts[i], cuts[i + 1]), { ...opts, seeds: opts.seeds!.slice(cuts[i], cuts[i + 1]) })));
        return { tokens: parts.flatMap((p) => p.tokens), finished: parts.flatMap((p) => p.finished), contextFull: parts.flatMap((p) => p.contextFull) };
      }
    }
    return this.generateWhole(prompts, opts);
  }

  /** One generate call on one server (with failover). */
  private async generateWhole(prompts: number[][], opts: GenerateOptions): Promise<GenerateResult> {
    const maxNew = opts.maxNewTokens ?? 64;
    // Without per-row seeds, one sampling stream runs across the rows: they cannot be split.
    if (prompts.length > (this.o.maxRows ?? 64)) throw new EmlensError(`--backend: ${prompts.length} prompts in one batch; the servers take at most ${this.o.maxRows ?? 64} (lower --batch, or raise the servers' --max-batch)`);
    const body = {
      prompts,
      max_new_tokens: maxNew,
      temperature: opts.temperature ?? 0,
      top_p: opts.topP ?? 1,
      ...(opts.seeds ? { seeds: opts.seeds } : { seed: opts.seed ?? 0 }),
      ...(opts.stopIds ? { stop_ids: opts.stopIds } : {}),
      interventions: wireInterventions(opts.interventions),
    };
    const json = JSON.stringify(body);
    return this.call((url) => (kserveModelOf(url) ? null : { path: '/emlens/v1/generate', headers: { 'content-type': 'application/json' }, body: json }), async (r) => {
      const j = (await r.json()) as { tokens: number[][]; finished: boolean[]; context_full: boolean[] };
      return { tokens: j.tokens, finished: j.finished, contextFull: j.context_full };
    });
  }
}

async function errorMessage(r: Response): Promise<string> {
  const text = await r.text().catch(() => '');
  try {
    const j = JSON.parse(text) as { error?: string | { message?: string } };
    const m = typeof j.error === 'string' ? j.error : j.error?.message;
    if (m) return m;
  } catch {
    /* not JSON */
  }
  return text.slice(0, 200) || r.statusText;
}
