/**
 * OpenAI-compatible `/v1/models`, `/v1/chat/completions` and `/v1/completions` on an emlens model,
 * streaming (server-sent events) or not, with `logprobs` / `top_logprobs`, and an `emlens` field per
 * request for steering and ablation (./interventions.ts). Any OpenAI client talks to a steered
 * model this way, and `--judge openai:NAME` can point at an emlens server.
 *
 * Sampling is emlens's own (runtime/sampling: temperature, top-p, a seeded generator): the same
 * `seed` gives the same tokens as `emlens generate --seed`. Without a seed each request draws one.
 * Log-probabilities are of the model's distribution before temperature and top-p (as vLLM reports).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { LoadedModel } from '../backend/model.js';
import type { DirectionFile } from '../io/directions.js';
import type { ChatMessage, TextTokenizer } from '../model/tokenizer.js';
import { logSumExp, topLogSoftmax } from '../runtime/logprobs.js';
import { HttpError, type Context, type Route } from './http.js';
import { describeInterventions, parseInterventions } from './interventions.js';
import type { WorkQueue } from './queue.js';
import type { Interventions } from '../hooks/interventions.js';

export interface ServedModel {
  /** The name clients put in `model` (and KServe's model name). */
  name: string;
  model: LoadedModel;
  directions: ReadonlyMap<string, DirectionFile>;
  queue: WorkQueue;
  limits: { maxNewTokens: number; maxBatch: number };
  created: number;
}

/** top_logprobs above this are refused, as OpenAI does. */
export const MAX_TOP_LOGPROBS = 20;

interface Params {
  ids: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  n: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** null: no logprobs; else how many top alternatives per token (0..20). */
  topLogprobs: number | null;
  interventions: Interventions;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const bad = (msg: string): never => {
  throw new HttpError(400, msg);
};

function num(o: Record<string, unknown>, k: string, def: number, ok: (x: number) => boolean, rule: string): number {
  const v = o[k];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) bad(`${k} must be ${rule}, got ${JSON.stringify(v)}`);
  return v as number;
}

/** Fields OpenAI clients send that change nothing at their neutral value; any other value is refused. */
const NEUTRAL: Record<string, unknown[]> = {
  frequency_penalty: [0, null],
  presence_penalty: [0, null],
  logit_bias: [null],
  user: [],
  response_format: [],
  parallel_tool_calls: [],
  service_tier: [],
  store: [false, null],
  echo: [false, null],
  best_of: [1, null],
  suffix: [null],
};

function checkFields(o: Record<string, unknown>, known: string[]): void {
  for (const [k, v] of Object.entries(o)) {
    if (known.includes(k)) continue;
    const neutral = NEUTRAL[k];
    if (!neutral) bad(`unsupported field "${k}"`);
    if (k === 'response_format' && !(isObj(v) && v.type === 'text')) bad('response_format: only {"type": "text"} is supported');
    if (neutral!.length && !neutral!.some((x) => x === v || (x === null && v === undefined))) bad(`${k}=${JSON.stringify(v)} is not supported (only ${neutral!.map((x) => JSON.stringify(x)).join(' or ')})`);
  }
}

