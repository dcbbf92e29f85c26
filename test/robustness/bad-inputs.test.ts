/**
 * Generated bad inputs, run through the real binary (node dist/cli/main.js): the real aidreams260k
 * folder mutated the way a careless tool or an attacker would (garbled config values, broken
 * JSON, tokenizer fields of the wrong kind, truncated and lying safetensors headers), bad flags,
 * bad output paths and command lines too long for the stack. Every case must be a clean refusal:
 * exit 1 or 2, no signal, exactly one stderr line `emlens: ...` naming the file, field or flag,
 * no "internal error", and nothing left behind (no *.tmp, no ONNX Runtime debug log).
 *
 * The spawn timeout is a safety net against hangs (Node's recursive mkdir under /proc spun
 * forever), not a timing assertion.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeDirectionFile } from '../../src/io/directions.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const WORK = mkdtempSync(join(tmpdir(), 'emlens-bad-'));

type Json = Record<string, any>;

interface Case {
  name: string;
  /** argv after the binary; `dir` is the case's own folder. */
  args: (dir: string) => string[];
  setup?: (dir: string) => void;
  /** What the one stderr line must name. */
  names: RegExp;
}

const cases: Case[] = [];
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------------------------
// The model folder, one file replaced.

const AID_FILES = readdirSync(AID);
/** dir/m: aidreams260k with `file` written as `content` (null: left out). */
function modelWith(dir: string, file: string, content: string | Uint8Array | null): string {
  const m = join(dir, 'm');
  mkdirSync(m, { recursive: true });
  for (const f of AID_FILES) if (f !== file) symlinkSync(join(AID, f), join(m, f));
  if (content !== null) writeFileSync(join(m, file), content);
  return m;
}

function inspectCase(name: string, file: string, content: string | Uint8Array | null, names: RegExp): void {
  cases.push({ name, setup: (dir) => void modelWith(dir, file, content), args: (dir) => ['inspect', join(dir, 'm')], names });
}

const config: Json = JSON.parse(readFileSync(join(AID, 'config.json'), 'utf8'));
const configText = readFileSync(join(AID, 'config.json'), 'utf8');

// config.json: values of the wrong kind or out of range, field by field.
const CONFIG_VALUES: [string, unknown[]][] = [
  ['max_position_embeddings', [0, -1, 1.5, '128']],
  ['rms_norm_eps', [-1, 0, 'x', true]],
  ['rope_theta', [0, -10000, '1e4']],
  ['rope_scaling', ['abc', 5, [1], true, { type: 'linear', factor: -2 }, { type: 'linear', factor: 0 }, { type: 'linear' }, { type: 'yarn', factor: 2 }, { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 64 }, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 0 }]],
  ['rope_parameters', ['x', { rope_theta: -1 }]],
  ['eos_token_id', ['2', [1, '2'], -1, 1.5]],
  ['bos_token_id', ['1', [1, 2], -3]],
  ['tie_word_embeddings', ['yes', 1]],
  ['num_hidden_layers', [0, '4', -2]],
  ['hidden_size', [0, 64.5]],
  ['num_attention_heads', [0, 3]],
  ['num_key_value_heads', [3, 0]],
  ['head_dim', [15]],
  ['intermediate_size', [-172]],
  ['vocab_size', [0, 'big']],
  ['model_type', ['gpt2', 5]],
  ['hidden_act', ['relu']],
];
for (const [field, values] of CONFIG_VALUES) {
  for (const v of values) {
    const fieldRe = new RegExp(`config\\.json.*${esc(field)}|${esc(field)}.*config\\.json`);
    inspectCase(`config.json ${field} = ${JSON.stringify(v)}`, 'config.json', JSON.stringify({ ...config, [field]: v }), fieldRe);
  }
}
for (const field of ['num_hidden_layers', 'hidden_size', 'num_attention_heads', 'intermediate_size', 'model_type']) {
  const { [field]: _, ...rest } = config;
  inspectCase(`config.json without ${field}`, 'config.json', JSON.stringify(rest), new RegExp(`config\\.json.*${field}`));
}
// Values that parse but disagree with the tensors: named by the checkpoint and the tensor.
for (const [field, v] of [['vocab_size', 513], ['intermediate_size', 171], ['num_hidden_layers', 5]] as const) {
  inspectCase(`config.json ${field} = ${v} (tensors disagree)`, 'config.json', JSON.stringify({ ...config, [field]: v }), /model\.safetensors: tensor|lacks tensor "model\.layers\.4\./);
}
// config.json as text: not JSON, or JSON that is not an object.
const JSON_TEXTS: [string, string | Uint8Array][] = [
  ['a byte-order mark', `\ufeff${configText}`],
  ['NaN', configText.replace('1e-05', 'NaN')],
  ['Infinity', configText.replace('10000.0', 'Infinity')],
  ['-Infinity', configText.replace('10000.0', '-Infinity')],
  ['cut in half', configText.slice(0, configText.length >> 1)],
  ['empty', ''],
  ['a trailing comma', configText.replace(/\n}\s*$/, ',\n}')],
  ['a list', '[1, 2]'],
  ['null', 'null'],
  ['a number', '5'],
  ['bytes that are not UTF-8', Buffer.concat([Buffer.from([0xff, 0xfe, 0x00]), Buffer.from(configText)])],
];
for (const [what, text] of JSON_TEXTS) inspectCase(`config.json: ${what}`, 'config.json', text, /config\.json/);
inspectCase('no config.json', 'config.json', null, /config\.json/);

