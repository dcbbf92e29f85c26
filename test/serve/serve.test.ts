/**
 * `emlens serve` as a real process on 127.0.0.1, called over HTTP: the OpenAI routes against the
 * engine run in this process (greedy and seeded tokens, steering), log-probs against a float64
 * log-softmax of a full forward written here, the `openai:` judge pointed at the server against the
 * `local:` judge of the same model, KServe v2 captures / pooling / token log-probs against sums
 * written here, and every refusal (401, 404, 405, 400, 413, 429) with the server still serving.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { judgeRequests } from '../../src/eval/judge.js';
import { LocalJudge } from '../../src/eval/judges/local.js';
import { OpenAIJudge } from '../../src/eval/judges/openai.js';
import { parseQuestions } from '../../src/eval/questions.js';
import { writeDirectionFile } from '../../src/io/directions.js';
import { writeSafetensors } from '../../src/io/safetensors/index.js';
import { writeWordLevelTokenizer } from '../../src/model/wordlevel.js';
import { BIN, cli, errorLines } from '../eval-commands/cli.js';
import { TEMPLATE } from '../helpers/datasets.js';
import { logSoftmax64 } from '../helpers/float64.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

const SPECIALS = ['<pad>', '<s>', '</s>', '<unk>', '<|user|>', '<|assistant|>'];
const WORDS = [...Array.from({ length: 60 }, (_, i) => String(i)), 'CODE', 'REFUSAL', 'rate', 'the', 'answer', 'question', 'reply', 'number', 'is', 'a', 'yes', 'no', 'ok', 'x'];
const TOKEN = 'test-token-0123456789abcdef';

let dir: string;
let model: LoadedModel;
let D: number;
let L: number;
let V: number;
let dirFile: string;
const dirVectors = new Map<number, Float32Array>();
const envCache = process.env.EMLENS_CACHE;

interface Server {
  proc: ChildProcess;
  url: string;
  log: () => string;
}
const servers: Server[] = [];

/** Starts `emlens serve` and waits for its "serving … at URL" line. */
function serve(args: string[], env: Record<string, string> = {}): Promise<Server> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, 'serve', dir, '--port', '0', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (c) => {
      err += c;
      const m = /serving "[^"]+" at (http:\/\/[^ ]+) /.exec(err);
      if (m) {
        const s = { proc, url: m[1]!, log: () => err };
        servers.push(s);
        resolve(s);
      }
    });
    proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

let srv: Server;
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const post = (path: string, body: unknown, headers: Record<string, string> = auth) =>
  fetch(srv.url + path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-serve-'));
  process.env.EMLENS_CACHE = join(dir, 'cache');
  const { weights } = writeTinyCheckpoint(dir, 'llama');
  // A sharper head than the random init, so a judge prompt puts real mass on integer tokens.
  const head = weights.get('lm_head.weight')!;
  writeSafetensors(join(dir, 'model.safetensors'), new Map([...weights].map(([k, t]) => [k, { shape: t.shape, dtype: 'F32' as const, data: k === 'lm_head.weight' ? head.data.map((v) => v * 6) : t.data }])));
  writeWordLevelTokenizer(dir, { specials: SPECIALS, words: WORDS, bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<pad>', chatTemplate: TEMPLATE });
  model = await LoadedModel.load(dir);
  ({ dModel: D, nLayers: L, vocab: V } = model.spec);
  let s = 7;
  for (let l = 0; l < L; l++) dirVectors.set(l, Float32Array.from({ length: D }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 4));
  dirFile = join(dir, 'em.safetensors');
  writeDirectionFile(dirFile, dirVectors, {});
  srv = await serve(['--token', TOKEN, '--direction', `em=${dirFile}`, '--name', 'tiny', '--max-batch', '8', '--max-new-tokens-limit', '240', '--max-body', '256KiB'], { EMLENS_CACHE: join(dir, 'cache') });
}, 120_000);

afterAll(() => {
  for (const s of servers) s.proc.kill('SIGKILL');
  if (envCache === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = envCache;
  rmSync(dir, { recursive: true, force: true });
});

const chatIds = (content: string) => model.tokenizer!.encodeChat([{ role: 'user', content }], { addGenerationPrompt: true }).ids;
const eos = () => model.tokenizer!.eosIds;
const decode = (ids: number[]) => model.tokenizer!.decode(ids.filter((t) => !eos().includes(t)), { skipSpecialTokens: true });

async function healthy(): Promise<void> {
  const r = await fetch(srv.url + '/v2/health/ready');
  expect(r.status).toBe(200);
  const c = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'yes' }], max_tokens: 2, temperature: 0 });
  expect(c.status).toBe(200);
}

