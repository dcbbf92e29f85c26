/**
 * A real OpenAI-compatible Chat Completions server on 127.0.0.1 for judge tests. Its top_logprobs
 * are a known function of the prompt (fakeTopLogprobs), so a test can compute the score a judge
 * must report. It checks the API key and the model like OpenAI does, records every request, and
 * plays queued faults (status codes with headers, hangs, dropped connections) before answering.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeToken {
  token: string;
  logprob: number;
}

/** Spellings the server mixes in: integers in several forms, and things that are not integers 0..100. */
const INTEGER_FORMS = (k: number): string[] => [String(k), ` ${k}`, `${k} `, `\n${k}`, k < 10 ? `0${k}` : ` ${k} `];
const OTHERS = ['150', '101', '-5', '3.5', 'abc', 'Sure', ' The', '\n', '1e2', '½', 'fifty', 'I', '**', '-', '#', ' ', 'x7', '7x', '1/2', '00x'];

/** Bytes of sha256(text + salt): the server's deterministic randomness. */
function bytes(text: string, salt: string): Buffer {
  return createHash('sha256').update(`${salt}\u0000${text}`).digest();
}

/**
 * The server's 20 top tokens for a prompt. Markers in the prompt force cases:
 * "<<CODE>>": CODE is the top token (p 0.7) and the integer tokens hold 0.1; "<<REFUSAL>>":
 * REFUSAL is the top token (p 0.7) and the integers hold 0.26 (a score and a label);
 * "<<LOWMASS>>": the integer tokens hold 0.2. "<<NOLOGPROBS>>": the answer carries no logprobs. Otherwise the total probability of the 20 tokens (0.5..1), the
 * share of it on integer tokens (0..1), how many integer tokens (1..12), which integers and
 * their spellings and weights all come from sha256 of the prompt.
 */
export function fakeTopLogprobs(prompt: string): FakeToken[] {
  const b = bytes(prompt, 'top');
  const b2 = bytes(prompt, 'more');
  const all = Buffer.concat([b, b2]);
  const label = prompt.includes('<<CODE>>') ? 'CODE' : prompt.includes('<<REFUSAL>>') ? 'REFUSAL' : null;
  const total = label ? 0.28 : 0.5 + 0.5 * (b[0]! / 255);
  const intShare = prompt.includes('<<LOWMASS>>') ? 0.2 / total : label === 'CODE' ? 0.1 / total : label === 'REFUSAL' ? 0.26 / total : (1 + b[1]!) / 257;
  const nInt = 1 + (b[2]! % 12);
  const nOther = 20 - nInt - (label ? 1 : 0);
  const weights = (n: number, off: number) => {
    const w = Array.from({ length: n }, (_, i) => 1 + all[(off + i) % all.length]!);
    const s = w.reduce((x, y) => x + y, 0);
    return w.map((x) => x / s);
  };
  const out: FakeToken[] = [];
  if (label) out.push({ token: label, logprob: Math.log(0.7) });
  const seenTokens = new Set<string>(label ? [label] : []);
  weights(nInt, 3).forEach((w, i) => {
    let k = all[(20 + i) % all.length]! % 101;
    let form = INTEGER_FORMS(k)[all[(40 + i) % all.length]! % 5]!;
    while (seenTokens.has(form)) {
      k = (k + 1) % 101;
      form = INTEGER_FORMS(k)[0]!;
    }
    seenTokens.add(form);
    out.push({ token: form, logprob: Math.log(w * total * intShare) });
  });
  weights(nOther, 17).forEach((w, i) => {
    out.push({ token: OTHERS[i]!, logprob: Math.log(w * total * (1 - intShare)) });
  });
  // The API lists tokens most probable first.
  return out.sort((x, y) => y.logprob - x.logprob);
}

export type Fault =
  | { status: number; headers?: Record<string, string>; body?: string }
  | { hangMs: number }
  | { drop: true };

export interface RecordedRequest {
  at: number;
  path: string;
  authorization: string | undefined;
  body: any;
}