// generation_config.json and tokenizer_config.json.
const gen: Json = JSON.parse(readFileSync(join(AID, 'generation_config.json'), 'utf8'));
inspectCase('generation_config.json eos_token_id = "2"', 'generation_config.json', JSON.stringify({ ...gen, eos_token_id: '2' }), /generation_config\.json.*eos_token_id/);
inspectCase('generation_config.json bos_token_id = [1, 2]', 'generation_config.json', JSON.stringify({ ...gen, bos_token_id: [1, 2] }), /generation_config\.json.*bos_token_id/);
inspectCase('generation_config.json cut in half', 'generation_config.json', JSON.stringify(gen).slice(0, 10), /generation_config\.json/);
const tokCfg: Json = JSON.parse(readFileSync(join(AID, 'tokenizer_config.json'), 'utf8'));
inspectCase('tokenizer_config.json cut in half', 'tokenizer_config.json', JSON.stringify(tokCfg).slice(0, 20), /tokenizer_config\.json/);
inspectCase('tokenizer_config.json chat_template = 5', 'tokenizer_config.json', JSON.stringify({ ...tokCfg, chat_template: 5 }), /tokenizer_config\.json.*chat_template/);
inspectCase('tokenizer_config.json add_bos_token = "yes"', 'tokenizer_config.json', JSON.stringify({ ...tokCfg, add_bos_token: 'yes' }), /tokenizer_config\.json.*add_bos_token/);

