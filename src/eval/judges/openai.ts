/**
 * `openai:MODEL`: a judge on any OpenAI-compatible Chat Completions server (OpenAI, Azure's
 * compatible endpoint, vLLM, llama.cpp's server, Ollama). One request per (metric, answer) with
 * temperature 0, max_tokens 1, logprobs and top_logprobs 20; the score rule of ../score.ts on the
 * returned top tokens, or on the sampled token when the server gives no logprobs.
 *
 * Reliability: answers are cached on disk by (model, prompt, request parameters); 429, 408, 5xx,
 * timeouts and network errors are retried with exponential backoff and jitter, honouring
 * Retry-After; at most `concurrency` requests are in flight; check() makes one small call first
 * so that a bad key, an unknown model or an unreachable server is one line before any long work.
 */
import { join } from 'node:path';
import { emlensCacheDir } from '../../cache.js';
import { EmlensError } from '../../errors.js';
import { JudgeCache, sha256 } from '../cache.js';
import { approxTokens, type Estimate, type Judge, type JudgeRequest } from '../judge.js';
import { scoreFromLogprobs, scoreFromText, type Score, type TopLogprob } from '../score.js';

export const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
export const TOP_LOGPROBS = 20;

export interface OpenAIJudgeOptions {
  model: string;
  /** Default OPENAI_BASE_URL, else https://api.openai.com/v1. */
  baseUrl?: string;
  /** Default OPENAI_API_KEY; no Authorization header when neither is set (local servers). */
  apiKey?: string;
  /** Cache folder (default <emlens cache>/judge/openai); null: no cache. */
  cacheDir?: string | null;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Retries after the first attempt of one request (default 8). */
  maxRetries?: number;
  /** First backoff step (default 1000 ms); doubles per retry up to maxDelayMs (default 60 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest Retry-After honoured (default 300 s); a longer one is waited for this long. */
  maxRetryAfterMs?: number;
  /** One request's time limit (default 120 s); a timed-out request is retried. */
  timeoutMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
}

/** What the cache keeps per call: the server's answer, so the score rule is reapplied on read. */
interface CachedCall {
  model: string;
  prompt: string;
  top_logprobs?: TopLogprob[];
  content?: string;
}

const isCachedCall = (v: unknown): v is CachedCall => {
  const c = v as CachedCall;
  return (
    typeof c?.model === 'string' &&
    typeof c.prompt === 'string' &&
    (c.top_logprobs === undefined || (Array.isArray(c.top_logprobs) && c.top_logprobs.every((t) => typeof t?.token === 'string' && typeof t.logprob === 'number'))) &&
    (c.content === undefined || typeof c.content === 'string') &&
    (c.top_logprobs !== undefined || c.content !== undefined)
  );
};

/** A failure worth another attempt; `waitMs` is the server's Retry-After when it gave one. */
class Transient extends Error {
  constructor(
    message: string,
    readonly waitMs?: number,
  ) {
    super(message);
  }
}

const oneLine = (s: string, max = 300): string => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
};

/** The server's own message from an error body (OpenAI `error.message`, vLLM `message`, FastAPI `detail`), else the text. */
function serverMessage(body: string): string {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
    const e = j.error;
    if (typeof e === 'string') return oneLine(e);
    if (e && typeof (e as { message?: unknown }).message === 'string') return oneLine((e as { message: string }).message);
    if (typeof j.message === 'string') return oneLine(j.message);
    if (typeof j.detail === 'string') return oneLine(j.detail);
  } catch {
    // not JSON: the text itself
  }
  return oneLine(body) || '(empty body)';
}

