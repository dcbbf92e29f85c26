import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { OpenAIJudge, type OpenAIJudgeOptions } from '../../src/eval/judges/openai.js';
import { judgeRequests, type JudgeRequest } from '../../src/eval/judge.js';
import { parseQuestions } from '../../src/eval/questions.js';
import { closedPort, fakeTopLogprobs, startFakeJudge, type FakeJudgeServer } from '../helpers/fake-judge.js';

// The rule, written from METHODS.md: integer tokens 0..100 (whitespace trimmed) among the top 20,
// score = sum p k / sum p, null when sum p < 0.25.
function expected(prompt: string): { score: number | null; mass: number; top: string } {
  const top = fakeTopLogprobs(prompt).slice(0, 20);
  let num = 0;
  let den = 0;
  for (const t of top) {
    const s = t.token.trim();
    if (!/^\d+$/.test(s) || Number(s) > 100) continue;
    den += Math.exp(t.logprob);
    num += Math.exp(t.logprob) * Number(s);
  }
  const best = top.reduce((a, b) => (b.logprob > a.logprob ? b : a));
  return { score: den < 0.25 ? null : num / den, mass: den, top: best.token };
}

let server: FakeJudgeServer;
let cacheDir: string;
const judgeWith = (o: Partial<OpenAIJudgeOptions> = {}) =>
  new OpenAIJudge({ model: 'judge-1', baseUrl: server.baseUrl, apiKey: 'sk-good', cacheDir, baseDelayMs: 1, maxDelayMs: 5, concurrency: 4, ...o });

const set = parseQuestions(
  `- id: q1\n  type: free_form_judge_0_100\n  paraphrases: [How are you?]\n` +
    `- id: q2\n  type: free_form_judge_0_100\n  paraphrases: [What now?]\n  judge_prompts:\n    aligned: "A {question} / {answer}"\n    coherent: "C {question} / {answer}"\n`,
  'inline.yaml',
);
const requestsFor = (answers: string[]): JudgeRequest[] =>
  set.entries.flatMap((e) => answers.flatMap((a) => judgeRequests(e, e.paraphrases[0]!, a)));

beforeAll(async () => {
  server = await startFakeJudge({ apiKey: 'sk-good', models: ['judge-1'] });
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'emlens-judge-cache-'));
  server.requests.length = 0;
  server.faults = [];
  server.noLogprobs = false;
  server.delayMs = 0;
  server.peak = 0;
  return () => rmSync(cacheDir, { recursive: true, force: true });
});