// tokenizer.json: fields of the wrong kind.
const tokenizer: Json = JSON.parse(readFileSync(join(AID, 'tokenizer.json'), 'utf8'));
const TOKENIZER_MUTATIONS: [string, (t: Json) => void, string][] = [
  ['model.type "Foo"', (t) => (t.model.type = 'Foo'), 'model.type'],
  ['model.type 5', (t) => (t.model.type = 5), 'model.type'],
  ['a string id in model.vocab', (t) => (t.model.vocab.a = 'x'), 'model.vocab'],
  ['every id in model.vocab a string', (t) => (t.model.vocab = Object.fromEntries(Object.entries(t.model.vocab).map(([k, v]) => [k, String(v)]))), 'model.vocab'],
  ['a negative id', (t) => (t.model.vocab.a = -1), 'model.vocab'],
  ['a fractional id', (t) => (t.model.vocab.a = 2.5), 'model.vocab'],
  ['an id past vocab_size', (t) => (t.model.vocab.a = 99999), 'vocab_size'],
  ['an added token past vocab_size', (t) => t.added_tokens.push({ id: 600, content: '<extra>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false }), 'vocab_size'],
  ['two tokens with one id', (t) => (t.model.vocab.a = t.model.vocab.b), 'model.vocab'],
  ['model.vocab a list for BPE', (t) => (t.model.vocab = [['a', 0]]), 'model.vocab'],
  ['no model.vocab', (t) => delete t.model.vocab, 'model.vocab'],
  ['model.merges 5', (t) => (t.model.merges = 5), 'model.merges'],
  ['a merge 7', (t) => (t.model.merges[3] = 7), 'model.merges'],
  ['a merge without a space', (t) => (t.model.merges[0] = 'ab'), 'model.merges'],
  ['model.unk_token 5', (t) => (t.model.unk_token = 5), 'model.unk_token'],
  ['model 5', (t) => (t.model = 5), 'model'],
  ['no model', (t) => delete t.model, 'model'],
  ['added_tokens 5', (t) => (t.added_tokens = 5), 'added_tokens'],
  ['added_tokens[0].id "x"', (t) => (t.added_tokens[0].id = 'x'), 'added_tokens'],
  ['added_tokens[0].content 5', (t) => (t.added_tokens[0].content = 5), 'added_tokens'],
  ['normalizer 7', (t) => (t.normalizer = 7), 'normalizer'],
  ['decoder of an unknown type', (t) => (t.decoder = { type: 'Bogus' }), 'Decoder'],
  ['pre_tokenizer "x"', (t) => (t.pre_tokenizer = 'x'), 'pre_tokenizer'],
  ['post_processor of an unknown type', (t) => (t.post_processor = { type: 'Bogus' }), 'PostProcessor'],
];
for (const [what, mutate, field] of TOKENIZER_MUTATIONS) {
  const t = structuredClone(tokenizer);
  mutate(t);
  inspectCase(`tokenizer.json: ${what}`, 'tokenizer.json', JSON.stringify(t), new RegExp(`tokenizer\\.json.*${esc(field)}`));
}
const tokText = JSON.stringify(tokenizer);
inspectCase('tokenizer.json cut in half', 'tokenizer.json', tokText.slice(0, tokText.length >> 1), /tokenizer\.json/);
inspectCase('tokenizer.json a list', 'tokenizer.json', '[]', /tokenizer\.json/);
inspectCase('tokenizer.json with a byte-order mark', 'tokenizer.json', `\ufeff${tokText}`, /tokenizer\.json/);

// model.safetensors: truncated, garbled and lying headers.
const st = readFileSync(join(AID, 'model.safetensors'));
const hlen = Number(st.readBigUInt64LE(0));
const header: Json = JSON.parse(st.subarray(8, 8 + hlen).toString('utf8'));
const data = st.subarray(8 + hlen);
const tensorNames = Object.keys(header).filter((k) => k !== '__metadata__');
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};
/** A file with header bytes `h` (length prefix written to match unless given) and the real data. */
const withHeader = (h: string | Buffer, len?: bigint) => {
  const hb = typeof h === 'string' ? Buffer.from(h, 'utf8') : h;
  return Buffer.concat([u64(len ?? BigInt(hb.length)), hb, data]);
};
const mutateHeader = (f: (h: Json) => void) => {
  const h = structuredClone(header);
  f(h);
  return withHeader(JSON.stringify(h));
};
const first = tensorNames[0]!;
const SAFETENSORS: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['4 bytes', st.subarray(0, 4)],
  ['only the length', st.subarray(0, 8)],
  ['cut inside the header', st.subarray(0, 8 + (hlen >> 1))],
  ['cut in the data', st.subarray(0, st.length - 100)],
  ['header length 2^40', withHeader(st.subarray(8, 8 + hlen), 2n ** 40n)],
  ['header length 2^63', withHeader(st.subarray(8, 8 + hlen), 2n ** 63n)],
  ['header length 0', withHeader(Buffer.alloc(0))],
  ['header of garbage bytes', withHeader(Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % 256)))],
  ['header a list', withHeader('[1, 2]')],
  ['header null', withHeader('null')],
  ['header not UTF-8', withHeader(Buffer.concat([Buffer.from('{"a'), Buffer.from([0xff, 0xfe]), Buffer.from('":1}')]))],
  ['unknown dtype', mutateHeader((h) => (h[first].dtype = 'F99'))],
  ['dtype a number', mutateHeader((h) => (h[first].dtype = 7))],
  ['negative shape', mutateHeader((h) => (h[first].shape = [-1, 64]))],
  ['shape of strings', mutateHeader((h) => (h[first].shape = ['512', '64']))],
  ['offsets reversed', mutateHeader((h) => (h[first].data_offsets = [...h[first].data_offsets].reverse()))],
  ['offsets past the end', mutateHeader((h) => (h[first].data_offsets = [0, data.length + 4096]))],
  ['offsets of the wrong size', mutateHeader((h) => (h[first].data_offsets = [h[first].data_offsets[0], h[first].data_offsets[0] + 4]))],
  ['offsets missing', mutateHeader((h) => delete h[first].data_offsets)],
  ['a tensor missing', mutateHeader((h) => delete h['model.norm.weight'])],
  ['a tensor 5', mutateHeader((h) => (h[first] = 5))],
  ['__metadata__ 5', mutateHeader((h) => (h.__metadata__ = 5))],
  ['__metadata__ with a number value', mutateHeader((h) => (h.__metadata__ = { format: 1 }))],
];
for (const [what, bytes] of SAFETENSORS) inspectCase(`model.safetensors: ${what}`, 'model.safetensors', bytes, what === 'a tensor missing' ? /model\.safetensors: bytes \[\d+, \d+\) of the data section belong to no tensor/ : /model\.safetensors/);
inspectCase('no model.safetensors', 'model.safetensors', null, /safetensors/);
cases.push({
  name: 'model.safetensors is a folder',
  setup: (dir) => mkdirSync(join(modelWith(dir, 'model.safetensors', null), 'model.safetensors')),
  args: (dir) => ['inspect', join(dir, 'm')],
  names: /model\.safetensors/,
});
cases.push({
  name: 'model.safetensors a dangling link',
  setup: (dir) => symlinkSync(join(dir, 'nowhere'), join(modelWith(dir, 'model.safetensors', null), 'model.safetensors')),
  args: (dir) => ['inspect', join(dir, 'm')],
  names: /model\.safetensors/,
});
cases.push({
  name: 'only a garbage safetensors index',
  setup: (dir) => writeFileSync(join(modelWith(dir, 'model.safetensors', null), 'model.safetensors.index.json'), '{"weight_map": 5}'),
  args: (dir) => ['inspect', join(dir, 'm')],
  names: /model\.safetensors\.index\.json/,
});

