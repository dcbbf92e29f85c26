/**
 * `emlens serve`: one model behind OpenAI-compatible and KServe v2 routes, a bounded queue in
 * front of its engine. Security defaults: a bearer token on every route but health, unless the
 * server is bound to loopback and started with noAuth; CORS off unless asked.
 */
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import type { DirectionFile } from '../io/directions.js';
import { isLoopback, startHttp, type RunningServer } from './http.js';
import { backendRoutes } from './backend-api.js';
import { kserveRoutes } from './kserve.js';
import { openaiRoutes, type ServedModel } from './openai.js';
import { WorkQueue } from './queue.js';

export interface ServeOptions {
  name: string;
  host: string;
  port: number;
  token: string | null;
  noAuth: boolean;
  cors: string | null;
  maxBodyBytes: number;
  maxNewTokens: number;
  maxBatch: number;
  /** Requests that may wait behind the running one; more get 429. */
  queue: number;
  requestTimeoutS: number;
  directions: ReadonlyMap<string, DirectionFile>;
  log(line: string): void;
}

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  maxBodyBytes: 64 * 2 ** 20,
  maxNewTokens: 4096,
  maxBatch: 64,
  queue: 32,
  requestTimeoutS: 600,
} as const;

/** Checks the options that decide who may call the server, before a model is loaded. */
export function checkAccess(o: Pick<ServeOptions, 'host' | 'token' | 'noAuth'>): void {
  if (o.token !== null && o.noAuth) throw new EmlensError('--token and --no-auth both given; use one');
  if (o.token === null && !o.noAuth) throw new EmlensError('serve needs a token (--token or EMLENS_TOKEN); without one, bind to loopback and pass --no-auth');
  if (o.noAuth && !isLoopback(o.host)) throw new EmlensError(`--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), not --host ${o.host}`);
  if (o.token !== null && o.token.length < 16) throw new EmlensError('--token must be at least 16 characters');
}

export async function serveModel(model: LoadedModel, o: ServeOptions): Promise<RunningServer> {
  checkAccess(o);
  const served: ServedModel = {
    name: o.name,
    model,
    directions: o.directions,
    queue: new WorkQueue(o.queue),
    limits: { maxNewTokens: o.maxNewTokens, maxBatch: o.maxBatch },
    created: Math.floor(Date.now() / 1000),
  };
  const routes = [...kserveRoutes(served, () => true), ...openaiRoutes(served), ...backendRoutes(served)];
  return startHttp(routes, { host: o.host, port: o.port, token: o.token, cors: o.cors, maxBodyBytes: o.maxBodyBytes, requestTimeoutS: o.requestTimeoutS, log: o.log });
}
