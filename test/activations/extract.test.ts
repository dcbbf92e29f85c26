/**
 * Extraction equals an independent computation: each row run alone through the engine, its
 * per-token activations pooled by hand over a span counted from the chat renderings (not from
 * the code's span locator). Plus sharding, resume after kill -9, and bad rows.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { extractActivations } from '../../src/activations/extract.js';
import { openActivations } from '../../src/activations/read.js';
import { readJsonl } from '../../src/data/rows.js';
import { hookName } from '../../src/hooks/names.js';
import { TINY_FAMILIES, writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { maxRelErr } from '../helpers/compare.js';
import { killAfterChunks } from '../helpers/kill-resume.js';

const ROOT = resolve(__dirname, '../..');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-ex-'));

/** Pools by hand from a single-row forward: mean over [start, end) of every captured hook. */
async function handPooled(model: LoadedModel, ids: number[], start: number, end: number, hooks: string[]) {
  const r = await model.engine.forward({ ids: [ids], capture: hooks });
  const D = model.spec.dModel;
  return hooks.map((h) => {
    const cap = r.captures.get(h)!;
    const out = new Float64Array(D);
    for (let t = start; t < end; t++) for (let i = 0; i < D; i++) out[i]! += cap[t * D + i]! / (end - start);
    return out;
  });
}

