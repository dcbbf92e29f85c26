/**
 * Per-request timeouts of `emlens serve` (--request-timeout). Against a real server process on
 * 127.0.0.1: a generation that cannot end within the timeout (a model built so greedy decoding
 * never picks the stop token, asked for 500 000 tokens) is answered 504 with a JSON error, as a
 * stream's last event when it streams; a request queued behind it is answered 504 too; the server
 * then still serves, and its greedy answers equal the engine's. In-process, with the server's own
 * HTTP layer and queue: a request whose engine call cannot be interrupted is answered 504 at its
 * deadline, not when the call ends; a request timing out while queued leaves the queue (its job
 * never runs, its place is free) and the late result of the first is never sent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { writeSafetensors } from '../../src/io/safetensors/index.js';
import { writeWordLevelTokenizer } from '../../src/model/wordlevel.js';
import { startHttp, type RunningServer } from '../../src/serve/http.js';
import { WorkQueue } from '../../src/serve/queue.js';
import { BIN } from '../eval-commands/cli.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

const SPECIALS = ['<pad>', '<s>', '</s>', '<unk>'];
const EOS = 2;
let dir: string;
let proc: ChildProcess;
let url: string;
let log = '';
const envCache = process.env.EMLENS_CACHE;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-timeout-'));
  process.env.EMLENS_CACHE = join(dir, 'cache');
  const { weights } = writeTinyCheckpoint(dir, 'llama');
  // Greedy never stops: the stop token's logit is 0 (its head row is zero), and tokens 10 and 11
  // have opposite rows r and -r, so one of them scores r·x or -r·x >= 0 at every step.
  const head = weights.get('lm_head.weight')!;
  const D = head.shape[1]!;
  const data = head.data.slice();
  data.fill(0, EOS * D, (EOS + 1) * D);
  for (let i = 0; i < D; i++) data[11 * D + i] = -data[10 * D + i]!;
  writeSafetensors(join(dir, 'model.safetensors'), new Map([...weights].map(([k, t]) => [k, { shape: t.shape, dtype: 'F32' as const, data: k === 'lm_head.weight' ? data : t.data }])));
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.max_position_embeddings = 1_000_000;
  config.eos_token_id = EOS;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  // A word for every id, so every generated token has text.
  const words = Array.from({ length: config.vocab_size - SPECIALS.length }, (_, i) => `w${i}`);
  writeWordLevelTokenizer(dir, { specials: SPECIALS, words, bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<pad>' });
  url = await new Promise<string>((resolve, reject) => {
    proc = spawn(process.execPath, [BIN, 'serve', dir, '--port', '0', '--no-auth', '--name', 'tiny', '--request-timeout', '1', '--queue', '1', '--max-new-tokens-limit', '500000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stderr!.on('data', (c) => {
      log += c;
      const m = /serving "[^"]+" at (http:\/\/[^ ]+) /.exec(log);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${log}`)));
  });
}, 120_000);

afterAll(() => {
  proc?.kill('SIGKILL');
  if (envCache === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = envCache;
  rmSync(dir, { recursive: true, force: true });
});

const json = { 'content-type': 'application/json' };
const complete = (body: object) => fetch(`${url}/v1/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'tiny', prompt: 'w1 w2 w3', temperature: 0, ...body }) });
const TIMEOUT_MESSAGE = /^the request took longer than the server's --request-timeout of 1 s; its work was stopped$/;

describe('emlens serve --request-timeout (a real server process)', () => {
  it('a generation past the timeout is answered 504 with a JSON error; one queued behind it too', async () => {
    const [a, b] = await Promise.all([complete({ max_tokens: 500_000 }), complete({ max_tokens: 500_000 })]);
    for (const r of [a, b]) {
      expect(r.status).toBe(504);
      expect(r.headers.get('content-type')).toBe('application/json');
      const j = await r.json();
      expect(j.error.message).toMatch(TIMEOUT_MESSAGE);
      expect(j.error.type).toBe('timeout_error');
      expect(j.error.code).toBe(504);
    }
  }, 60_000);

  it('a stream past the timeout ends with an error event, not [DONE]', async () => {
    const r = await complete({ max_tokens: 500_000, stream: true });
    expect(r.status).toBe(200);
    const events = (await r.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    expect(events.length).toBeGreaterThan(1); // text chunks were sent before the deadline
    expect(events).not.toContain('[DONE]');
    const last = JSON.parse(events[events.length - 1]!);
    expect(last.error.code).toBe(504);
    expect(last.error.message).toMatch(TIMEOUT_MESSAGE);
  }, 60_000);

  it('the server still serves after timeouts, with the engine\'s greedy answer, and logs each request', async () => {
    expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);
    const r = await complete({ max_tokens: 12 });
    expect(r.status).toBe(200);
    const j = await r.json();
    const model = await LoadedModel.load(dir);
    const ids = model.tokenizer!.encode('w1 w2 w3');
    const g = await model.engine.generate([ids], { maxNewTokens: 12, temperature: 0, stopIds: [EOS] });
    expect(g.tokens[0]).toHaveLength(12); // never stopped, as built
    expect(j.choices[0].text).toBe(model.tokenizer!.decode(g.tokens[0]!, { skipSpecialTokens: true }));
    expect(j.choices[0].finish_reason).toBe('length');
    expect(proc.exitCode).toBeNull();
    // One log line per request: the two answered 504, the stream (200 when it started), this one.
    const lines = () => log.split('\n').filter((l) => / POST \/v1\/completions /.test(l));
    for (let i = 0; i < 100 && lines().length < 4; i++) await new Promise((r) => setTimeout(r, 50));
    expect(lines().map((l) => / POST \/v1\/completions (\d+) /.exec(l)![1])).toEqual(['504', '504', '200', '200']);
  }, 60_000);
});

describe('the HTTP layer and queue under a timeout (an engine call that cannot be interrupted)', () => {
  let server: RunningServer;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const queue = new WorkQueue(1);
  let started = 0;
  let finished = 0;
  const lines: string[] = [];

  beforeAll(async () => {
    server = await startHttp(
      [
        {
          method: 'POST',
          path: /^\/v1\/stuck$/,
          handle: async (ctx) => {
            await queue.run(async () => {
              started++;
              await gate; // one long forward: nothing inside it looks at the signal
              finished++;
            }, ctx.signal);
            ctx.sendJson(200, { late: true });
          },
        },
        { method: 'GET', path: /^\/v1\/ok$/, handle: async (ctx) => ctx.sendJson(200, { ok: true }) },
      ],
      { host: '127.0.0.1', port: 0, token: null, cors: null, maxBodyBytes: 1024, requestTimeoutS: 1, log: (l) => lines.push(l) },
    );
  });
  afterAll(async () => {
    release();
    await server?.close();
  });

  /** The response, or a failure naming what never came (instead of a hung test). */
  const within = <T>(p: Promise<T>, what: string) => Promise.race([p, new Promise<never>((_, j) => setTimeout(() => j(new Error(`${what}: no answer within 20 s`)), 20_000))]);

  it('answers 504 at the deadline while the call runs, drops timed-out waiters from the queue, never sends the late result', async () => {
    const a = fetch(`${server.url}/v1/stuck`, { method: 'POST' });
    while (started === 0) await new Promise((r) => setTimeout(r, 10));
    const b = fetch(`${server.url}/v1/stuck`, { method: 'POST' }); // waits behind a
    const ra = await within(a, 'the request holding the engine');
    expect(ra.status).toBe(504);
    expect((await ra.json()).error).toMatchObject({ type: 'timeout_error', code: 504 });
    expect(finished).toBe(0); // answered while its call still runs
    const rb = await within(b, 'the queued request');
    expect(rb.status).toBe(504);
    expect((await rb.json()).error.message).toMatch(TIMEOUT_MESSAGE);
    // b left the queue: its place takes a new request (no 429), and its job never ran.
    expect(queue.depth).toBe(1);
    const rc = await within(fetch(`${server.url}/v1/stuck`, { method: 'POST' }), 'a request after the timeouts');
    expect(rc.status).toBe(504);
    expect(started).toBe(1);
    release();
    while (queue.depth > 0) await new Promise((r) => setTimeout(r, 10));
    expect(finished).toBe(1);
    expect(started).toBe(1);
    const ok = await fetch(`${server.url}/v1/ok`);
    expect(ok.status).toBe(200);
    expect(lines.filter((l) => / POST \/v1\/stuck 504 /.test(l))).toHaveLength(3);
  }, 60_000);
});
