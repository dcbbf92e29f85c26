/**
 * `--backend`: commands run on real `emlens serve` processes give what the local runtime gives.
 * Two servers of the real aidreams260k checkpoint; an extraction fanned out over both equals a
 * local extraction; one server killed (SIGKILL) mid-run leaves the run to the other, same result;
 * generation (greedy, seeded, steered) equals the local engine's tokens; a server of another model
 * is refused in one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openActivations } from '../../src/activations/read.js';
import { LoadedModel } from '../../src/backend/model.js';
import { BIN, cli, errorLines } from '../eval-commands/cli.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';

const MODEL = resolve(__dirname, '../../../shared/models/aidreams260k');
const TOKEN = 'backend-token-0123456789';
let dir: string;
const procs: ChildProcess[] = [];

interface Server {
  proc: ChildProcess;
  url: string;
  log: () => string;
}

function serve(model: string, args: string[] = []): Promise<Server> {
  return new Promise((res, rej) => {
    const proc = spawn(process.execPath, [BIN, 'serve', model, '--port', '0', '--token', TOKEN, ...args], { env: { ...process.env, EMLENS_CACHE: join(dir, 'cache') }, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(proc);
    let err = '';
    proc.stderr!.on('data', (c) => {
      err += c;
      const m = /serving "[^"]+" at (http:\/\/[^ ]+) /.exec(err);
      if (m) res({ proc, url: m[1]!, log: () => err });
    });
    proc.on('exit', (code) => rej(new Error(`serve exited ${code}: ${err}`)));
  });
}

let a: Server;
let b: Server;
const env = () => ({ EMLENS_CACHE: join(dir, 'cache'), EMLENS_TOKEN: TOKEN });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-backend-'));
  const words = 'once upon a time there was a little girl who loved the sea and a dog that could sing to the moon'.split(' ');
  const rows = Array.from({ length: 160 }, (_, i) => JSON.stringify({ text: Array.from({ length: 4 + (i % 13) }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' '), i }));
  writeFileSync(join(dir, 'rows.jsonl'), rows.join('\n') + '\n');
  [a, b] = await Promise.all([serve(MODEL), serve(MODEL)]);
}, 120_000);

afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function maxDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

function sameActivations(p: string, q: string): void {
  const x = openActivations(p);
  const y = openActivations(q);
  expect(x.meta.rows).toBe(160);
  expect(x.meta.layers).toEqual(y.meta.layers);
  expect(x.meta.model.weights_sha256).toBe(y.meta.model.weights_sha256);
  for (const l of x.meta.layers) expect(maxDiff(x.layer(l), y.layer(l))).toBeLessThan(1e-5);
  expect(x.rows().map((r) => r.tokens)).toEqual(y.rows().map((r) => r.tokens));
}

const extract = (out: string, extra: string[] = [], e: Record<string, string> = env()) =>
  cli(['extract', '--model', MODEL, '--data', join(dir, 'rows.jsonl'), '--out', out, '--batch-tokens', '48', '--chunk-rows', '8', ...extra], e);

describe('--backend', () => {
  it('an extraction fanned out over two servers equals the local one', async () => {
    const local = await extract(join(dir, 'local'));
    expect(local.status, local.stderr).toBe(0);
    const remote = await extract(join(dir, 'remote'), ['--backend', `${a.url},${b.url}`]);
    expect(remote.status, remote.stderr).toBe(0);
    sameActivations(join(dir, 'remote'), join(dir, 'local'));
    // Both servers did part of the work.
    for (const s of [a, b]) expect(s.log().split('\n').filter((l) => / POST \/emlens\/v1\/forward 200 /.test(l)).length).toBeGreaterThan(3);
  }, 300_000);

  it('a KServe v2 model URL works as a backend too (alone, or beside an emlens server), with steering', async () => {
    const kserve = `${a.url}/v2/models/aidreams260k`;
    const alone = await extract(join(dir, 'kserve'), ['--backend', kserve]);
    expect(alone.status, alone.stderr).toBe(0);
    sameActivations(join(dir, 'kserve'), join(dir, 'local'));
    const mixed = await extract(join(dir, 'mixed'), ['--backend', `${kserve},${b.url}`]);
    expect(mixed.status, mixed.stderr).toBe(0);
    sameActivations(join(dir, 'mixed'), join(dir, 'local'));
    expect(a.log()).toMatch(/POST \/v2\/models\/aidreams260k\/infer 200/);
    // Forward with steering and ablation at resid_post through the KServe dialect = local.
    const local = await LoadedModel.load(MODEL);
    const remote = await LoadedModel.load(MODEL, { backend: { urls: [kserve], token: TOKEN } });
    const tok = local.tokenizer!;
    const ids = [tok.encode('a b c d e f'), tok.encode('the sea')];
    const v = Float32Array.from({ length: local.spec.dModel }, (_, i) => Math.cos(i) * 2);
    const iv = { steer: [{ hook: 'blocks.1.hook_resid_post', vector: v, scale: 1.5 }], ablate: [{ hook: 'blocks.2.hook_resid_post', directions: [v.map((x) => x / Math.hypot(...v))] }] };
    const f1 = await local.engine.forward({ ids, capture: ['blocks.3.hook_resid_post'], logits: 'last', interventions: iv });
    const f2 = await remote.backend.forward({ ids, capture: ['blocks.3.hook_resid_post'], logits: 'last', interventions: iv });
    const T = f1.layout.seq;
    const D = local.spec.dModel;
    ids.forEach((r, bi) => {
      for (let t = T - r.length; t < T; t++) for (let k = 0; k < D; k++) expect(Math.abs(f2.captures.get('blocks.3.hook_resid_post')![(bi * T + t) * D + k]! - f1.captures.get('blocks.3.hook_resid_post')![(bi * T + t) * D + k]!)).toBeLessThan(1e-4);
    });
    expect(maxDiff(f2.logits!, f1.logits!)).toBeLessThan(1e-4);
    await expect(remote.backend.generate([ids[0]!], { maxNewTokens: 2 })).rejects.toThrow(/needs an emlens serve server/);
    await expect(remote.backend.forward({ ids, logits: 'all' })).rejects.toThrow(/last token's logits only/);
  }, 300_000);

  it('generate --prompts fans its rows out over two servers and writes the local answers', async () => {
    writeFileSync(join(dir, 'prompts.jsonl'), ['Once upon a time', 'The little dog', 'A girl who loved the sea'].map((t, i) => JSON.stringify({ text: t, i })).join('\n') + '\n');
    const args = (out: string) => ['generate', '--model', MODEL, '--prompts', join(dir, 'prompts.jsonl'), '--samples', '4', '--temperature', '1', '--max-new-tokens', '12', '--seed', '5', '--batch', '6', '--out', join(dir, out)];
    const l = await cli(args('gen-local.jsonl'), env());
    expect(l.status, l.stderr).toBe(0);
    const r = await cli([...args('gen-remote.jsonl'), '--backend', `${a.url},${b.url}`], env());
    expect(r.status, r.stderr).toBe(0);
    const rows = (f: string) => readFileSync(join(dir, f), 'utf8');
    expect(rows('gen-remote.jsonl')).toBe(rows('gen-local.jsonl'));
    expect(rows('gen-local.jsonl').trim().split('\n')).toHaveLength(12);
  }, 120_000);

  it('a server killed with SIGKILL mid-run leaves its rows to the other; the result is the same', async () => {
    const c = await serve(MODEL);
    const d = await serve(MODEL);
    const run = extract(join(dir, 'killed'), ['--backend', `${c.url},${d.url}`]);
    // Kill c once it has answered some of the run's requests.
    for (let i = 0; i < 600 && c.log().split('\n').filter((l) => /forward 200/.test(l)).length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    c.proc.kill('SIGKILL');
    const r = await run;
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/--backend http:\/\/127\.0\.0\.1:\d+: unreachable .*retrying/);
    sameActivations(join(dir, 'killed'), join(dir, 'local'));
  }, 300_000);

  it('generation on the backend gives the local engine\'s tokens: greedy, seeded, steered', async () => {
    const local = await LoadedModel.load(MODEL);
    const remote = await LoadedModel.load(MODEL, { backend: { urls: [a.url, b.url], token: TOKEN } });
    expect(remote.weightsSha256()).toBe(local.weightsSha256());
    expect(() => remote.engine).toThrow(/needs the weights here/);
    const tok = local.tokenizer!;
    const prompts = [tok.encode('Once upon a time'), tok.encode('The dog')];
    const v = Float32Array.from({ length: local.spec.dModel }, (_, i) => Math.sin(i) * 3);
    const steer = { steer: [{ hook: 'blocks.1.hook_resid_post', vector: v, scale: 2 }] };
    for (const o of [{ temperature: 0 }, { temperature: 1, seed: 42 }, { temperature: 0.8, topP: 0.9, seed: 7, interventions: steer }]) {
      const want = await local.engine.generate(prompts, { maxNewTokens: 24, ...o });
      const got = await remote.backend.generate(prompts, { maxNewTokens: 24, ...o });
      expect(got).toEqual({ ...want, logits: undefined });
    }
    const plain = await local.engine.generate(prompts, { maxNewTokens: 24 });
    expect((await remote.backend.generate(prompts, { maxNewTokens: 24, interventions: steer })).tokens).not.toEqual(plain.tokens);
    // Captures with interventions, rows split over the two servers.
    const ids = [tok.encode('a b c d e f'), tok.encode('x'), tok.encode('the sea')];
    const f1 = await local.engine.forward({ ids, capture: ['blocks.2.hook_mlp_out'], logits: 'all', interventions: steer });
    const f2 = await remote.backend.forward({ ids, capture: ['blocks.2.hook_mlp_out'], logits: 'all', interventions: steer });
    expect(f2.layout).toEqual(f1.layout);
    const T = f1.layout.seq;
    const D = local.spec.dModel;
    ids.forEach((r, bi) => {
      const pad = f1.layout.pad[bi]!;
      for (let t = pad; t < T; t++) for (let k = 0; k < D; k++) expect(Math.abs(f2.captures.get('blocks.2.hook_mlp_out')![(bi * T + t) * D + k]! - f1.captures.get('blocks.2.hook_mlp_out')![(bi * T + t) * D + k]!)).toBeLessThan(1e-5);
      expect(r.length).toBe(T - pad);
    });
  }, 120_000);

  it('refuses, in one line, a server of another model, a wrong token and a missing --backend for --token', async () => {
    const other = join(dir, 'other');
    writeTinyCheckpoint(other, 'llama');
    const o = await serve(other);
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['--backend', o.url], env(), /serves "other", whose config\.json differs/],
      [['--backend', a.url], { EMLENS_CACHE: join(dir, 'cache'), EMLENS_TOKEN: 'wrong-token-wrong-token' }, /HTTP 401: wrong bearer token/],
      [['--token', TOKEN], { EMLENS_CACHE: join(dir, 'cache'), EMLENS_BACKEND: '' }, /--token is for --backend servers/],
      [['--backend', 'ftp://x'], env(), /--backend: "ftp:\/\/x" is not http/],
      [['--backend', 'http://127.0.0.1:9'], env(), /--backend http:\/\/127\.0\.0\.1:9: unreachable/],
      [['--backend', a.url, '--adapter', dir], env(), /--adapter and --backend both given/],
    ];
    for (const [extra, e, msg] of cases) {
      const r = await extract(join(dir, 'refused'), extra, e);
      expect(r.status).toBe(1);
      const lines = errorLines(r.stderr);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(msg);
    }
  }, 120_000);
});