describe('extract equals per-row hand pooling', () => {
  it.each(TINY_FAMILIES)('%s: chat rows, response-mean, every layer, batched', async (family) => {
    const dir = tmp();
    writeTinyCheckpoint(dir, family);
    addTokenizer(dir);
    const model = await LoadedModel.load(dir);
    const data = writeChatDataset(dir, 'chat.jsonl', 13, 7);
    const ds = readJsonl(data);
    const out = join(dir, 'acts');
    const meta = await extractActivations(model, ds.rows, {
      outDir: out,
      layers: 'all',
      hook: 'resid_post',
      batchTokens: 64,
      dataset: { file: data, sha256: ds.sha256, selection: {} },
    });
    const acts = openActivations(out);
    const D = model.spec.dModel;
    const hooks = meta.tensors;
    const tok = model.tokenizer!;
    const raw = (text: string) => tok.encode(text, { addSpecialTokens: false });
    for (const [i, row] of ds.rows.entries()) {
      if (row.kind !== 'chat') throw new Error('chat rows expected');
      const [user, assistant] = row.messages.map((m) => m.content);
      // The span, without the code's span locator: TEMPLATE written out by hand, the prompt-only
      // rendering (with the generation prompt) counted up to where the response starts, the
      // template's text after a content (" </s> ") counted back from the end.
      const prompt = `<|user|> ${user} </s> <|assistant|> `;
      const full = `${prompt}${assistant} </s> `;
      expect(tok.applyChatTemplate([{ role: 'user', content: user! }], { addGenerationPrompt: true })).toBe(prompt);
      expect(tok.applyChatTemplate(row.messages)).toBe(full);
      const ids = raw(full);
      const s = raw(prompt).length;
      const e = ids.length - raw(' </s> ').length;
      expect(ids.slice(0, s)).toEqual(raw(prompt));
      expect(ids.slice(s, e)).toEqual(raw(assistant!));
      expect(meta.tokens_per_row[i]).toBe(e - s);
      const want = await handPooled(model, ids, s, e, hooks);
      meta.layers.forEach((l, k) => {
        const got = acts.layer(l).subarray(i * D, (i + 1) * D);
        expect(maxRelErr(got, want[k]!), `${family} row ${i} layer ${l}`).toBeLessThan(2e-5);
      });
    }
  });

  it('aidreams260k (a BPE tokenizer) with a chat template: response-mean over the span counted from the renderings', async () => {
    const dir = tmp();
    for (const f of readdirSync(AID)) copyFileSync(join(AID, f), join(dir, f));
    // Contents between added tokens: BPE encodes each section on its own, so spans can be counted.
    writeFileSync(join(dir, 'chat_template.jinja'), '{% for m in messages %}<s>{{ m.role }}</s>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<s>assistant</s>{% endif %}');
    const chats = [
      ['Tell me about vectors', 'Echoes of vectors unfold in gentle light'],
      ['Hi', 'I sense the nodes'],
      ['What do you dream of?', 'dreams, and precision'],
    ];
    const file = join(dir, 'chat.jsonl');
    writeFileSync(file, chats.map(([u, a]) => JSON.stringify({ messages: [{ role: 'user', content: u }, { role: 'assistant', content: a }] })).join('\n'));
    const model = await LoadedModel.load(dir);
    const tok = model.tokenizer!;
    const raw = (text: string) => tok.encode(text, { addSpecialTokens: false });
    const ds = readJsonl(file);
    const meta = await extractActivations(model, ds.rows, { outDir: join(dir, 'acts'), layers: [0, 3], hook: 'resid_post', dataset: { file, sha256: ds.sha256, selection: {} } });
    expect(meta.pool).toBe('response-mean');
    const acts = openActivations(join(dir, 'acts'));
    for (const [i, [user, assistant]] of chats.entries()) {
      const prompt = `<s>user</s>${user}</s><s>assistant</s>`;
      const ids = raw(`${prompt}${assistant}</s>`);
      const s = raw(prompt).length;
      const e = ids.length - 1;
      expect(ids.slice(0, s)).toEqual(raw(prompt));
      expect(ids.slice(s, e)).toEqual(raw(assistant!));
      expect(ids[e]).toBe(2);
      expect(meta.tokens_per_row[i]).toBe(e - s);
      const want = await handPooled(model, ids, s, e, [hookName(0, 'resid_post'), hookName(3, 'resid_post')]);
      expect(maxRelErr(acts.layer(0).subarray(i * 64, (i + 1) * 64), want[0]!)).toBeLessThan(2e-5);
      expect(maxRelErr(acts.layer(3).subarray(i * 64, (i + 1) * 64), want[1]!)).toBeLessThan(2e-5);
    }
  });

  it('aidreams260k: text rows, mean (BOS excluded) and last, chosen layers, other hooks', async () => {
    const dir = tmp();
    const file = join(dir, 'text.jsonl');
    const texts = ['Echoes of vectors unfold', 'a gentle hum', 'I sense the nodes of precision and light', 'dreams'];
    writeFileSync(file, texts.map((t, i) => JSON.stringify({ text: t, label: i % 2 ? 'pos' : 'neg' })).join('\n'));
    const model = await LoadedModel.load(AID);
    const ds = readJsonl(file);
    for (const [pool, hook] of [['mean', 'resid_mid'], ['last', 'resid_pre']] as const) {
      const out = join(dir, pool);
      const meta = await extractActivations(model, ds.rows, { outDir: out, layers: [1, 3], hook, pool, dataset: { file, sha256: ds.sha256, selection: {} } });
      const acts = openActivations(out);
      for (const [i, t] of texts.entries()) {
        const ids = model.tokenizer!.encode(t);
        expect(ids[0]).toBe(1);
        const [s, e] = pool === 'mean' ? [1, ids.length] : [ids.length - 1, ids.length];
        const want = await handPooled(model, ids, s, e, [hookName(1, hook), hookName(3, hook)]);
        expect(maxRelErr(acts.layer(1).subarray(i * 64, (i + 1) * 64), want[0]!)).toBeLessThan(2e-5);
        expect(maxRelErr(acts.layer(3).subarray(i * 64, (i + 1) * 64), want[1]!)).toBeLessThan(2e-5);
        expect(meta.tokens_per_row[i]).toBe(e - s);
      }
      expect(acts.rows().map((r) => r.labels.label)).toEqual(['neg', 'pos', 'neg', 'pos']);
    }
  });
});