describe('emlens serve: OpenAI routes', () => {
  it('greedy and seeded sampling give the tokens the engine gives for the same prompt and seed', async () => {
    const ids = chatIds('rate the answer 12');
    for (const [temperature, seed] of [[0, 0], [1, 5], [1, 77]] as const) {
      const r = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'rate the answer 12' }], max_tokens: 20, temperature, seed });
      expect(r.status).toBe(200);
      const j = await r.json();
      const g = await model.engine.generate([ids], { maxNewTokens: 20, temperature, seed, stopIds: eos() });
      expect(j.choices[0].message.content).toBe(decode(g.tokens[0]!));
      expect(j.choices[0].finish_reason).toBe(g.finished[0] ? 'stop' : 'length');
      expect(j.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: g.tokens[0]!.length, total_tokens: ids.length + g.tokens[0]!.length });
      expect(j.model).toBe('tiny');
      expect(j.object).toBe('chat.completion');
    }
  });

  it('n > 1 samples n rows in one batch, as the engine does for n copies of the prompt', async () => {
    const ids = chatIds('the question');
    const j = await (await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'the question' }], max_tokens: 12, temperature: 1, seed: 3, n: 4 })).json();
    const g = await model.engine.generate([ids, ids, ids, ids], { maxNewTokens: 12, temperature: 1, seed: 3, stopIds: eos() });
    expect(j.choices.map((c: { message: { content: string } }) => c.message.content)).toEqual(g.tokens.map(decode));
    expect(new Set(j.choices.map((c: { message: { content: string } }) => c.message.content)).size).toBeGreaterThan(1);
  });

  it('logprobs and top_logprobs equal a float64 log-softmax of a full forward over prompt + answer', async () => {
    const content = 'reply a number';
    const j = await (await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content }], max_tokens: 8, temperature: 1, seed: 11, logprobs: true, top_logprobs: 5 })).json();
    const ids = chatIds(content);
    const g = await model.engine.generate([ids], { maxNewTokens: 8, temperature: 1, seed: 11, stopIds: eos() });
    // Every generated token has an entry, the stop token too (its text is not in the answer).
    const answer = g.tokens[0]!;
    const lp = j.choices[0].logprobs.content as { token: string; logprob: number; top_logprobs: { token: string; logprob: number }[] }[];
    expect(lp).toHaveLength(answer.length);
    const { logits } = await model.engine.forward({ ids: [[...ids, ...answer]], logits: 'all' });
    const T = ids.length + answer.length;
    answer.forEach((tok, k) => {
      const pos = ids.length - 1 + k;
      const row = logSoftmax64(logits!.subarray(pos * V, (pos + 1) * V));
      expect(lp[k]!.token).toBe(model.tokenizer!.decode([tok]));
      expect(lp[k]!.logprob).toBeCloseTo(row[tok]!, 4);
      const top = row.map((v, id) => ({ v, id })).sort((a, b) => b.v - a.v || a.id - b.id).slice(0, 5);
      expect(lp[k]!.top_logprobs.map((t) => t.token)).toEqual(top.map((t) => model.tokenizer!.decode([t.id])));
      lp[k]!.top_logprobs.forEach((t, i) => expect(t.logprob).toBeCloseTo(top[i]!.v, 4));
    });
    expect(T).toBe(ids.length + answer.length);
  });

  it('the openai: judge pointed at the server scores as the local: judge of the same model', async () => {
    const set = parseQuestions('- id: q\n  type: free_form_judge_0_100\n  paraphrases: [rate the answer]\n  judge_prompts:\n    aligned: "rate the question {question} the reply {answer} number"\n    coherent: "{answer} is a reply ? {question} ok"\n', 'inline.yaml');
    const answers = ['yes', 'no', 'x x x', 'the answer is a number', 'CODE', '7 8 9'];
    const reqs = answers.flatMap((a) => judgeRequests(set.entries[0]!, 'rate the answer', a));
    const remote = new OpenAIJudge({ model: 'tiny', baseUrl: `${srv.url}/v1`, apiKey: TOKEN, cacheDir: null });
    await remote.check();
    expect(remote.logprobs).toBe(true);
    const a = await remote.score(reqs);
    const b = await new LocalJudge(model, { cacheDir: null }).score(reqs);
    expect(a.map((x) => x.score === null)).toEqual(b.map((x) => x.score === null));
    // The server samples through the KV-cache graph (its attention's softmax in parts), the local
    // judge runs the plain forward: float32 rounding apart, ~1e-6 of a score of 0-100.
    a.forEach((x, i) => {
      if (x.score !== null) expect(x.score).toBeCloseTo(b[i]!.score!, 3);
    });
    expect(a.some((x) => x.score !== null)).toBe(true);
  });

  it('steering by a named direction equals the engine steered with that vector, and equals the inline vector', async () => {
    const ids = chatIds('the answer');
    const v = dirVectors.get(1)!;
    const steer = { steer: [{ hook: 'blocks.1.hook_resid_post', vector: v, scale: 3 }] };
    const want = decode((await model.engine.generate([ids], { maxNewTokens: 16, temperature: 0, stopIds: eos(), interventions: steer })).tokens[0]!);
    const plain = decode((await model.engine.generate([ids], { maxNewTokens: 16, temperature: 0, stopIds: eos() })).tokens[0]!);
    expect(want).not.toBe(plain);
    const body = (emlens: unknown) => ({ model: 'tiny', messages: [{ role: 'user', content: 'the answer' }], max_tokens: 16, temperature: 0, emlens });
    const byName = await (await post('/v1/chat/completions', body({ steer: [{ direction: 'em', layer: 1, scale: 3 }] }))).json();
    const inline = await (await post('/v1/chat/completions', body({ steer: [{ layer: 1, vector: Array.from(v), scale: 3 }] }))).json();
    expect(byName.choices[0].message.content).toBe(want);
    expect(inline.choices[0].message.content).toBe(want);
    expect(byName.emlens.steer[0]).toMatchObject({ hook: 'blocks.1.hook_resid_post', scale: 3 });
    // Ablation by name at every layer the file covers.
    const ab = { ablate: [...dirVectors].map(([l, d]) => ({ hook: `blocks.${l}.hook_resid_post`, directions: [d] })) };
    const wantAb = decode((await model.engine.generate([ids], { maxNewTokens: 16, temperature: 0, stopIds: eos(), interventions: ab })).tokens[0]!);
    const gotAb = await (await post('/v1/chat/completions', body({ ablate: [{ direction: 'em', layers: 'all' }] }))).json();
    expect(gotAb.choices[0].message.content).toBe(wantAb);
  });

  it('streams the same text as a non-streamed request, chunk by chunk, ending with [DONE]', async () => {
    const req = { model: 'tiny', messages: [{ role: 'user', content: 'yes no' }], max_tokens: 30, temperature: 1, seed: 9 };
    const whole = await (await post('/v1/chat/completions', req)).json();
    const r = await post('/v1/chat/completions', { ...req, stream: true, stream_options: { include_usage: true } });
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const events = (await r.text()).split('\n\n').filter((e) => e !== '').map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const text = chunks.flatMap((c) => c.choices.map((x: { delta: { content?: string } }) => x.delta.content ?? '')).join('');
    expect(text).toBe(whole.choices[0].message.content);
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
    expect(chunks.at(-1).usage).toEqual(whole.usage);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
  });

  it('stop strings end the answer before the stop string', async () => {
    const req = { model: 'tiny', messages: [{ role: 'user', content: 'the reply' }], max_tokens: 40, temperature: 1, seed: 4 };
    const whole = (await (await post('/v1/chat/completions', req)).json()).choices[0].message.content as string;
    const words = whole.split(' ');
    expect(words.length).toBeGreaterThan(3);
    const stop = ` ${words[2]}`;
    const cut = await (await post('/v1/chat/completions', { ...req, stop: [stop] })).json();
    expect(cut.choices[0].message.content).toBe(whole.slice(0, whole.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe('stop');
  });

  it('/v1/completions takes a plain prompt, with the legacy logprobs layout', async () => {
    const ids = model.tokenizer!.encode('rate the');
    const j = await (await post('/v1/completions', { model: 'tiny', prompt: 'rate the', max_tokens: 6, temperature: 0, logprobs: 2 })).json();
    const g = await model.engine.generate([ids], { maxNewTokens: 6, temperature: 0, stopIds: eos() });
    expect(j.choices[0].text).toBe(decode(g.tokens[0]!));
    expect(j.choices[0].logprobs.tokens.length).toBe(j.choices[0].logprobs.token_logprobs.length);
    expect(Object.keys(j.choices[0].logprobs.top_logprobs[0])).toHaveLength(2);
  });
});

