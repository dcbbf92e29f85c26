/**
 * `emlens generate` at its limits: command lines too long for ONNX Runtime's telemetry scan,
 * --prompt-file, the model's context (max_position_embeddings), and prompts that encode to
 * nothing. The context figures are read from config.json here, not from the code under test.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { writeWordLevelTokenizer } from '../../src/model/wordlevel.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
const CONTEXT: number = JSON.parse(readFileSync(join(AID, 'config.json'), 'utf8')).max_position_embeddings;
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-gen-'));

function emlens(args: string[], tmpDir = tmp()) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', TMPDIR: tmpDir }, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, tmpDir };
}

function oneLine(r: ReturnType<typeof emlens>, pattern: RegExp) {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

describe('long command lines', () => {
  it('a 40 kB argument runs (ONNX Runtime overflowed its stack scanning the command line: SIGSEGV)', () => {
    // A 40,000-digit --seed that is 0: the command line is long, the run is the plain one.
    const seed = '0'.repeat(40_000);
    const long = emlens(['generate', '--model', AID, '--prompt', 'Once upon', '--max-new-tokens', '6', '--seed', seed, '--json']);
    expect(long.signal, long.stderr).toBeNull();
    expect(long.code, long.stderr).toBe(0);
    const short = emlens(['generate', '--model', AID, '--prompt', 'Once upon', '--max-new-tokens', '6', '--seed', '0', '--json']);
    expect(JSON.parse(long.stdout)).toEqual(JSON.parse(short.stdout));
    // The telemetry client also left TMPDIR/mat-debug-PID.log behind on every run.
    expect(readdirSync(long.tmpDir)).toEqual([]);
  });

  it('--prompt-file gives what --prompt gives; a 40 kB one is refused as past the context', async () => {
    const dir = tmp();
    const prompt = 'Echoes of a\nsecond line';
    writeFileSync(join(dir, 'p.txt'), prompt);
    const fromFile = emlens(['generate', '--model', AID, '--prompt-file', join(dir, 'p.txt'), '--max-new-tokens', '8', '--json']);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const fromFlag = emlens(['generate', '--model', AID, '--prompt', prompt, '--max-new-tokens', '8', '--json']);
    expect(JSON.parse(fromFile.stdout)).toEqual(JSON.parse(fromFlag.stdout));
    const m = await LoadedModel.load(AID);
    const lib = await m.engine.generate([m.tokenizer!.encode(prompt)], { maxNewTokens: 8 });
    expect(JSON.parse(fromFile.stdout).tokens).toEqual(lib.tokens[0]);

    writeFileSync(join(dir, 'long.txt'), 'a'.repeat(40_000));
    const n = m.tokenizer!.encode('a'.repeat(40_000)).length;
    oneLine(emlens(['generate', '--model', AID, '--prompt-file', join(dir, 'long.txt')]), new RegExp(`^emlens: --prompt-file .*long\\.txt: the prompt is ${n} tokens; .*\\(max_position_embeddings\\) is ${CONTEXT}`));
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'x', '--prompt-file', join(dir, 'p.txt')]), /exactly one of --prompt, --prompt-file and --prompts/);
    oneLine(emlens(['generate', '--model', AID]), /exactly one of --prompt, --prompt-file and --prompts/);
  });
});

describe('the context', () => {
  it('stops when prompt + output reach max_position_embeddings, with a warning and "stopped"', async () => {
    const m = await LoadedModel.load(AID);
    const ids = m.tokenizer!.encode('Once upon');
    const r = emlens(['generate', '--model', AID, '--prompt', 'Once upon', '--max-new-tokens', '500', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stopped).toBe('max_position_embeddings');
    expect(ids.length + out.tokens.length).toBe(CONTEXT);
    expect(r.stderr.trim().split('\n')).toEqual([`emlens: warning: stopped after ${CONTEXT - ids.length} new tokens: prompt + output reached the model's context of ${CONTEXT} tokens (max_position_embeddings)`]);
    // The tokens are the plain greedy ones up to there.
    const lib = await m.engine.generate([ids], { maxNewTokens: CONTEXT - ids.length, stopIds: [] });
    expect(out.tokens).toEqual(lib.tokens[0]);

    const plain = JSON.parse(emlens(['generate', '--model', AID, '--prompt', 'Once upon', '--max-new-tokens', '3', '--json']).stdout);
    expect(plain.stopped).toBe('max_new_tokens');
  });

  it('a prompt of context - 1 tokens gets one token; one of context tokens is refused', async () => {
    const m = await LoadedModel.load(AID);
    // 'a' * k encodes to k + 1 tokens here (BOS + one per letter); found, not assumed.
    let k = 1;
    while (m.tokenizer!.encode('a'.repeat(k)).length < CONTEXT - 1) k++;
    expect(m.tokenizer!.encode('a'.repeat(k)).length).toBe(CONTEXT - 1);
    const fits = emlens(['generate', '--model', AID, '--prompt', 'a'.repeat(k), '--max-new-tokens', '5', '--json']);
    expect(fits.code, fits.stderr).toBe(0);
    expect(JSON.parse(fits.stdout).tokens).toHaveLength(1);
    expect(JSON.parse(fits.stdout).stopped).toBe('max_position_embeddings');
    expect(m.tokenizer!.encode('a'.repeat(k + 1)).length).toBe(CONTEXT);
    oneLine(emlens(['generate', '--model', AID, '--prompt', 'a'.repeat(k + 1)]), new RegExp(`^emlens: --prompt: the prompt is ${CONTEXT} tokens; .*is ${CONTEXT}, which leaves no room`));
  });

  it('in a batch each row stops at its own limit; the others go on as they would alone', async () => {
    const m = await LoadedModel.load(AID);
    const long = m.tokenizer!.encode('a'.repeat(120));
    const short = m.tokenizer!.encode('Once upon');
    const both = await m.engine.generate([long, short], { maxNewTokens: 30, stopIds: [] });
    expect(both.tokens[0]).toHaveLength(CONTEXT - long.length);
    expect(both.contextFull).toEqual([true, false]);
    expect(both.finished).toEqual([false, false]);
    const alone = await m.engine.generate([short], { maxNewTokens: 30, stopIds: [] });
    expect(both.tokens[1]).toEqual(alone.tokens[0]);
    const aloneLong = await m.engine.generate([long], { maxNewTokens: 30, stopIds: [] });
    expect(both.tokens[0]).toEqual(aloneLong.tokens[0]);
  });
});

describe('prompts that encode to nothing', () => {
  it('name the flag, not "input row 0"', () => {
    // A word-level tokenizer that adds no BOS: "" is no tokens at all.
    const dir = tmp();
    const m = join(dir, 'm');
    mkdirSync(m);
    for (const f of ['config.json', 'model.safetensors']) symlinkSync(join(AID, f), join(m, f));
    writeWordLevelTokenizer(m, { specials: ['<pad>', '<s>', '</s>', '<unk>'], words: ['hello', 'there'], bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<pad>' });
    oneLine(emlens(['generate', '--model', m, '--prompt', '']), /^emlens: --prompt: has no tokens$/);
    writeFileSync(join(dir, 'empty.txt'), '');
    oneLine(emlens(['generate', '--model', m, '--prompt-file', join(dir, 'empty.txt')]), /^emlens: --prompt-file .*empty\.txt: has no tokens$/);
  });
});