export interface FakeJudgeServer {
  /** Base URL to use as OPENAI_BASE_URL (ends in /v1). */
  baseUrl: string;
  requests: RecordedRequest[];
  /** Faults played, one per request, before normal answers resume. */
  faults: Fault[];
  /** Answer the chat completions without logprobs (a server that has none). */
  noLogprobs: boolean;
  /** Hold every normal answer this long (default 0), so overlapping requests show in `peak`. */
  delayMs: number;
  /** Most requests the server had open at once. */
  peak: number;
  close(): Promise<void>;
}

export interface FakeJudgeOptions {
  apiKey?: string;
  models?: string[];
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

export async function startFakeJudge(opts: FakeJudgeOptions = {}): Promise<FakeJudgeServer> {
  const apiKey = opts.apiKey ?? 'sk-good';
  const models = new Set(opts.models ?? ['judge-1']);
  const state = { requests: [] as RecordedRequest[], faults: [] as Fault[], noLogprobs: false, delayMs: 0, peak: 0, open: 0 };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      // recorded as null; answered 400 below
    }
    state.requests.push({ at: Date.now(), path: req.url ?? '', authorization: req.headers.authorization, body });
    const fault = state.faults.shift();
    if (fault) {
      if ('drop' in fault) return void req.socket.destroy();
      if ('hangMs' in fault) return void setTimeout(() => send(res, 200, { error: 'too late' }), fault.hangMs).unref();
      return send(res, fault.status, fault.body ?? { error: { message: `injected ${fault.status}`, type: 'server_error' } }, fault.headers);
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return send(res, 404, { error: { message: `no route ${req.method} ${req.url}` } });
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      const given = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      return send(res, 401, { error: { message: `Incorrect API key provided: ${given.slice(0, 4)}***.`, type: 'invalid_request_error', code: 'invalid_api_key' } });
    }
    if (body === null || !Array.isArray(body.messages)) return send(res, 400, { error: { message: 'body must be JSON with messages' } });
    if (!models.has(body.model)) {
      return send(res, 404, { error: { message: `The model \`${body.model}\` does not exist or you do not have access to it.`, code: 'model_not_found' } });
    }
    const prompt = String(body.messages.at(-1)?.content ?? '');
    const top = fakeTopLogprobs(prompt);
    const sampled = prompt.includes('<<NOLOGPROBS>>') ? String(bytes(prompt, 'sample')[0]! % 101) : top[0]!.token;
    const choice: any = { index: 0, message: { role: 'assistant', content: sampled }, finish_reason: 'length' };
    if (state.noLogprobs || prompt.includes('<<NOLOGPROBS>>')) choice.logprobs = null;
    else choice.logprobs = { content: [{ token: top[0]!.token, logprob: top[0]!.logprob, bytes: null, top_logprobs: top.slice(0, body.top_logprobs ?? 0).map((t) => ({ ...t, bytes: null })) }] };
    const answer = { id: 'chatcmpl-fake', object: 'chat.completion', created: 0, model: body.model, choices: [choice], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
    if (state.delayMs > 0) setTimeout(() => send(res, 200, answer), state.delayMs);
    else send(res, 200, answer);
  };

  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (raw += c));
    state.open++;
    state.peak = Math.max(state.peak, state.open);
    // Counted out when the answer is handed to the socket (before the client can see it) or dropped.
    let counted = true;
    const out = () => {
      if (counted) state.open--;
      counted = false;
    };
    res.on('finish', out);
    res.on('close', out);
    req.on('end', () => handle(req, res, raw));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    get requests() {
      return state.requests;
    },
    get faults() {
      return state.faults;
    },
    set faults(f: Fault[]) {
      state.faults = f;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(v: number) {
      state.delayMs = v;
    },
    get peak() {
      return state.peak;
    },
    set peak(v: number) {
      state.peak = v;
    },
    get noLogprobs() {
      return state.noLogprobs;
    },
    set noLogprobs(v: boolean) {
      state.noLogprobs = v;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (bound once, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