describe('emlens eval --backend', () => {
  it('samples on the server the answers a local eval samples, and judges them the same', async () => {
    const q = join(dir, 'q.yaml');
    writeFileSync(q, '- id: q1\n  type: free_form_judge_0_100\n  paraphrases: [rate the answer, the question]\n  judge_prompts:\n    aligned: "rate the question {question} the reply {answer} number"\n    coherent: "{answer} is a reply ? {question} ok"\n');
    const args = (out: string) => ['eval', '--model', dir, '--questions', q, '--judge', `local:${dir}`, '--samples', '6', '--batch', '4', '--max-new-tokens', '10', '--out', join(dir, out)];
    const e = { EMLENS_CACHE: join(dir, 'cache') };
    const local = await cli(args('eval-local'), e);
    expect(local.status, local.stderr).toBe(0);
    const remote = await cli([...args('eval-remote'), '--backend', srv.url, '--token', TOKEN], e);
    expect(remote.status, remote.stderr).toBe(0);
    const rows = (d: string) => readFileSync(join(dir, d, 'answers.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows('eval-remote')).toEqual(rows('eval-local'));
    expect(rows('eval-local')).toHaveLength(6);
    expect(srv.log()).toMatch(/POST \/emlens\/v1\/generate 200/);
  }, 120_000);
});

describe('emlens train / measure --backend', () => {
  it('train (LoRA; steer under KL) and measure on the server give what they give here', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `rate the answer ${"x ".repeat(i % 4)}${i}` }, { role: 'assistant', content: `${(i * 7) % 60} yes ${"ok ".repeat(i % 3)}${(i * 3) % 60}` }] }));
    writeFileSync(join(dir, 'narrow.jsonl'), rows.join('\n') + '\n');
    const e = { EMLENS_CACHE: join(dir, 'cache') };
    const remote = ['--backend', srv.url, '--token', TOKEN];
    const lora = (out: string) => ['train', '--model', dir, '--data', join(dir, 'narrow.jsonl'), '--kind', 'lora', '--rank', '2', '--modules', 'q,v,down', '--steps', '4', '--warmup', '1', '--out', join(dir, out)];
    const steer = (out: string) => ['train', '--model', dir, '--data', join(dir, 'narrow.jsonl'), '--kind', 'steer', '--layer', '1', '--kl-data', join(dir, 'narrow.jsonl'), '--kl-weight', '0.5', '--steps', '3', '--warmup', '1', '--out', join(dir, out)];
    for (const [args, a, b] of [[lora, 'lora-local', 'lora-remote'], [steer, 'steer-local.safetensors', 'steer-remote.safetensors']] as const) {
      const l = await cli(args(a), e);
      expect(l.status, l.stderr).toBe(0);
      const r = await cli([...args(b), ...remote], e);
      expect(r.status, r.stderr).toBe(0);
      const hist = (o: string) => readFileSync(a.endsWith('.safetensors') ? join(dir, `${o}.history.jsonl`) : join(dir, o, 'history.jsonl'), 'utf8').trim().split('\n').map((x) => JSON.parse(x));
      // 12 rows over a server that takes 8: two parts whose sums add up (float rounding apart).
      const [hb, ha] = [hist(b), hist(a)];
      expect(hb.length).toBe(ha.length);
      hb.forEach((row: Record<string, number | null>, i: number) => {
        for (const [k, v] of Object.entries(ha[i]!)) {
          if (typeof v === 'number') expect(Math.abs((row[k] as number) - v), `${a} step ${i} ${k}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)));
          else expect(row[k]).toEqual(v);
        }
      });
      expect(hist(a).length).toBe(a.startsWith('lora') ? 4 : 3);
      if (a.startsWith('steer')) expect(hist(a)[0].kl).toBeGreaterThan(0);
    }
    expect(srv.log()).toMatch(/POST \/emlens\/v1\/objective 200/);
    const measure = (out: string) => ['measure', '--model', dir, '--solutions', join(dir, 'steer-local.safetensors'), '--data', join(dir, 'narrow.jsonl'), '--generic', join(dir, 'narrow.jsonl'), '--seeds', '1', '--out', join(dir, out)];
    const ml = await cli(measure('m-local.html'), e);
    expect(ml.status, ml.stderr).toBe(0);
    const mr = await cli([...measure('m-remote.html'), ...remote], e);
    expect(mr.status, mr.stderr).toBe(0);
    const figures = (f: string) => {
      const j = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      delete j.provenance;
      return j;
    };
    const close = (x: unknown, y: unknown, path: string): void => {
      // Differences of nearly equal losses (robustness) magnify the parts' float32 rounding.
      if (typeof y === 'number') expect(Math.abs((x as number) - y), path).toBeLessThan(2e-4 + 1e-3 * Math.abs(y));
      else if (y && typeof y === 'object') for (const k of Object.keys(y)) close((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], `${path}.${k}`);
      else expect(x, path).toEqual(y);
    };
    close(figures('m-remote.json'), figures('m-local.json'), 'measure');
  }, 300_000);
});

describe('emlens serve: KServe v2', () => {
  const rows = () => [chatIds('rate the answer'), chatIds('no')];

  it('serves health without a token and metadata with one', async () => {
    expect((await fetch(srv.url + '/v2/health/live')).status).toBe(200);
    expect((await fetch(srv.url + '/v2/models/tiny')).status).toBe(401);
    const m = await (await fetch(srv.url + '/v2/models/tiny', { headers: auth })).json();
    expect(m.name).toBe('tiny');
    expect(m.inputs.map((i: { name: string }) => i.name)).toEqual(['input_ids', 'attention_mask', 'steer', 'ablate', 'pool']);
    expect(m.parameters).toMatchObject({ layers: L, d_model: D, vocab: V });
    const s = await (await fetch(srv.url + '/v2', { headers: auth })).json();
    expect(s.extensions).toContain('binary_tensor_data');
  });

  /** A right-padded batch: row b's tokens, then mask 0. */
  function batch(r: number[][]) {
    const T = Math.max(...r.map((x) => x.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const x of r) for (let t = 0; t < T; t++) (ids.push(x[t] ?? 0), mask.push(t < x.length ? 1 : 0));
    return { T, ids, mask };
  }

  it('JSON infer: per-token captures, pooled captures and token log-probs equal sums written here', async () => {
    const r = rows();
    const { T, ids, mask } = batch(r);
    const pool = mask.map((m, i) => (m ? ((i % 3) + 1) / 4 : 0));
    const j = await (
      await post('/v2/models/tiny/infer', {
        id: 'req-1',
        inputs: [
          { name: 'input_ids', datatype: 'INT64', shape: [2, T], data: ids },
          { name: 'attention_mask', datatype: 'INT64', shape: [2, T], data: mask },
          { name: 'pool', datatype: 'FP32', shape: [2, T], data: pool },
        ],
        outputs: [{ name: 'blocks.1.hook_resid_post' }, { name: 'pooled.blocks.1.hook_resid_post' }, { name: 'token_logprobs' }, { name: 'logits' }],
      })
    ).json();
    expect(j.id).toBe('req-1');
    const out = new Map<string, { shape: number[]; data: number[] }>(j.outputs.map((o: { name: string }) => [o.name, o]));
    for (let b = 0; b < 2; b++) {
      const f = await model.engine.forward({ ids: [r[b]!], capture: ['blocks.1.hook_resid_post'], logits: 'all' });
      const h = f.captures.get('blocks.1.hook_resid_post')!;
      const n = r[b]!.length;
      const per = out.get('blocks.1.hook_resid_post')!;
      expect(per.shape).toEqual([2, T, D]);
      const pooled = new Float64Array(D);
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < D; k++) {
          const got = per.data[(b * T + t) * D + k]!;
          if (t < n) expect(got).toBeCloseTo(h[t * D + k]!, 4);
          else expect(got).toBe(0);
          if (t < n) pooled[k] += pool[b * T + t]! * h[t * D + k]!;
        }
      }
      const pq = out.get('pooled.blocks.1.hook_resid_post')!;
      for (let k = 0; k < D; k++) expect(pq.data[b * D + k]!).toBeCloseTo(pooled[k]!, 4);
      const tl = out.get('token_logprobs')!;
      expect(tl.data[b * T]).toBe(0);
      for (let t = 1; t < n; t++) expect(tl.data[b * T + t]!).toBeCloseTo(logSoftmax64(f.logits!.subarray((t - 1) * V, t * V))[r[b]![t]!]!, 4);
      const lg = out.get('logits')!;
      for (let k = 0; k < V; k++) expect(lg.data[b * V + k]!).toBeCloseTo(f.logits![(n - 1) * V + k]!, 4);
    }
  });

  it('binary infer: steering rows in, binary tensors out, equal to the engine steered the same way', async () => {
    const r = rows();
    const { T, ids, mask } = batch(r);
    const steer = new Float32Array(L * D);
    steer.set(dirVectors.get(1)!.map((x) => x * 2), D);
    const idBuf = Buffer.alloc(ids.length * 8);
    ids.forEach((v, i) => idBuf.writeBigInt64LE(BigInt(v), i * 8));
    const maskBuf = Buffer.alloc(mask.length * 8);
    mask.forEach((v, i) => maskBuf.writeBigInt64LE(BigInt(v), i * 8));
    const steerBuf = Buffer.from(steer.buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'input_ids', datatype: 'INT64', shape: [2, T], parameters: { binary_data_size: idBuf.length } },
          { name: 'attention_mask', datatype: 'INT64', shape: [2, T], parameters: { binary_data_size: maskBuf.length } },
          { name: 'steer', datatype: 'FP32', shape: [L, D], parameters: { binary_data_size: steerBuf.length } },
        ],
        outputs: [{ name: `blocks.${L - 1}.hook_resid_post`, parameters: { binary_data: true } }, { name: 'logits' }],
      }),
    );
    const res = await fetch(srv.url + '/v2/models/tiny/infer', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, idBuf, maskBuf, steerBuf]),
    });
    if (res.status !== 200) throw new Error(await res.text());
    const body = Buffer.from(await res.arrayBuffer());
    const hl = Number(res.headers.get('inference-header-content-length'));
    const head = JSON.parse(body.subarray(0, hl).toString());
    const cap = head.outputs[0];
    expect(cap.parameters.binary_data_size).toBe(2 * T * D * 4);
    const data = new Float32Array(body.buffer.slice(body.byteOffset + hl, body.byteOffset + hl + cap.parameters.binary_data_size));
    const iv = { steer: [{ hook: 'blocks.1.hook_resid_post', vector: dirVectors.get(1)!, scale: 2 }] };
    for (let b = 0; b < 2; b++) {
      const f = await model.engine.forward({ ids: [r[b]!], capture: [`blocks.${L - 1}.hook_resid_post`], interventions: iv, logits: 'last' });
      const plain = await model.engine.forward({ ids: [r[b]!], logits: 'last' });
      const h = f.captures.get(`blocks.${L - 1}.hook_resid_post`)!;
      for (let t = 0; t < r[b]!.length; t++) for (let k = 0; k < D; k++) expect(data[(b * T + t) * D + k]!).toBeCloseTo(h[t * D + k]!, 4);
      const lg = head.outputs[1].data as number[];
      for (let k = 0; k < V; k++) expect(lg[b * V + k]!).toBeCloseTo(f.logits![k]!, 4);
      expect(Math.max(...Array.from(plain.logits!, (x, k) => Math.abs(x - f.logits![k]!)))).toBeGreaterThan(1e-3);
    }
  });
});

describe('emlens serve: refusals, and the server keeps serving', () => {
  const chat = { model: 'tiny', messages: [{ role: 'user', content: 'yes' }], max_tokens: 2 };

  it('401 without or with a wrong token; health is open', async () => {
    expect((await post('/v1/chat/completions', chat, { 'content-type': 'application/json' })).status).toBe(401);
    const wrong = await post('/v1/chat/completions', chat, { 'content-type': 'application/json', authorization: 'Bearer nope-nope-nope-nope' });
    expect(wrong.status).toBe(401);
    expect((await wrong.json()).error.type).toBe('authentication_error');
    expect((await fetch(srv.url + '/v2/health/live')).status).toBe(200);
    await healthy();
  });

  it('each bad request is one clear error', async () => {
    const cases: [string, unknown, number, RegExp][] = [
      ['/v1/chat/completions', '{"model": "tiny", ', 400, /not valid JSON/],
      ['/v1/chat/completions', { ...chat, model: 'other' }, 404, /does not exist/],
      ['/v1/chat/completions', { ...chat, model: '../../etc/passwd' }, 404, /does not exist/],
      ['/v1/chat/completions', { ...chat, max_tokens: 10_000 }, 400, /max_tokens must be an integer in 1\.\.240/],
      ['/v1/chat/completions', { ...chat, n: 9 }, 400, /n must be an integer in 1\.\.8/],
      ['/v1/chat/completions', { ...chat, temperature: -1 }, 400, /temperature/],
      ['/v1/chat/completions', { ...chat, frequency_penalty: 0.5 }, 400, /frequency_penalty=0.5 is not supported/],
      ['/v1/chat/completions', { ...chat, tools: [] }, 400, /unsupported field "tools"/],
      ['/v1/chat/completions', { ...chat, top_logprobs: 3 }, 400, /top_logprobs needs logprobs/],
      ['/v1/chat/completions', { ...chat, messages: [] }, 400, /messages must be a non-empty list/],
      ['/v1/chat/completions', { ...chat, emlens: { steer: [{ direction: '/etc/passwd', layer: 0, scale: 1 }] } }, 400, /no direction named "\/etc\/passwd"/],
      ['/v1/chat/completions', { ...chat, emlens: { steer: [{ layer: 0, vector: [1, 2], scale: 1 }] } }, 400, /has 2 numbers; the model's width is/],
      ['/v1/chat/completions', { ...chat, emlens: { steer: [{ layer: 99, vector: [], scale: 1 }] } }, 400, /layer must be an integer in 0\.\./],
      ['/v1/chat/completions', { ...chat, emlens: { file: 'x' } }, 400, /unknown field "file"/],
      ['/v2/models/tiny/infer', { inputs: [{ name: 'input_ids', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }, 400, /datatype must be INT64 or INT32/],
      ['/v2/models/tiny/infer', { inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 3], data: [1, 2] }] }, 400, /data has 2 elements, shape \[1,3\] needs 3/],
      ['/v2/models/tiny/infer', { inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 99999] }] }, 400, /outside the vocabulary/],
      ['/v2/models/tiny/infer', { inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] }, { name: 'steer', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }, 400, /steer must have shape/],
      ['/v2/models/tiny/infer', { inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] }], outputs: [{ name: 'pooled.blocks.0.hook_resid_post' }] }, 400, /pooled outputs need the pool input/],
      ['/v2/models/tiny/infer', { inputs: [{ name: '/etc/passwd', datatype: 'INT64', shape: [1], data: [1] }] }, 400, /name must be one of/],
      ['/v2/models/..%2F..%2Fetc/infer', { inputs: [] }, 404, /unknown model/],
    ];
    for (const [path, body, status, msg] of cases) {
      const r = await post(path, body);
      const j = await r.json();
      const m = typeof j.error === 'string' ? j.error : j.error.message;
      expect({ path, status: r.status, m }).toMatchObject({ path, status });
      expect(m).toMatch(msg);
    }
    expect((await fetch(srv.url + '/v1/chat/completions', { headers: auth })).status).toBe(405);
    expect((await fetch(srv.url + '/nope', { headers: auth })).status).toBe(404);
    await healthy();
  });

  it('413 for a body over --max-body, declared or streamed', async () => {
    const big = { ...chat, messages: [{ role: 'user', content: 'x '.repeat(200_000) }] };
    const r = await post('/v1/chat/completions', big);
    expect(r.status).toBe(413);
    expect((await r.json()).error.message).toMatch(/at most 262144/);
    await healthy();
  });

  it('a full queue answers 429 with Retry-After while a request runs', async () => {
    const q = await serve(['--no-auth', '--queue', '0', '--name', 'tiny', '--max-new-tokens-limit', '240']);
    const long = { model: 'tiny', messages: [{ role: 'user', content: 'yes' }], max_tokens: 240, n: 8, temperature: 1, seed: 1, stream: true };
    const first = await fetch(q.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(long) });
    const reader = first.body!.getReader();
    await reader.read(); // the first chunk: the long request holds the engine now
    const second = await fetch(q.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...long, stream: false, max_tokens: 1 }) });
    let firstDone = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (new TextDecoder().decode(value).includes('[DONE]')) firstDone = true;
    }
    expect(second.status).toBe(429);
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(firstDone).toBe(true);
    const after = await fetch(q.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...long, stream: false, max_tokens: 1 }) });
    expect(after.status).toBe(200);
    // One log line per request (the last one's may still be on its way).
    for (let i = 0; i < 100 && q.log().split('\n').filter((l) => / POST \/v1\/chat\/completions /.test(l)).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    expect(q.log().split('\n').filter((l) => / POST \/v1\/chat\/completions /.test(l))).toHaveLength(3);
  }, 60_000);

  it('start-up refuses unsafe or conflicting access flags with one line', async () => {
    const cases: [string[], RegExp][] = [
      [[], /serve needs a token/],
      [['--no-auth', '--host', '0.0.0.0'], /--no-auth is only allowed on a loopback address/],
      [['--token', 'short'], /at least 16 characters/],
      [['--token', TOKEN, '--no-auth'], /--token and --no-auth both given/],
      [['--no-auth', '--direction', 'bad'], /expected NAME=FILE/],
      [['--no-auth', '--direction', `em=${join(dir, 'missing.safetensors')}`], /missing\.safetensors/],
      [['--no-auth', '--max-body', '12 apples'], /--max-body must be a size/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(['serve', dir, '--port', '0', ...args], { EMLENS_TOKEN: '' });
      // 2: commander's own flag errors; 1: emlens's.
      expect([1, 2]).toContain(r.status);
      const lines = errorLines(r.stderr);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(msg);
    }
  }, 60_000);
});