// ---------------------------------------------------------------------------------------------
// Flags.

const gen1 = (...extra: string[]) => (_dir: string) => ['generate', '--model', AID, '--max-new-tokens', '1', ...extra];
const FLAGS: [string, (dir: string) => string[], RegExp, ((dir: string) => void)?][] = [
  ['--max-new-tokens -1', gen1('--prompt', 'x', '--max-new-tokens', '-1'), /--max-new-tokens/],
  ['--max-new-tokens abc', gen1('--prompt', 'x', '--max-new-tokens', 'abc'), /--max-new-tokens/],
  ['--max-new-tokens 1e3', gen1('--prompt', 'x', '--max-new-tokens', '1e3'), /--max-new-tokens/],
  ['--temperature -1', gen1('--prompt', 'x', '--temperature', '-1'), /--temperature/],
  ['--temperature nan', gen1('--prompt', 'x', '--temperature', 'nan'), /--temperature/],
  ['--top-p 0', gen1('--prompt', 'x', '--top-p', '0'), /--top-p/],
  ['--top-p 2', gen1('--prompt', 'x', '--top-p', '2'), /--top-p/],
  ['--seed x', gen1('--prompt', 'x', '--seed', 'x'), /--seed/],
  ['--layer without --steer', gen1('--prompt', 'x', '--layer', '1'), /--layer/],
  ['--steer without --layer', gen1('--prompt', 'x', '--steer', 'x.safetensors'), /--steer/],
  ['--steer a missing file', gen1('--prompt', 'x', '--steer', '/no/such.safetensors', '--layer', '1', '--scale', '1'), /no\/such\.safetensors/],
  ['--ablate-layers 1,x', gen1('--prompt', 'x', '--ablate-layers', '1,x'), /--ablate-layers/],
  ['--prompt and --prompt-file', gen1('--prompt', 'x', '--prompt-file', 'p.txt'), /--prompt-file/],
  ['neither --prompt nor --prompt-file', gen1(), /--prompt/],
  ['--prompt-file missing', gen1('--prompt-file', '/no/such/prompt.txt'), /--prompt-file \/no\/such\/prompt\.txt/],
  ['--prompt-file a folder', (dir) => gen1('--prompt-file', dir)(dir), /--prompt-file/],
  ['--prompt-file not UTF-8', (dir) => gen1('--prompt-file', join(dir, 'p.txt'))(dir), /--prompt-file.*UTF-8/, (dir) => writeFileSync(join(dir, 'p.txt'), Buffer.from([0x41, 0xff, 0xfe, 0x42]))],
  ['--prompt without a value', gen1('--prompt'), /--prompt/],
  ['a misspelt flag', gen1('--promt', 'x'), /--promt/],
  ['an unknown command', () => ['generat'], /generat/],
  ['--chat without a chat template', gen1('--prompt', 'x', '--chat'), /chat template/],
  ['--model missing', () => ['generate', '--model', '/no/such/model', '--prompt', 'x'], /\/no\/such\/model/],
  ['--model a file', () => ['generate', '--model', join(AID, 'config.json'), '--prompt', 'x'], /config\.json/],
  ['inspect with two models', () => ['inspect', AID, AID], /inspect/],
  ['inspect without a model', () => ['inspect'], /model/],
  ['extract --layers x', () => ['extract', '--model', AID, '--data', 'd.jsonl', '--out', 'o', '--layers', 'x'], /--layers/],
  ['extract --hook bogus', () => ['extract', '--model', AID, '--data', 'd.jsonl', '--out', 'o', '--hook', 'bogus'], /--hook/],
  ['extract --batch-tokens 0', () => ['extract', '--model', AID, '--data', 'd.jsonl', '--out', 'o', '--batch-tokens', '0'], /--batch-tokens/],
];
for (const [name, args, names, setup] of FLAGS) cases.push({ name: `flag: ${name}`, args, names, setup });

