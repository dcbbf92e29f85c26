/**
 * The HTTP layer of `emlens serve`: Node's own server, a route table, bearer-token auth compared in
 * constant time, body size limits, CORS only when asked, one log line per request, and errors as
 * JSON in the dialect of the route (OpenAI's `{"error": {"message", "type", "code"}}` under /v1,
 * KServe's `{"error": "..."}` under /v2). A handler's error answers that request; the server keeps
 * serving.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { QueueFullError } from './queue.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  /** Path parameters of the route (decoded). */
  params: string[];
  url: URL;
  /** Aborted when the client goes away or the request times out. */
  signal: AbortSignal;
  /** The body, refused with 413 past the server's limit. */
  body(): Promise<Buffer>;
  /** The body as JSON; 400 when it is not. */
  json(): Promise<unknown>;
  sendJson(status: number, value: unknown, headers?: Record<string, string>): void;
  /** Sets a field the request log line shows (e.g. tokens generated). */
  note(key: string, value: string | number): void;
}

export interface Route {
  method: 'GET' | 'POST';
  /** Matched against the whole path; capture groups become params. */
  path: RegExp;
  /** Health probes answer without a token. */
  open?: boolean;
  handle(ctx: Context): Promise<void>;
}

export interface HttpOptions {
  host: string;
  port: number;
  /** Bearer token every non-open route needs; null: none (only on loopback, checked by the caller). */
  token: string | null;
  /** Access-Control-Allow-Origin value; null: no CORS headers (browsers refuse cross-origin calls). */
  cors: string | null;
  maxBodyBytes: number;
  /** Seconds a request may take before it is aborted (504). */
  requestTimeoutS: number;
  log(line: string): void;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Constant-time token check: equal-length digests, so neither length nor prefix leaks. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  return timingSafeEqual(digest(given), digest(token));
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function errorBody(path: string, e: HttpError): unknown {
  if (path.startsWith('/v2')) return { error: e.message };
  return { error: { message: e.message, type: e.type, param: null, code: e.status } };
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startHttp(routes: Route[], o: HttpOptions): Promise<RunningServer> {
  const server = createServer((req, res) => void serveOne(req, res));

  async function serveOne(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const notes: string[] = [];
    const abort = new AbortController();
    // A client that goes away before the answer is complete aborts the work done for it.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new HttpError(499, 'the client closed the connection'));
    });
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://x');
    } catch {
      url = new URL('http://x/');
    }
    const path = url.pathname;
    const sendJson = (status: number, value: unknown, headers: Record<string, string> = {}) => {
      if (res.headersSent) return;
      const body = JSON.stringify(value);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...cors(), ...headers });
      res.end(body);
    };
    const cors = (): Record<string, string> =>
      o.cors === null ? {} : { 'access-control-allow-origin': o.cors, 'access-control-allow-headers': 'authorization, content-type, inference-header-content-length', 'access-control-allow-methods': 'GET, POST, OPTIONS' };
    // Past the timeout the request is answered 504 at once, even while an engine call that cannot
    // be interrupted (one forward) still runs for it: the abort stops its generation at the next
    // step, takes it out of the queue if it is still waiting, and its late result is never sent.
    const timer = setTimeout(() => {
      const err = new HttpError(504, `the request took longer than the server's --request-timeout of ${o.requestTimeoutS} s; its work was stopped`, 'timeout_error');
      abort.abort(err);
      if (!res.headersSent) sendJson(err.status, errorBody(path, err), err.headers);
    }, o.requestTimeoutS * 1000);
    // The handler may still try to write to the answered response; that is no crash.
    res.on('error', () => {});
    try {
      if (req.method === 'OPTIONS' && o.cors !== null) {
        res.writeHead(204, cors());
        res.end();
        return;
      }
      const matches = routes.map((r) => ({ r, m: r.path.exec(path) })).filter((x) => x.m !== null);
      if (matches.length === 0) throw new HttpError(404, `no route ${path}`, 'not_found_error');
      const hit = matches.find((x) => x.r.method === req.method);
      if (!hit) throw new HttpError(405, `${req.method} is not allowed on ${path}`, 'invalid_request_error', { allow: [...new Set(matches.map((x) => x.r.method))].join(', ') });
      if (!hit.r.open && o.token !== null) {
        const h = req.headers.authorization;
        const given = typeof h === 'string' && /^Bearer /i.test(h) ? h.slice(7).trim() : undefined;
        if (!tokenMatches(given, o.token)) throw new HttpError(401, given === undefined ? 'missing bearer token (Authorization: Bearer …)' : 'wrong bearer token', 'authentication_error', { 'www-authenticate': 'Bearer' });
      }
      let body: Promise<Buffer> | undefined;
      const ctx: Context = {
        req,
        res,
        params: hit.m!.slice(1).map((p) => decodeURIComponent(p ?? '')),
        url,
        signal: abort.signal,
        body: () => (body ??= readBody(req, o.maxBodyBytes)),
        json: async () => {
          const b = await ctx.body();
          try {
            return JSON.parse(b.toString('utf8'));
          } catch (e) {
            throw new HttpError(400, `the body is not valid JSON (${String((e as Error).message).split('\n')[0]})`);
          }
        },
        sendJson,
        note: (k, v) => notes.push(`${k}=${v}`),
      };
      await hit.r.handle(ctx);
    } catch (e) {
      const err =
        e instanceof HttpError
          ? e
          : e instanceof QueueFullError
            ? new HttpError(429, e.message, 'rate_limit_error', { 'retry-after': String(e.retryAfterS) })
            : abort.signal.aborted && abort.signal.reason instanceof HttpError
              ? abort.signal.reason
              : internal(e);
      if (!res.headersSent) sendJson(err.status, errorBody(path, err), err.headers);
      else if (!res.writableEnded) res.end();
      if (err.status >= 500 && !(e instanceof HttpError)) notes.push(`error=${JSON.stringify(String((e as Error)?.message ?? e))}`);
    } finally {
      clearTimeout(timer);
      const ms = (performance.now() - t0).toFixed(0);
      o.log(`${new Date().toISOString()} ${req.socket.remoteAddress ?? '-'} ${req.method} ${path} ${res.statusCode} ${ms}ms${notes.length ? ' ' + notes.join(' ') : ''}`);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    server,
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** User errors of the engine (EmlensError) are the client's 400; anything else is a 500. */
function internal(e: unknown): HttpError {
  if ((e as Error)?.name === 'EmlensError') return new HttpError(400, (e as Error).message);
  return new HttpError(500, 'internal error (see the server log)');
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    req.resume();
    return Promise.reject(new HttpError(413, `the body is ${declared} bytes; this server takes at most ${max} (--max-body)`));
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      n += c.length;
      if (n > max) {
        refused = true;
        reject(new HttpError(413, `the body is over ${max} bytes, the most this server takes (--max-body)`));
        return;
      }
      parts.push(c);
    });
    req.on('end', () => {
      if (!refused) resolve(Buffer.concat(parts));
    });
    req.on('error', (e) => reject(new HttpError(400, `reading the body failed: ${e.message}`)));
  });
}