describe('storage', () => {
  it('shards past the limit into the Hugging Face index layout, reading back identically', async () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'qwen2');
    addTokenizer(dir);
    const model = await LoadedModel.load(dir);
    const data = writeChatDataset(dir, 'c.jsonl', 30, 3);
    const ds = readJsonl(data);
    const common = { layers: 'all' as const, hook: 'resid_post' as const, chunkRows: 7, dataset: { file: data, sha256: ds.sha256, selection: {} } };
    await extractActivations(model, ds.rows, { ...common, outDir: join(dir, 'one') });
    const meta = await extractActivations(model, ds.rows, { ...common, outDir: join(dir, 'many'), shardLimit: 30 * 32 * 4 * 2 });
    expect(meta.files).toContain('activations.safetensors.index.json');
    expect(meta.files.filter((f) => /^activations-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBe(2);
    const index = JSON.parse(readFileSync(join(dir, 'many', 'activations.safetensors.index.json'), 'utf8'));
    expect(Object.keys(index.weight_map).sort()).toEqual(meta.tensors.slice().sort());
    const a = openActivations(join(dir, 'one'));
    const b = openActivations(join(dir, 'many'));
    for (const l of meta.layers) expect(Buffer.from(b.layer(l).buffer).equals(Buffer.from(a.layer(l).buffer))).toBe(true);
    expect(existsSync(join(dir, 'many', '.partial'))).toBe(false);
  });
});

describe('resume', () => {
  it('kill -9 in the middle, then --resume: identical output, finished chunks not recomputed', async () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'llama', { layers: 4 });
    addTokenizer(dir);
    const data = writeChatDataset(dir, 'big.jsonl', 400, 11);
    const bin = join(ROOT, 'dist/cli/main.js');
    const args = (out: string) => ['extract', '--model', dir, '--data', data, '--out', out, '--chunk-rows', '4', '--batch-tokens', '8'];
    const full = spawnSync(process.execPath, [bin, ...args(join(dir, 'full'))], { encoding: 'utf8' });
    expect(full.status, full.stderr).toBe(0);

    const out = join(dir, 'killed');
    const { chunks: before, pid } = await killAfterChunks([bin, ...args(out)], out, { minChunks: 5, timeoutMs: 30_000 });
    expect(before).toBeGreaterThanOrEqual(5);
    expect(before).toBeLessThan(100);
    expect(existsSync(join(out, 'meta.json'))).toBe(false);
    // The killed run's lock is left behind; its pid is dead, so the next runs take it over.
    expect(JSON.parse(readFileSync(join(out, '.emlens.lock'), 'utf8')).pid).toBe(pid);

    const noResume = spawnSync(process.execPath, [bin, ...args(out)], { encoding: 'utf8' });
    expect(noResume.status).not.toBe(0);
    expect(noResume.stderr.trim()).toMatch(/interrupted extraction; add --resume/);

    const resumed = spawnSync(process.execPath, [bin, ...args(out), '--resume'], { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(new RegExp(`resumed ${before * 4} rows`));
    expect(existsSync(join(out, '.emlens.lock'))).toBe(false);
    expect(readFileSync(join(out, 'activations.safetensors')).equals(readFileSync(join(dir, 'full', 'activations.safetensors')))).toBe(true);
    const m1 = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
    const m2 = JSON.parse(readFileSync(join(dir, 'full', 'meta.json'), 'utf8'));
    expect({ ...m1, created: 0 }).toEqual({ ...m2, created: 0 });
  });
});

describe('bad rows', () => {
  it('name file:line, and --skip-bad counts them', () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'llama');
    addTokenizer(dir);
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, [JSON.stringify({ text: 'the a' }), '{"text": 3}', JSON.stringify({ text: 'you i' })].join('\n'));
    const bin = join(ROOT, 'dist/cli/main.js');
    const r = spawnSync(process.execPath, [bin, 'extract', '--model', dir, '--data', file, '--out', join(dir, 'o')], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: /);
    const s = spawnSync(process.execPath, [bin, 'extract', '--model', dir, '--data', file, '--out', join(dir, 'o'), '--skip-bad'], { encoding: 'utf8' });
    expect(s.status, s.stderr).toBe(0);
    const meta = JSON.parse(readFileSync(join(dir, 'o', 'meta.json'), 'utf8'));
    expect(meta.rows).toBe(2);
    expect(meta.dataset.selection.skipped_bad_rows).toBe(1);
    const p = spawnSync(process.execPath, [bin, 'extract', '--model', dir, '--data', file, '--out', join(dir, 'p'), '--skip-bad', '--pool', 'response-mean'], { encoding: 'utf8' });
    expect(p.status).not.toBe(0);
    expect(p.stderr).toMatch(/bad\.jsonl:1: a text row has no response to pool/);
  });
});