function common(o: Record<string, unknown>, s: ServedModel, ids: number[]): Omit<Params, 'topLogprobs'> {
  if (o.model !== s.name) throw new HttpError(404, `The model \`${String(o.model)}\` does not exist; this server serves "${s.name}"`, 'not_found_error');
  const maxTokens = num(o, o.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', 16, (x) => Number.isInteger(x) && x >= 1 && x <= s.limits.maxNewTokens, `an integer in 1..${s.limits.maxNewTokens} (--max-new-tokens-limit)`);
  if (o.max_tokens !== undefined && o.max_completion_tokens !== undefined) bad('give max_tokens or max_completion_tokens, not both');
  const temperature = num(o, 'temperature', 1, (x) => x >= 0 && x <= 2, 'a number in 0..2');
  const topP = num(o, 'top_p', 1, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  const n = num(o, 'n', 1, (x) => Number.isInteger(x) && x >= 1 && x <= s.limits.maxBatch, `an integer in 1..${s.limits.maxBatch} (--max-batch)`);
  const seed = num(o, 'seed', randomBytes(4).readUInt32LE(0), (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32, 'an integer in 0..2^32-1');
  let stop: string[] = [];
  if (o.stop !== undefined && o.stop !== null) {
    stop = typeof o.stop === 'string' ? [o.stop] : Array.isArray(o.stop) ? (o.stop as unknown[]).map((x) => (typeof x === 'string' && x !== '' ? x : bad('stop must be a string or a list of non-empty strings'))) : bad('stop must be a string or a list of strings');
    if (stop.length > 4) bad('stop takes at most 4 strings');
  }
  if (o.stream !== undefined && typeof o.stream !== 'boolean') bad('stream must be true or false');
  let includeUsage = false;
  if (o.stream_options !== undefined && o.stream_options !== null) {
    if (!o.stream) bad('stream_options needs stream: true');
    if (!isObj(o.stream_options)) bad('stream_options must be an object');
    const so = o.stream_options as Record<string, unknown>;
    for (const k of Object.keys(so)) if (k !== 'include_usage') bad(`stream_options.${k} is not supported`);
    if (so.include_usage !== undefined && typeof so.include_usage !== 'boolean') bad('stream_options.include_usage must be true or false');
    includeUsage = so.include_usage === true;
  }
  const interventions = parseInterventions(o.emlens, s.model.spec, s.directions);
  return { ids, maxTokens, temperature, topP, n, seed, stop, stream: o.stream === true, includeUsage, interventions };
}

function content(m: Record<string, unknown>, i: number): string {
  if (typeof m.content === 'string') return m.content;
  // The list form: text parts only.
  if (Array.isArray(m.content)) {
    return m.content
      .map((p, k) => (isObj(p) && p.type === 'text' && typeof p.text === 'string' ? p.text : bad(`messages[${i}].content[${k}]: only {"type": "text", "text": …} parts are supported`)))
      .join('');
  }
  return bad(`messages[${i}].content must be a string or a list of text parts`);
}

function chatParams(o: Record<string, unknown>, s: ServedModel, tok: TextTokenizer): Params {
  checkFields(o, ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'seed', 'stop', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'emlens']);
  if (!tok.hasChatTemplate) bad(`"${s.name}" has no chat template; use /v1/completions`);
  if (!Array.isArray(o.messages) || o.messages.length === 0) bad('messages must be a non-empty list');
  const messages: ChatMessage[] = (o.messages as unknown[]).map((m, i) => {
    if (!isObj(m)) return bad(`messages[${i}] must be an object {role, content}`);
    if (!['system', 'developer', 'user', 'assistant'].includes(m.role as string)) bad(`messages[${i}].role must be system, user or assistant`);
    return { role: m.role === 'developer' ? 'system' : (m.role as string), content: content(m, i) };
  });
  const ids = tok.encodeChat(messages, { addGenerationPrompt: true }).ids;
  if (o.logprobs !== undefined && o.logprobs !== null && typeof o.logprobs !== 'boolean') bad('logprobs must be true or false');
  const top = num(o, 'top_logprobs', 0, (x) => Number.isInteger(x) && x >= 0 && x <= MAX_TOP_LOGPROBS, `an integer in 0..${MAX_TOP_LOGPROBS}`);
  if (o.top_logprobs !== undefined && o.top_logprobs !== null && o.logprobs !== true) bad('top_logprobs needs logprobs: true');
  return { ...common(o, s, ids), topLogprobs: o.logprobs === true ? top : null };
}

function completionParams(o: Record<string, unknown>, s: ServedModel, tok: TextTokenizer): Params {
  checkFields(o, ['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'seed', 'stop', 'stream', 'stream_options', 'logprobs', 'emlens']);
  const p = Array.isArray(o.prompt) && o.prompt.length === 1 ? o.prompt[0] : o.prompt;
  if (typeof p !== 'string' || p === '') bad('prompt must be a non-empty string (one prompt per request)');
  const ids = tok.encode(p as string);
  // The legacy API's logprobs is the number of alternatives (0..5 at OpenAI; 20 here).
  const lp = o.logprobs === undefined || o.logprobs === null ? null : num(o, 'logprobs', 0, (x) => Number.isInteger(x) && x >= 0 && x <= MAX_TOP_LOGPROBS, `an integer in 0..${MAX_TOP_LOGPROBS}`);
  return { ...common(o, s, ids), topLogprobs: lp };
}

interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[];
}

/** One row's progress: tokens so far, text emitted, and why it ended. */
interface RowState {
  tokens: number[];
  logprobs: TokenLogprob[];
  text: string;
  /** Characters of `text` already streamed. */
  sent: number;
  /** Log-prob entries already streamed. */
  sentLp: number;
  finish: 'stop' | 'length' | null;
}

const tokenBytes = (s: string): number[] | null => (s.includes('\uFFFD') ? null : [...Buffer.from(s, 'utf8')]);

class StopAll extends Error {}

/**
 * Samples n rows for the request, calling `onDelta` as text arrives (streaming). Stop strings end
 * a row at their first occurrence (the stop string itself is not returned, as OpenAI).
 */
async function sample(s: ServedModel, p: Params, signal: AbortSignal, onDelta?: (rows: RowState[]) => void): Promise<RowState[]> {
  const tok = s.model.tokenizer!;
  const V = s.model.spec.vocab;
  const eos = new Set(tok.eosIds.length ? tok.eosIds : s.model.spec.eosIds);
  const rows: RowState[] = Array.from({ length: p.n }, () => ({ tokens: [], logprobs: [], text: '', sent: 0, sentLp: 0, finish: null }));
  // A token's own text, special tokens included (an answer's text leaves them out).
  const piece = (id: number) => (id < tok.vocabSize ? tok.decode([id]) : '');
  const update = (b: number, all: number[], logits: Float32Array | null, ended: boolean, contextFull: boolean) => {
    const r = rows[b]!;
    if (r.finish) return;
    const id = all[all.length - 1]!;
    const stopped = eos.has(id);
    // The stop token gets an entry too (its text is not in the answer): a judge asking for one
    // token must see the distribution even when the most likely token ends the answer.
    if (logits && p.topLogprobs !== null && all.length > r.tokens.length) {
      const lse = logSumExp(logits, b * V, V);
      const t = piece(id);
      r.logprobs.push({
        token: t,
        logprob: logits[b * V + id]! - lse,
        bytes: tokenBytes(t),
        top_logprobs: p.topLogprobs > 0 ? topLogSoftmax(logits, b * V, V, Math.min(p.topLogprobs, V)).map((x) => ({ token: piece(x.id), logprob: x.logprob, bytes: tokenBytes(piece(x.id)) })) : [],
      });
    }
    r.tokens = [...all];
    const body = (stopped ? all.slice(0, -1) : all).filter((t) => t < tok.vocabSize);
    let text = tok.decode(body, { skipSpecialTokens: true });
    let hit = -1;
    for (const st of p.stop) {
      const k = text.indexOf(st);
      if (k >= 0 && (hit < 0 || k < hit)) hit = k;
    }
    if (hit >= 0) {
      text = text.slice(0, hit);
      r.finish = 'stop';
    } else if (stopped) r.finish = 'stop';
    else if (ended || contextFull) r.finish = 'length';
    r.text = text;
  };
  await s.queue.run(async () => {
    if (signal.aborted) throw signal.reason;
    try {
      const g = await s.model.engine.generate(
        rows.map(() => p.ids),
        {
          maxNewTokens: p.maxTokens,
          temperature: p.temperature,
          topP: p.topP,
          seed: p.seed,
          stopIds: [...eos],
          interventions: p.interventions,
          stepLogits: p.topLogprobs !== null,
          onStep: (step, tokens, logits) => {
            if (signal.aborted) throw signal.reason;
            tokens.forEach((t, b) => update(b, t, logits, step >= p.maxTokens, false));
            onDelta?.(rows);
            if (rows.every((r) => r.finish)) throw new StopAll();
          },
        },
      );
      g.tokens.forEach((t, b) => update(b, t, null, true, g.contextFull[b]!));
    } catch (e) {
      if (!(e instanceof StopAll)) throw e;
    }
  }, signal);
  return rows;
}

/** Text a stream may send now: held back while it ends in a partial character or could be the start of a stop string. */
function sendable(r: RowState, stop: string[]): string {
  let t = r.text;
  if (!r.finish) {
    if (t.endsWith('\uFFFD')) t = t.replace(/\uFFFD+$/, '');
    for (const st of stop) for (let k = Math.min(st.length - 1, t.length); k > 0; k--) if (t.endsWith(st.slice(0, k))) t = t.slice(0, t.length - k);
  }
  return t.length > r.sent ? t.slice(r.sent) : '';
}

function usage(p: Params, rows: RowState[]) {
  const completion = rows.reduce((a, r) => a + r.tokens.length, 0);
  return { prompt_tokens: p.ids.length, completion_tokens: completion, total_tokens: p.ids.length + completion };
}

function sse(ctx: Context): (v: unknown) => void {
  ctx.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  return (v) => ctx.res.write(`data: ${typeof v === 'string' ? v : JSON.stringify(v)}\n\n`);
}

async function respond(ctx: Context, s: ServedModel, chat: boolean): Promise<void> {
  const tok = s.model.tokenizer;
  if (!tok) throw new HttpError(400, `"${s.name}" has no tokenizer; only token ids can be sent (KServe /v2)`);
  const o = await ctx.json();
  if (!isObj(o)) bad('the body must be a JSON object');
  const p = chat ? chatParams(o as Record<string, unknown>, s, tok) : completionParams(o as Record<string, unknown>, s, tok);
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, object: chat ? 'chat.completion' : 'text_completion', created, model: s.name, system_fingerprint: `emlens-${s.model.weightsSha256().slice(0, 12)}`, seed: p.seed };
  const emlens = describeInterventions(p.interventions);
  ctx.note('n', p.n);
  const legacyLp = (r: RowState) => ({
    tokens: r.logprobs.map((x) => x.token),
    token_logprobs: r.logprobs.map((x) => x.logprob),
    top_logprobs: r.logprobs.map((x) => Object.fromEntries(x.top_logprobs.map((t) => [t.token, t.logprob]))),
  });
  if (!p.stream) {
    const rows = await sample(s, p, ctx.signal);
    ctx.note('tokens', usage(p, rows).completion_tokens);
    ctx.sendJson(200, {
      ...base,
      choices: rows.map((r, index) =>
        chat
          ? { index, message: { role: 'assistant', content: r.text }, logprobs: p.topLogprobs === null ? null : { content: r.logprobs }, finish_reason: r.finish ?? 'length' }
          : { index, text: r.text, logprobs: p.topLogprobs === null ? null : legacyLp(r), finish_reason: r.finish ?? 'length' },
      ),
      usage: usage(p, rows),
      ...(emlens ? { emlens } : {}),
    });
    return;
  }
  let send: ((v: unknown) => void) | null = null;
  const chunkBase = { ...base, object: chat ? 'chat.completion.chunk' : 'text_completion' };
  const flush = (rows: RowState[]) => {
    if (!send) {
      send = sse(ctx);
      if (chat) send({ ...chunkBase, choices: rows.map((_, index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })) });
    }
    rows.forEach((r, index) => {
      const text = sendable(r, p.stop);
      const lp = r.logprobs.slice(r.sentLp);
      const done = r.finish !== null && r.sent + text.length >= r.text.length && !(r as { closed?: boolean }).closed;
      if (text === '' && lp.length === 0 && !done) return;
      r.sent += text.length;
      r.sentLp += lp.length;
      if (done) (r as { closed?: boolean }).closed = true;
      const logprobs = p.topLogprobs === null || lp.length === 0 ? null : chat ? { content: lp } : legacyLp({ ...r, logprobs: lp });
      send!({
        ...chunkBase,
        choices: [chat ? { index, delta: text === '' ? {} : { content: text }, logprobs, finish_reason: done ? r.finish : null } : { index, text, logprobs, finish_reason: done ? r.finish : null }],
      });
    });
  };
  try {
    const rows = await sample(s, p, ctx.signal, flush);
    for (const r of rows) r.finish ??= 'length';
    flush(rows);
    ctx.note('tokens', usage(p, rows).completion_tokens);
    if (p.includeUsage) send!({ ...chunkBase, choices: [], usage: usage(p, rows) });
    if (emlens) send!({ ...chunkBase, choices: [], emlens });
    send!('[DONE]');
    ctx.res.end();
  } catch (e) {
    // Once the stream has started, an error is the stream's last event.
    if (send && !ctx.res.writableEnded) {
      const m = e instanceof HttpError ? e.message : 'internal error (see the server log)';
      (send as (v: unknown) => void)({ error: { message: m, type: 'server_error', code: e instanceof HttpError ? e.status : 500 } });
      ctx.res.end();
    }
    throw e;
  }
}

export function openaiRoutes(s: ServedModel): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/models$/,
      handle: async (ctx) => ctx.sendJson(200, { object: 'list', data: [{ id: s.name, object: 'model', created: s.created, owned_by: 'emlens' }] }),
    },
    {
      method: 'GET',
      path: /^\/v1\/models\/([^/]+)$/,
      handle: async (ctx) => {
        if (ctx.params[0] !== s.name) throw new HttpError(404, `The model \`${ctx.params[0]}\` does not exist`, 'not_found_error');
        ctx.sendJson(200, { id: s.name, object: 'model', created: s.created, owned_by: 'emlens' });
      },
    },
    { method: 'POST', path: /^\/v1\/chat\/completions$/, handle: (ctx) => respond(ctx, s, true) },
    { method: 'POST', path: /^\/v1\/completions$/, handle: (ctx) => respond(ctx, s, false) },
  ];
}