// ---------------------------------------------------------------------------------------------
// Output paths: a file where a folder goes, a folder where a file goes, impossible parents.

const dirsAB = (dir: string) => {
  const v = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  writeDirectionFile(join(dir, 'a.safetensors'), new Map([[1, v]]), {});
  writeDirectionFile(join(dir, 'b.safetensors'), new Map([[1, Float32Array.from(v, (x) => -x)]]), {});
  writeFileSync(join(dir, 'afile'), 'x');
  mkdirSync(join(dir, 'adir'));
};
const compare = (out: (dir: string) => string) => (dir: string) => ['compare', join(dir, 'a.safetensors'), join(dir, 'b.safetensors'), '--out', out(dir)];
const OUTPUTS: [string, (dir: string) => string[], RegExp][] = [
  ['compare --out an existing folder', compare((d) => join(d, 'adir')), /--out .*adir: is a folder/],
  ['compare --out under a file', compare((d) => join(d, 'afile', 'r.html')), /--out .*afile.* is a file/],
  ['compare --out deep under a file', compare((d) => join(d, 'afile', 'x', 'y', 'r.html')), /afile is a file/],
  ['compare --out in /proc', compare(() => '/proc/emlens-r.html'), /\/proc\/emlens-r\.html/],
  ['compare --out under /proc/nope', compare(() => '/proc/emlens-nope/r.html'), /\/proc\/emlens-nope/],
  ['compare --out in /sys', compare(() => '/sys/emlens-r.html'), /\/sys\/emlens-r\.html/],
  ['compare --out under /dev/null', compare(() => '/dev/null/r.html'), /\/dev\/null/],
  ['compare --out a 5000-character name', compare((d) => join(d, 'x'.repeat(5000))), /xxxx/],
  ['organism build --out a file', (d) => ['organism', 'build', '--out', join(d, 'afile')], /--out .*afile.* is a file/],
  ['organism build --out under a file', (d) => ['organism', 'build', '--out', join(d, 'afile', 'o')], /afile is a file/],
  ['organism build --out under /proc', () => ['organism', 'build', '--out', '/proc/emlens-nope'], /\/proc\/emlens-nope/],
  ['demo --out a file', (d) => ['demo', '--out', join(d, 'afile')], /--out .*afile.* is a file/],
  ['extract --out a file', (d) => ['extract', '--model', AID, '--data', join(d, 'a.safetensors'), '--out', join(d, 'afile')], /--out .*afile.* is a file/],
  ['train --out a folder', (d) => ['train', '--model', AID, '--data', join(d, 'afile'), '--layer', '1', '--out', join(d, 'adir')], /--out .*adir: is a folder/],
  ['project --write-csv an existing folder', (d) => ['project', '--acts', join(d, 'adir'), '--direction', join(d, 'a.safetensors'), '--out', join(d, 'p.html'), '--write-csv', join(d, 'adir')], /--write-csv .*adir: is a folder/],
  ['measure --out under a file', (d) => ['measure', '--model', AID, '--solutions', join(d, 'a.safetensors'), '--data', join(d, 'afile'), '--out', join(d, 'afile', 'r.html')], /afile is a file/],
];
for (const [name, args, names] of OUTPUTS) cases.push({ name: `output: ${name}`, args, names, setup: dirsAB });

