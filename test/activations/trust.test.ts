/**
 * What `emlens extract` leaves behind and records: a bad row changes nothing on disk (no state
 * that blocks the next run, an earlier extraction kept under --overwrite), meta.json names the
 * pool actually used and absolute input paths, --where-file, and one warning listing the words a
 * word-level tokenizer maps to <unk>. Real processes of the built CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { wordLevelUnknowns } from '../../src/model/wordlevel.js';
import { readSafetensorsHeader } from '../../src/io/safetensors/index.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, WORDS, writeChatDataset } from '../helpers/datasets.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-trust-'));
const cli = (args: string[], cwd?: string) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd });

function tinyModel(): string {
  const dir = tmp();
  writeTinyCheckpoint(dir, 'llama');
  addTokenizer(dir);
  return dir;
}

const chat = (u: string, a: string, labels: Record<string, unknown> = {}) =>
  JSON.stringify({ messages: [{ role: 'user', content: u }, { role: 'assistant', content: a }], ...labels });

describe('a bad row leaves the output folder as it was', () => {
  it('no .partial state blocks the next run, and --overwrite keeps the earlier extraction', () => {
    const dir = tinyModel();
    const data = join(dir, 'd.jsonl');
    // Line 3 has 14 tokens, more than --max-tokens 10: found only by tokenizing.
    writeFileSync(data, [chat('the a', 'you i'), chat('help', 'kind'), chat('the a you i we', 'it is are be to')].join('\n'));
    const out = join(dir, 'o');
    const args = ['extract', '--model', dir, '--data', data, '--out', out, '--max-tokens', '10', '--chunk-rows', '1'];
    const r = cli(args);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`emlens: ${data}:3: row has 14 tokens, more than --max-tokens 10`]);
    expect(existsSync(join(out, '.partial'))).toBe(false);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);

    // The row fixed, the same command runs without --resume.
    writeFileSync(data, [chat('the a', 'you i'), chat('help', 'kind'), chat('the a', 'it is')].join('\n'));
    const ok = cli(args);
    expect(ok.status, ok.stderr).toBe(0);
    const before = new Map(readdirSync(out).map((f) => [f, readFileSync(join(out, f))]));
    expect([...before.keys()].sort()).toEqual(['activations.safetensors', 'meta.json', 'rows.jsonl']);

    // A bad row under --overwrite: the earlier extraction is still there, byte for byte.
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, [chat('the', 'a'), chat('the a you i we it', 'is are be to of')].join('\n'));
    const over = cli(['extract', '--model', dir, '--data', bad, '--out', out, '--max-tokens', '10', '--overwrite']);
    expect(over.status).toBe(1);
    expect(over.stderr).toMatch(/bad\.jsonl:2: row has 15 tokens/);
    expect(readdirSync(out).sort()).toEqual([...before.keys()].sort());
    for (const [f, bytes] of before) expect(readFileSync(join(out, f)).equals(bytes), f).toBe(true);
    const both = cli([...args, '--overwrite', '--resume']);
    expect(both.status).toBe(1);
    expect(both.stderr.trim().split('\n')).toEqual(['emlens: --resume and --overwrite both given: continue the interrupted extraction, or start over, not both']);
    for (const [f, bytes] of before) expect(readFileSync(join(out, f)).equals(bytes), f).toBe(true);
  });
});

describe('provenance', () => {
  it('meta.json and the safetensors metadata name the pool used and absolute input paths', () => {
    const dir = tinyModel();
    writeChatDataset(dir, 'chat.jsonl', 5, 1);
    writeFileSync(join(dir, 'text.jsonl'), ['the a you', 'we it is'].map((t) => JSON.stringify({ text: t })).join('\n'));
    // Relative paths, resolved against the working directory.
    const run = (data: string, out: string, extra: string[] = []) => cli(['extract', '--model', '.', '--data', data, '--out', out, ...extra], dir);
    const cases: [string, string, string[], string][] = [
      // './NAME': a bare NAME would go to activations/NAME.
      ['chat.jsonl', './c', [], 'response-mean'],
      ['text.jsonl', './t', [], 'mean'],
      ['chat.jsonl', './l', ['--pool', 'last'], 'last'],
    ];
    for (const [data, out, extra, pool] of cases) {
      const r = run(data, out, extra);
      expect(r.status, r.stderr).toBe(0);
      const meta = JSON.parse(readFileSync(join(dir, out, 'meta.json'), 'utf8'));
      expect(meta.pool).toBe(pool);
      expect(meta.dataset.file).toBe(join(dir, data));
      expect(meta.model.folder).toBe(dir);
      expect(meta.model.source).toBe('.');
      const st = readSafetensorsHeader(join(dir, out, 'activations.safetensors')).metadata;
      expect(st.pool).toBe(pool);
      expect(st.dataset).toBe(join(dir, data));
      expect(r.stdout).toMatch(new RegExp(`pool ${pool},`));
    }
  });

  it('chat and text rows without --pool are an error (their defaults differ)', () => {
    const dir = tinyModel();
    const data = join(dir, 'mixed.jsonl');
    writeFileSync(data, [chat('the', 'a'), JSON.stringify({ text: 'you i' })].join('\n'));
    const r = cli(['extract', '--model', dir, '--data', data, '--out', join(dir, 'o')]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `emlens: ${data}: mixes chat rows (line 1) and text rows (line 2), whose default pools differ (response-mean, mean); pass --pool mean or --pool last`,
    ]);
    const ok = cli(['extract', '--model', dir, '--data', data, '--out', join(dir, 'o'), '--pool', 'mean']);
    expect(ok.status, ok.stderr).toBe(0);
  });
});

describe('--where-file', () => {
  it('reads a long expression (over 30 kB) from a file and selects what the same filter selects', () => {
    const dir = tinyModel();
    const data = join(dir, 'd.jsonl');
    const rows = Array.from({ length: 40 }, (_, i) => ({ id: i * 7, domain: i % 3 ? 'medical' : 'finance' }));
    writeFileSync(data, rows.map((l, i) => chat(WORDS[i % WORDS.length]!, WORDS[(i * 5) % WORDS.length]!, l)).join('\n'));
    // ids 0, 14, 28, … listed among 6000 others.
    const ids = Array.from({ length: 6000 }, (_, k) => 100_000 + k);
    for (let i = 0; i < 280; i += 14) ids.push(i);
    const expr = `domain == 'medical' && id in (${ids.join(', ')})\n`;
    expect(expr.length).toBeGreaterThan(30_000);
    const file = join(dir, 'where.txt');
    writeFileSync(file, expr);
    const out = join(dir, 'o');
    const r = cli(['extract', '--model', dir, '--data', data, '--out', out, '--where-file', file]);
    expect(r.status, r.stderr).toBe(0);
    const want = rows.map((l, i) => ({ ...l, line: i + 1 })).filter((l) => l.domain === 'medical' && l.id % 14 === 0);
    expect(want.length).toBeGreaterThan(5);
    const got = readFileSync(join(out, 'rows.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(got.map((g) => g.line)).toEqual(want.map((w) => w.line));
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
    expect(meta.dataset.selection.where).toBe(expr.trim());
    expect(meta.dataset.selection.where_file).toBe(file);
  });

  it('with --where too, empty, missing or bad: one line naming the flag', () => {
    const dir = tinyModel();
    const data = writeChatDataset(dir, 'd.jsonl', 3, 2);
    const w = join(dir, 'w.txt');
    writeFileSync(w, "domain == 'medical'");
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '\n');
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, 'aligned <');
    const base = ['extract', '--model', dir, '--data', data, '--out', join(dir, 'o')];
    const cases: [string[], string][] = [
      [['--where-file', w, '--where', 'aligned < 3'], 'emlens: --where and --where-file both given; use one'],
      [['--where-file', empty], `emlens: --where-file ${empty}: is empty`],
      [['--where-file', join(dir, 'nope.txt')], `emlens: --where-file ${join(dir, 'nope.txt')}: no such file`],
      [['--where-file', bad], `emlens: --where-file ${bad}: `],
    ];
    for (const [extra, line] of cases) {
      const r = cli([...base, ...extra]);
      expect(r.status, extra.join(' ')).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]!.startsWith(line), lines[0]).toBe(true);
    }
    expect(existsSync(join(dir, 'o'))).toBe(false);
  });
});

describe('words outside a word-level vocabulary', () => {
  it('the finder lists exactly the words the tokenizer itself encodes as <unk>', async () => {
    const dir = tinyModel();
    const tok = await TextTokenizer.load(dir);
    const unk = wordLevelUnknowns(dir)!;
    expect(unk.unk).toBe('<unk>');
    const text = '<|user|> the Doctor said hello<|assistant|> , rest  water! the hello </s>';
    const words = text.replace(/<\|user\|>|<\|assistant\|>|<\/s>/g, ' ').split(/\s+/).filter(Boolean);
    // Independently: a word is unknown when the real tokenizer encodes it alone as <unk>.
    const want = [...new Set(words.filter((w) => tok.encode(w, { addSpecialTokens: false }).join() === String(unk.unkId)))];
    expect(want).toEqual(['Doctor', 'said', 'hello', ',', 'water!']);
    expect(unk.find(text)).toEqual(want);
    const unkCount = tok.encode(text, { addSpecialTokens: false }).filter((id) => id === unk.unkId).length;
    expect(unkCount).toBe(words.filter((w) => want.includes(w)).length);
    // Not a word-level tokenizer: nothing to report.
    expect(wordLevelUnknowns(resolve(ROOT, '../shared/models/aidreams260k'))).toBeNull();
  });

  it('extract warns once, naming the words and rows, and still extracts', () => {
    const dir = tinyModel();
    const data = join(dir, 'd.jsonl');
    writeFileSync(data, [chat('the a', 'you i'), chat('Hello there', 'help'), chat('the', 'kind Hello'), chat('we', 'xyzzy')].join('\n'));
    const r = cli(['extract', '--model', dir, '--data', data, '--out', join(dir, 'o')]);
    expect(r.status, r.stderr).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('emlens: warning:'));
    expect(warnings).toEqual([
      `emlens: warning: ${data}: 3 words outside the vocabulary of ${dir} encode as <unk>, in 3 rows (first: line 2): "Hello", "there", "xyzzy"`,
    ]);
    const clean = join(dir, 'clean.jsonl');
    writeFileSync(clean, [chat('the a', 'you i')].join('\n'));
    const c = cli(['extract', '--model', dir, '--data', clean, '--out', join(dir, 'c')]);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).not.toMatch(/warning/);
  });
});