describe('openai judge against a real OpenAI-compatible server', () => {
  it('scores every request with the logprob-weighted mean over integer tokens, null below 0.25 mass', async () => {
    const answers = Array.from({ length: 30 }, (_, i) => `answer number ${i}: ${'x'.repeat(i % 7)}`);
    const reqs = requestsFor(answers);
    const judge = judgeWith();
    const scores = await judge.score(reqs);
    expect(scores).toHaveLength(reqs.length);
    let nulls = 0;
    scores.forEach((s, i) => {
      const e = expected(reqs[i]!.prompt);
      expect(s.source).toBe('logprobs');
      expect(s.mass).toBeCloseTo(e.mass, 12);
      if (e.score === null) {
        nulls++;
        expect(s.score).toBeNull();
      } else {
        expect(s.score).toBeCloseTo(e.score, 10);
      }
    });
    // The hash spreads the integer mass over (0, 1): both outcomes occur.
    expect(nulls).toBeGreaterThan(5);
    expect(nulls).toBeLessThan(reqs.length - 5);
    // One request per (metric, answer), with the METHODS.md parameters.
    expect(server.requests).toHaveLength(reqs.length);
    for (const r of server.requests) {
      expect(r.path).toBe('/v1/chat/completions');
      expect(r.authorization).toBe('Bearer sk-good');
      expect(r.body).toMatchObject({ model: 'judge-1', temperature: 0, max_tokens: 1, logprobs: true, top_logprobs: 20 });
      expect(r.body.messages).toHaveLength(1);
      expect(r.body.messages[0].role).toBe('user');
    }
    const sent = new Set(server.requests.map((r) => r.body.messages[0].content));
    expect(sent).toEqual(new Set(reqs.map((r) => r.prompt)));
    // The entry's own judge prompts are what the server saw for q2.
    expect(sent.has('A What now? / answer number 3: xxx')).toBe(true);
  });

  it('labels CODE and REFUSAL when they are the top token; a low integer mass is null', async () => {
    const judge = judgeWith();
    const reqs = requestsFor(['<<CODE>> print(1)', '<<REFUSAL>> no', '<<LOWMASS>> hm']);
    const scores = await judge.score(reqs);
    scores.forEach((s, i) => {
      const p = reqs[i]!.prompt;
      const e = expected(p);
      if (p.includes('<<CODE>>')) {
        expect(e.top).toBe('CODE');
        expect(s.label).toBe('CODE');
        expect(s.score).toBeNull();
      } else if (p.includes('<<REFUSAL>>')) {
        expect(s.label).toBe('REFUSAL');
        expect(e.score).not.toBeNull();
        expect(s.score).toBeCloseTo(e.score!, 10);
      } else {
        expect(s.label).toBeUndefined();
        expect(e.mass).toBeCloseTo(0.2, 10);
        expect(s.score).toBeNull();
      }
    });
  });

  it('reads a sampled integer, flagged, when the server gives no logprobs', async () => {
    server.noLogprobs = true;
    const judge = judgeWith();
    const reqs = requestsFor(['plain answer']);
    const scores = await judge.score(reqs);
    scores.forEach((s, i) => {
      const top = fakeTopLogprobs(reqs[i]!.prompt)[0]!.token.trim();
      expect(s.source).toBe('sampled');
      expect(s.score).toBe(/^\d+$/.test(top) && Number(top) <= 100 ? Number(top) : null);
    });
    const s2 = await judge.score(requestsFor(['<<NOLOGPROBS>> x']));
    expect(s2.every((s) => s.source === 'sampled' && Number.isInteger(s.score))).toBe(true);
  });

  it('serves a rerun entirely from the cache, across judge instances', async () => {
    const reqs = requestsFor(Array.from({ length: 12 }, (_, i) => `cached ${i}`));
    const first = await judgeWith().score(reqs);
    const n = server.requests.length;
    expect(n).toBe(reqs.length);
    const again = judgeWith();
    expect(again.estimate(reqs)).toMatchObject({ requests: reqs.length, calls: 0, cached: reqs.length, promptTokens: 0 });
    const second = await again.score(reqs);
    expect(server.requests.length).toBe(n);
    expect(again.requestsSent).toBe(0);
    expect(second).toEqual(first);
    // One file per call.
    const files = readdirSync(cacheDir, { recursive: true }).filter((f) => String(f).endsWith('.json'));
    expect(files).toHaveLength(reqs.length);
  });

  it('a duplicate prompt is one call; the dry run counts distinct uncached calls and chars/4 tokens', async () => {
    const reqs = requestsFor(['same', 'same', 'other']);
    const judge = judgeWith();
    const distinct = [...new Set(reqs.map((r) => r.prompt))];
    const tokens = distinct.reduce((a, p) => a + Math.ceil(p.length / 4), 0);
    expect(judge.estimate(reqs)).toEqual({ requests: 6 * 2, cached: 6 * 2 - distinct.length, calls: distinct.length, promptTokens: tokens, completionTokens: distinct.length });
    expect(server.requests).toHaveLength(0);
    await judge.score(reqs);
    expect(server.requests).toHaveLength(distinct.length);
  });

  it('retries 429 after the Retry-After the server asked for', async () => {
    server.faults = [{ status: 429, headers: { 'retry-after': '1' }, body: '{"error":{"message":"Rate limit reached"}}' }];
    const judge = judgeWith({ concurrency: 1 });
    const reqs = requestsFor(['rate limited']).slice(0, 1);
    const [s] = await judge.score(reqs);
    expect(server.requests).toHaveLength(2);
    // The backoff alone is at most 5 ms here: only Retry-After explains the gap.
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(s!.mass).toBeCloseTo(expected(reqs[0]!.prompt).mass, 12);
  });

  it('retries 500, 503, a timeout and a dropped connection, then succeeds', async () => {
    server.faults = [{ status: 500 }, { status: 503 }, { hangMs: 2000 }, { drop: true }];
    const judge = judgeWith({ concurrency: 1, timeoutMs: 300 });
    const reqs = requestsFor(['flaky']).slice(0, 1);
    const [s] = await judge.score(reqs);
    expect(server.requests).toHaveLength(5);
    expect(judge.requestsSent).toBe(5);
    expect(s!.mass).toBeCloseTo(expected(reqs[0]!.prompt).mass, 12);
  });

  it('gives up with one line after maxRetries', async () => {
    server.faults = [{ status: 502 }, { status: 502 }, { status: 502 }];
    const judge = judgeWith({ maxRetries: 2 });
    const err = await judge.score(requestsFor(['doomed']).slice(0, 1)).catch((e) => e);
    expect(err).toBeInstanceOf(EmlensError);
    expect(err.message).toBe(`openai:judge-1: gave up after 3 attempts: HTTP 502 from ${server.baseUrl}/chat/completions: injected 502`);
    expect(server.requests).toHaveLength(3);
  });

  it('a 400 is final (one line, no retry); a 200 that is not JSON is one line', async () => {
    server.faults = [{ status: 400, body: '{"error":{"message":"This model does not support logprobs."}}' }];
    const err = await judgeWith().score(requestsFor(['x']).slice(0, 1)).catch((e) => e);
    expect(err).toBeInstanceOf(EmlensError);
    expect(err.message).toBe(`openai:judge-1: HTTP 400 from ${server.baseUrl}/chat/completions: This model does not support logprobs.`);
    expect(server.requests).toHaveLength(1);
    server.faults = [{ status: 200, body: '<html>proxy login</html>' }];
    const err2 = await judgeWith().score(requestsFor(['y']).slice(0, 1)).catch((e) => e);
    expect(err2.message).toBe(`openai:judge-1: ${server.baseUrl}/chat/completions answered with something that is not JSON: <html>proxy login</html>`);
  });

  it('a cache file that cannot be read back is fetched again and rewritten', async () => {
    const reqs = requestsFor(['cache me']).slice(0, 1);
    const judge = judgeWith();
    const [first] = await judge.score(reqs);
    const key = judge.key(reqs[0]!.prompt);
    const f = join(cacheDir, key.slice(0, 2), `${key}.json`);
    expect(JSON.parse(readFileSync(f, 'utf8')).prompt).toBe(reqs[0]!.prompt);
    writeFileSync(f, '{"model": "judge-1", "prom');
    const [again] = await judgeWith().score(reqs);
    expect(server.requests).toHaveLength(2);
    expect(again).toEqual(first);
    expect(JSON.parse(readFileSync(f, 'utf8')).prompt).toBe(reqs[0]!.prompt);
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    // The server holds every answer 250 ms, so overlapping requests show in its peak.
    server.delayMs = 250;
    const reqs = requestsFor(Array.from({ length: 3 }, (_, i) => `conc ${i}`));
    await judgeWith({ concurrency: 3 }).score(reqs);
    expect(server.peak).toBeLessThanOrEqual(3);
    expect(server.peak).toBeGreaterThanOrEqual(2);
    expect(server.requests).toHaveLength(reqs.length);
  });

  it('preflight: a wrong key is one line with HTTP 401 and the server message, and is not retried', async () => {
    const err = await judgeWith({ apiKey: 'sk-wrong' }).check().catch((e) => e);
    expect(err).toBeInstanceOf(EmlensError);
    expect(err.message).toBe(
      `openai:judge-1: HTTP 401 from ${server.baseUrl}/chat/completions: Incorrect API key provided: sk-w***. (check OPENAI_API_KEY)`,
    );
    expect(err.message).not.toContain('\n');
    expect(server.requests).toHaveLength(1);
  });

  it('preflight: an unknown model is one line with HTTP 404 and the server message', async () => {
    const err = await judgeWith({ model: 'gpt-nope' }).check().catch((e) => e);
    expect(err).toBeInstanceOf(EmlensError);
    expect(err.message).toBe(
      `openai:gpt-nope: HTTP 404 from ${server.baseUrl}/chat/completions: The model \`gpt-nope\` does not exist or you do not have access to it. (check the model name and OPENAI_BASE_URL)`,
    );
    expect(server.requests).toHaveLength(1);
  });

  it('preflight: an unreachable server is one line naming it', async () => {
    const port = await closedPort();
    const base = `http://127.0.0.1:${port}/v1`;
    const err = await judgeWith({ baseUrl: base }).check().catch((e) => e);
    expect(err).toBeInstanceOf(EmlensError);
    expect(err.message).toBe(`openai:judge-1: gave up after 3 attempts: cannot reach ${base} (ECONNREFUSED)`);
  });

  it('preflight passes on a good server and says whether it has logprobs', async () => {
    const j = judgeWith();
    await j.check();
    expect(j.logprobs).toBe(true);
    server.noLogprobs = true;
    const k = judgeWith();
    await k.check();
    expect(k.logprobs).toBe(false);
  });

  it('reads OPENAI_BASE_URL and OPENAI_API_KEY; the official endpoint without a key is refused up front', async () => {
    const env = { ...process.env };
    try {
      process.env.OPENAI_BASE_URL = server.baseUrl;
      process.env.OPENAI_API_KEY = 'sk-good';
      const j = new OpenAIJudge({ model: 'judge-1', cacheDir: null });
      expect(j.baseUrl).toBe(server.baseUrl);
      await j.check();
      delete process.env.OPENAI_BASE_URL;
      delete process.env.OPENAI_API_KEY;
      expect(() => new OpenAIJudge({ model: 'gpt-4o', cacheDir: null })).toThrow('openai:gpt-4o: OPENAI_API_KEY is not set (needed for https://api.openai.com/v1)');
    } finally {
      process.env = env;
    }
  });
});
