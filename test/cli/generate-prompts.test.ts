/**
 * `emlens generate --prompts FILE.jsonl --samples N --out answers.jsonl`: every row is what a
 * single `emlens generate` of that prompt with the row's seed gives (so --batch changes nothing),
 * a real SIGKILL followed by --resume gives the uninterrupted run's file byte for byte without
 * sampling a kept answer again, and bad rows and conflicting flags are one line each.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-genp-'));

function emlens(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function oneLine(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

/** aidreams with a chat template, so that chat rows can be rendered. */
function chatModel(): string {
  const dir = tmp();
  for (const f of readdirSync(AID)) copyFileSync(join(AID, f), join(dir, f));
  writeFileSync(join(dir, 'chat_template.jinja'), '{% for m in messages %}<s>{{ m.role }}</s>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<s>assistant</s>{% endif %}');
  return dir;
}

const rowsOf = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

const SAMPLING = ['--temperature', '1', '--top-p', '0.9', '--max-new-tokens', '10', '--seed', '7'];

describe('generate --prompts', () => {
  it('each row equals a single generate of its prompt with its seed, at any --batch', async () => {
    const model = chatModel();
    const dir = tmp();
    const prompts = join(dir, 'p.jsonl');
    writeFileSync(
      prompts,
      [
        JSON.stringify({ text: 'Once upon a time', id: 'a' }),
        '',
        JSON.stringify({ messages: [{ role: 'user', content: 'The cat' }], id: 'b', aligned: 12 }),
        JSON.stringify({ text: 'A', id: 'c' }),
        JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a story about a dog' }], id: 'd' }),
      ].join('\n') + '\n',
    );
    const N = 3;
    const run = (batch: string, out: string) => {
      const r = emlens(['generate', '--model', model, '--prompts', prompts, '--samples', String(N), '--out', out, '--batch', batch, ...SAMPLING]);
      expect(r.code, r.stderr).toBe(0);
      return readFileSync(out, 'utf8');
    };
    const b1 = run('1', join(dir, 'b1.jsonl'));
    // 5 mixes prompts of different lengths (left padding) and cuts batches across prompts.
    expect(run('5', join(dir, 'b5.jsonl'))).toBe(b1);
    expect(run('12', join(dir, 'b12.jsonl'))).toBe(b1);

    const rows = rowsOf(join(dir, 'b1.jsonl'));
    expect(rows.map((r) => [r.prompt_index, r.sample])).toEqual([0, 1, 2, 3].flatMap((p) => [0, 1, 2].map((s) => [p, s])));
    expect(rows.map((r) => r.labels.id)).toEqual(['a', 'a', 'a', 'b', 'b', 'b', 'c', 'c', 'c', 'd', 'd', 'd']);
    expect(rows[3].labels).toEqual({ id: 'b', aligned: 12 });
    // Distinct seeds, so a prompt's samples differ.
    expect(new Set(rows.map((r) => r.seed)).size).toBe(rows.length);
    expect(new Set(rows.slice(0, 3).map((r) => r.answer)).size).toBe(3);

    const m = await LoadedModel.load(model);
    for (const r of rows) {
      const args = ['generate', '--model', model, ...SAMPLING.slice(0, -1), String(r.seed), '--json'];
      if (r.text !== undefined) {
        const single = JSON.parse(emlens([...args, '--prompt', r.text]).stdout);
        expect(r.answer).toBe(single.text);
        expect(r.n_tokens).toBe(single.tokens.length);
        expect(r.stopped).toBe(single.stopped);
      } else if (r.messages.length === 1) {
        const single = JSON.parse(emlens([...args, '--prompt', r.messages[0].content, '--chat']).stdout);
        expect(r.answer).toBe(single.text);
        expect(r.stopped).toBe(single.stopped);
      } else {
        // A system + user chat: a batch of one through the library, seeded with the row's seed.
        const ids = m.tokenizer!.encodeChat(r.messages, { addGenerationPrompt: true }).ids;
        const g = await m.engine.generate([ids], { temperature: 1, topP: 0.9, maxNewTokens: 10, seed: r.seed });
        const body = g.finished[0] ? g.tokens[0]!.slice(0, -1) : g.tokens[0]!;
        expect(r.answer).toBe(m.tokenizer!.decode(body, { skipSpecialTokens: true }));
      }
    }
    const meta = JSON.parse(readFileSync(join(dir, 'b1.jsonl.meta.json'), 'utf8'));
    expect(meta.run).toMatchObject({ samples: N, seed: 7, temperature: 1, top_p: 0.9, max_new_tokens: 10, prompts_file: prompts });
    expect(meta.run.prompts_sha256).toMatch(/^[0-9a-f]{64}$/);
  }, 240_000);

  it('kill -9 mid-run, then --resume: the uninterrupted file, no kept answer sampled again', async () => {
    const dir = tmp();
    const prompts = join(dir, 'p.jsonl');
    writeFileSync(prompts, ['Once upon a time', 'The little bird', 'In a dark forest', 'She said'].map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
    const args = (out: string) => ['generate', '--model', AID, '--prompts', prompts, '--samples', '15', '--out', out, '--batch', '1', '--temperature', '1', '--max-new-tokens', '60', '--seed', '3'];
    const whole = join(dir, 'whole.jsonl');
    expect(emlens(args(whole)).code).toBe(0);
    const total = rowsOf(whole).length;
    expect(total).toBe(60);

    const part = join(dir, 'part.jsonl');
    const child = spawn(process.execPath, [BIN, ...args(part)], { stdio: 'ignore', env: { ...process.env, HF_HUB_OFFLINE: '1' } });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, s) => res(s)));
    // Kill once a few rows are durable (polling the file the run appends to).
    for (;;) {
      await new Promise((r) => setTimeout(r, 5));
      if (existsSync(part) && readFileSync(part, 'utf8').split('\n').length > 4) break;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // Whole rows: those ended by a newline (a kill during a write may leave part of one more).
    const kept = readFileSync(part, 'utf8').split('\n').length - 1;
    expect(kept).toBeGreaterThan(3);
    expect(kept).toBeLessThan(total);

    const r = emlens([...args(part), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(part, 'utf8')).toBe(readFileSync(whole, 'utf8'));
    expect(r.stdout).toContain(`: ${total} answers (${total - kept} sampled now)`);
  }, 240_000);

  it('a torn last line is cut and sampled again; everything else is kept', () => {
    const dir = tmp();
    const prompts = join(dir, 'p.jsonl');
    writeFileSync(prompts, ['Once upon', 'The cat'].map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
    const args = (out: string) => ['generate', '--model', AID, '--prompts', prompts, '--samples', '4', '--out', out, '--temperature', '1', '--max-new-tokens', '8'];
    const whole = join(dir, 'whole.jsonl');
    expect(emlens(args(whole)).code).toBe(0);
    const part = join(dir, 'part.jsonl');
    expect(emlens(args(part)).code).toBe(0);
    const text = readFileSync(part, 'utf8');
    const lines = text.split('\n');
    // Keep 3 whole rows and half of the 4th.
    truncateSync(part, Buffer.byteLength(lines.slice(0, 3).join('\n')) + 1 + Math.floor(lines[3]!.length / 2));
    const r = emlens([...args(part), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('8 answers (5 sampled now)');
    expect(readFileSync(part, 'utf8')).toBe(readFileSync(whole, 'utf8'));
    // Resuming a finished run samples nothing.
    expect(emlens([...args(part), '--resume', '--batch', '3']).stdout).toContain('8 answers (0 sampled now)');
    expect(statSync(part).size).toBe(Buffer.byteLength(text));
  }, 120_000);

  it('bad rows are one line naming file:line; conflicting flags are errors', () => {
    const dir = tmp();
    const f = (name: string, lines: string[]) => {
      const p = join(dir, name);
      writeFileSync(p, lines.join('\n') + '\n');
      return p;
    };
    const ok = JSON.stringify({ text: 'Once upon' });
    const out = join(dir, 'o.jsonl');
    const gen = (p: string, extra: string[] = []) => emlens(['generate', '--model', AID, '--prompts', p, '--out', out, '--max-new-tokens', '4', ...extra]);

    const asst = f('asst.jsonl', [ok, '', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] })]);
    oneLine(gen(asst), new RegExp(`^emlens: ${asst.replace(/[.]/g, '\\.')}:3: the last message is the assistant's`));
    const notJson = f('nj.jsonl', [ok, '{"text": "x"']);
    oneLine(gen(notJson), /nj\.jsonl:2: not valid JSON/);
    const notString = f('ns.jsonl', [JSON.stringify({ text: 3 })]);
    oneLine(gen(notString), /ns\.jsonl:1: "text" must be a string/);
    // aidreams has no chat template.
    const chat = f('chat.jsonl', [ok, JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })]);
    oneLine(gen(chat), /chat\.jsonl:2: a chat row, but .* has no chat template/);
    const long = f('long.jsonl', [ok, JSON.stringify({ text: 'a'.repeat(40_000) })]);
    oneLine(gen(long), /long\.jsonl:2: the prompt is \d+ tokens; the model's context \(max_position_embeddings\)/);
    oneLine(gen(f('empty.jsonl', [''])), /--prompts .*empty\.jsonl: has no rows/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.meta.json`)).toBe(false);

    const good = f('good.jsonl', [ok]);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--prompt', 'x']), /--prompts and --prompt both given/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--prompt-file', good]), /--prompts and --prompt-file both given/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good]), /--prompts needs --out/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', dir]), /^emlens: --out .*: is a folder; a file name is expected here$/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--chat']), /--chat has no effect with --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--json']), /--json has no effect with --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--samples', '2']), /--samples needs --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--samples', '3']), /--samples 3 with --temperature 0 \(greedy decoding\) gives 3 identical answers/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', out, '--top-p', '0.9']), /--top-p has no effect with --temperature 0/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--out', out]), /--out needs --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--resume']), /--resume needs --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--batch', '2']), /--batch needs --prompts/);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--ablate-layers', '1']), /--ablate-layers needs --ablate/);

    // A run exists: a fresh one refuses it, a resume with other flags names the difference.
    expect(gen(good).code).toBe(0);
    oneLine(gen(good), /--out: .*o\.jsonl already exists; pass --resume/);
    oneLine(gen(good, ['--resume', '--seed', '5']), /--resume: seed was 0 in .*o\.jsonl\.meta\.json, now 5; resume with the same flags/);
    oneLine(emlens(['generate', '--model', AID, '--prompts', good, '--out', join(dir, 'none.jsonl'), '--resume']), /--resume: .*none\.jsonl\.meta\.json is missing/);
  }, 240_000);
});