/** Retry-After as milliseconds: retry-after-ms, else Retry-After in seconds or as an HTTP date. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Number(ms);
  const ra = headers.get('retry-after');
  if (ra === null) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(ra)) return Number(ra) * 1000;
  const t = Date.parse(ra);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

function netReason(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return 'timed out';
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class OpenAIJudge implements Judge {
  readonly id: string;
  readonly model: string;
  readonly baseUrl: string;
  /** Whether the server returned logprobs in check(); undefined before check(). */
  logprobs: boolean | undefined;
  /** HTTP requests sent (attempts, retries included). */
  requestsSent = 0;

  private readonly apiKey: string | undefined;
  private readonly cache: JudgeCache<CachedCall> | null;
  private readonly inFlight = new Map<string, Promise<CachedCall>>();
  private readonly o: Required<Omit<OpenAIJudgeOptions, 'baseUrl' | 'apiKey' | 'cacheDir'>>;

  constructor(opts: OpenAIJudgeOptions) {
    if (!opts.model || /\s/.test(opts.model)) throw new EmlensError(`--judge openai:MODEL: "${opts.model}" is not a model name`);
    this.model = opts.model;
    this.id = `openai:${opts.model}`;
    const base = opts.baseUrl ?? process.env.OPENAI_BASE_URL ?? DEFAULT_BASE_URL;
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new EmlensError(`${this.id}: OPENAI_BASE_URL "${base}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EmlensError(`${this.id}: OPENAI_BASE_URL "${base}" is not http(s)`);
    this.baseUrl = base.replace(/\/+$/, '');
    const key = opts.apiKey ?? process.env.OPENAI_API_KEY;
    this.apiKey = key === undefined || key === '' ? undefined : key;
    if (this.apiKey === undefined && url.hostname === 'api.openai.com') {
      throw new EmlensError(`${this.id}: OPENAI_API_KEY is not set (needed for ${this.baseUrl})`);
    }
    const dir = opts.cacheDir === undefined ? join(emlensCacheDir(), 'judge', 'openai') : opts.cacheDir;
    this.cache = dir === null ? null : new JudgeCache<CachedCall>(dir);
    this.o = {
      model: opts.model,
      concurrency: opts.concurrency ?? 8,
      maxRetries: opts.maxRetries ?? 8,
      baseDelayMs: opts.baseDelayMs ?? 1000,
      maxDelayMs: opts.maxDelayMs ?? 60_000,
      maxRetryAfterMs: opts.maxRetryAfterMs ?? 300_000,
      timeoutMs: opts.timeoutMs ?? 120_000,
      random: opts.random ?? Math.random,
    };
    if (!Number.isInteger(this.o.concurrency) || this.o.concurrency < 1) throw new EmlensError(`${this.id}: concurrency must be a positive integer`);
    if (!Number.isInteger(this.o.maxRetries) || this.o.maxRetries < 0) throw new EmlensError(`${this.id}: maxRetries must be an integer >= 0`);
  }

  /** The request body for one prompt: everything that defines the answer (and so the cache key). */
  private body(prompt: string): Record<string, unknown> {
    return {
      model: this.model,
      messages: [{ role: 'user', content: prompt }],
      temperature: 0,
      max_tokens: 1,
      logprobs: true,
      top_logprobs: TOP_LOGPROBS,
    };
  }

  /** Cache key: sha256 of the request body (judge model, full prompt, sampling parameters). */
  key(prompt: string): string {
    return sha256(JSON.stringify(this.body(prompt)));
  }

  /** One attempt. Final failures are EmlensErrors; retryable ones are Transient. */
  private async attempt(prompt: string): Promise<CachedCall> {
    const url = `${this.baseUrl}/chat/completions`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    this.requestsSent++;
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(this.body(prompt)), signal: AbortSignal.timeout(this.o.timeoutMs) });
      text = await res.text();
    } catch (e) {
      throw new Transient(`cannot reach ${this.baseUrl} (${netReason(e)})`);
    }
    if (!res.ok) {
      const msg = `HTTP ${res.status} from ${url}: ${serverMessage(text)}`;
      if (res.status === 429 || res.status === 408 || res.status === 409 || res.status >= 500) {
        throw new Transient(msg, retryAfterMs(res.headers));
      }
      const hint = res.status === 401 || res.status === 403 ? ' (check OPENAI_API_KEY)' : res.status === 404 ? ' (check the model name and OPENAI_BASE_URL)' : '';
      throw new EmlensError(`${this.id}: ${msg}${hint}`);
    }
    return this.parse(text, prompt, url);
  }

  private parse(text: string, prompt: string, url: string): CachedCall {
    let j: { choices?: { message?: { content?: unknown }; logprobs?: { content?: { top_logprobs?: unknown }[] | null } | null }[] };
    try {
      j = JSON.parse(text);
    } catch {
      throw new EmlensError(`${this.id}: ${url} answered with something that is not JSON: ${oneLine(text, 120)}`);
    }
    const choice = j?.choices?.[0];
    if (!choice) throw new EmlensError(`${this.id}: ${url} answered without choices: ${oneLine(text, 120)}`);
    const call: CachedCall = { model: this.model, prompt };
    const first = choice.logprobs?.content?.[0]?.top_logprobs;
    if (Array.isArray(first) && first.length > 0) {
      call.top_logprobs = first.map((t, i) => {
        const tok = t as { token?: unknown; logprob?: unknown };
        if (typeof tok?.token !== 'string' || typeof tok.logprob !== 'number') {
          throw new EmlensError(`${this.id}: ${url} answered with a malformed top_logprobs[${i}]: ${oneLine(JSON.stringify(t), 120)}`);
        }
        return { token: tok.token, logprob: tok.logprob };
      });
    }
    const content = choice.message?.content;
    if (typeof content === 'string') call.content = content;
    if (call.top_logprobs === undefined && call.content === undefined) {
      throw new EmlensError(`${this.id}: ${url} answered with neither logprobs nor message content: ${oneLine(text, 120)}`);
    }
    return call;
  }

  /** attempt() with retries: backoff base·2^i (half fixed, half jitter) capped at maxDelayMs, or the server's Retry-After. */
  private async call(prompt: string, maxRetries = this.o.maxRetries): Promise<CachedCall> {
    for (let i = 0; ; i++) {
      try {
        return await this.attempt(prompt);
      } catch (e) {
        if (!(e instanceof Transient)) throw e;
        if (i >= maxRetries) throw new EmlensError(`${this.id}: gave up after ${i + 1} attempts: ${e.message}`);
        const step = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** i);
        const wait = e.waitMs !== undefined ? Math.min(e.waitMs, this.o.maxRetryAfterMs) : step / 2 + (step / 2) * this.o.random();
        await sleep(wait);
      }
    }
  }

  /** Cached call, one in flight per key. */
  private cached(prompt: string): Promise<CachedCall> {
    const key = this.key(prompt);
    const hit = this.cache?.get(key, isCachedCall);
    if (hit && hit.model === this.model && hit.prompt === prompt) return Promise.resolve(hit);
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.call(prompt)
        .then((c) => {
          this.cache?.put(key, c);
          return c;
        })
        .finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  async check(): Promise<void> {
    const c = await this.call('Reply with the number 50 and nothing else.', Math.min(2, this.o.maxRetries));
    this.logprobs = c.top_logprobs !== undefined;
  }

  async score(requests: readonly JudgeRequest[], onProgress?: (done: number, total: number) => void): Promise<Score[]> {
    const prompts = [...new Set(requests.map((r) => r.prompt))];
    const calls = new Map<string, CachedCall>();
    let next = 0;
    let done = 0;
    let failed: unknown;
    const counts = new Map<string, number>();
    for (const r of requests) counts.set(r.prompt, (counts.get(r.prompt) ?? 0) + 1);
    const worker = async (): Promise<void> => {
      while (failed === undefined && next < prompts.length) {
        const p = prompts[next++]!;
        try {
          calls.set(p, await this.cached(p));
        } catch (e) {
          failed ??= e;
          return;
        }
        done += counts.get(p)!;
        onProgress?.(done, requests.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency, prompts.length) }, worker));
    if (failed !== undefined) throw failed;
    return requests.map((r) => {
      const c = calls.get(r.prompt)!;
      return c.top_logprobs !== undefined ? scoreFromLogprobs(c.top_logprobs) : scoreFromText(c.content!);
    });
  }

  estimate(requests: readonly JudgeRequest[]): Estimate {
    const prompts = [...new Set(requests.map((r) => r.prompt))];
    let calls = 0;
    let promptTokens = 0;
    for (const p of prompts) {
      const hit = this.cache?.get(this.key(p), isCachedCall);
      if (hit && hit.prompt === p) continue;
      calls++;
      promptTokens += approxTokens(p);
    }
    return { requests: requests.length, cached: requests.length - calls, calls, promptTokens, completionTokens: calls };
  }
}