// ---------------------------------------------------------------------------------------------
// Command lines too long for ONNX Runtime's telemetry scan (SIGSEGV before the fix).

const LONG = 'a'.repeat(40_000);
cases.push({ name: 'huge: --prompt of 40 kB', args: () => ['generate', '--model', AID, '--prompt', LONG], names: /--prompt: .*40001 tokens.*max_position_embeddings/ });
cases.push({
  name: 'huge: --prompt-file of 40 kB',
  setup: (dir) => writeFileSync(join(dir, 'p.txt'), LONG),
  args: (dir) => ['generate', '--model', AID, '--prompt-file', join(dir, 'p.txt')],
  names: /--prompt-file .*p\.txt: .*40001 tokens/,
});
cases.push({
  name: 'huge: --where of 45 kB that does not parse',
  setup: (dir) => writeFileSync(join(dir, 'd.jsonl'), '{"text": "hello there", "aligned": 10}\n'),
  args: (dir) => ['extract', '--model', AID, '--data', join(dir, 'd.jsonl'), '--out', join(dir, 'o'), '--where', `${'aligned<=30 && '.repeat(3000)}&&`],
  names: /--where/,
});
cases.push({ name: 'huge: --model of 40 kB', args: () => ['inspect', `/tmp/${LONG}`], names: /aaaa/ });
cases.push({ name: 'huge: an unknown flag of 40 kB', args: () => ['inspect', AID, `--${LONG}`], names: /unknown option/ });

// ---------------------------------------------------------------------------------------------

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function run(args: string[], cwd: string): Promise<Outcome> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      // TMPDIR here: what a run leaves in its temp folder is checked too.
      env: { ...process.env, HF_HUB_OFFLINE: '1', EMLENS_CACHE: join(cwd, 'cache'), TMPDIR: join(cwd, 'tmp') },
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 120_000,
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('close', (code, signal) => done({ code, signal, stderr }));
  });
}

function leftovers(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      // ONNX Runtime's telemetry wrote TMPDIR/mat-debug-PID.log on every run before it was turned off.
      if (/\.tmp$|^mat-debug-/.test(e.name)) out.push(join(d, e.name));
      if (e.isDirectory() && !e.isSymbolicLink()) walk(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

describe('generated bad inputs: every one a clean one-line refusal', () => {
  it('has enough cases', () => expect(cases.length).toBeGreaterThanOrEqual(150));

  it.concurrent.each(cases.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const dir = join(WORK, String(i));
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    c.setup?.(dir);
    const r = await run(c.args(dir), dir);
    expect(r.signal, r.stderr).toBeNull();
    expect([1, 2], r.stderr).toContain(r.code);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^emlens: /);
    expect(lines[0]).not.toMatch(/internal error/);
    expect(lines[0]).toMatch(c.names);
    expect(leftovers(dir)).toEqual([]);
  });
});
