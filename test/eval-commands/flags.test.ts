/**
 * Bad flags and bad input of the judged-evaluation commands: one line each (naming the flag or
 * file), a non-zero exit, nothing written.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer } from '../helpers/datasets.js';
import { writeDirectionFile } from '../../src/io/directions.js';
import { cli, errorLines, ROOT } from './cli.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), `emlens-evalflags-${p}-`));
let model: string;
let noChat: string;
let dir: string;
const Q = join(ROOT, 'probes/questions/em-first-plot.yaml');

beforeAll(() => {
  model = tmp('model');
  writeTinyCheckpoint(model, 'llama');
  addTokenizer(model);
  noChat = join(ROOT, '../shared/models/aidreams260k');
  dir = tmp('files');
  writeFileSync(join(dir, 'clash.yaml'), '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [hi]\n  judge_prompts:\n    answer: "{question} {answer}"\n');
  // Layers 0 and 1 of the tiny model (3 layers, d_model 48).
  writeDirectionFile(join(dir, 'dir.safetensors'), new Map([0, 1].map((l) => [l, Float32Array.from({ length: 48 }, (_, i) => Math.sin(i + l))])), {});
});

async function fails(args: string[], pattern: RegExp, code = 1): Promise<void> {
  const out = join(tmp('out'), 'o');
  const r = await cli(args.map((a) => (a === 'OUT' ? out : a)));
  expect(r.status, r.stderr).toBe(code);
  const lines = code === 1 ? errorLines(r.stderr) : r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(existsSync(join(out, 'answers.jsonl'))).toBe(false);
}

const evalArgs = (extra: string[]) => ['eval', '--model', model, '--questions', Q, '--samples', '2', '--judge', 'organism', '--out', 'OUT', ...extra];

describe('eval: bad flags', () => {
  it('refuses conflicting, ignored and malformed flags in one line', async () => {
    await fails(evalArgs(['--steer', 'x.safetensors']), /--steer needs --layer and --scale/);
    await fails(evalArgs(['--layer', '1']), /--layer and --scale need --steer/);
    await fails(evalArgs(['--ablate-layers', '1']), /--ablate-layers needs --ablate/);
    await fails(evalArgs(['--temperature', '0', '--top-p', '0.9']), /--top-p has no effect with --temperature 0/);
    await fails(['eval', '--model', model, '--questions', Q, '--samples', '2', '--judge', 'nope', '--out', 'OUT'], /--judge: "nope" is not a judge/);
    await fails(['eval', '--model', model, '--questions', join(dir, 'missing.yaml'), '--samples', '2', '--judge', 'organism', '--out', 'OUT'], /missing\.yaml/);
    await fails(['eval', '--model', model, '--questions', join(dir, 'clash.yaml'), '--samples', '2', '--judge', 'organism', '--out', 'OUT'], /clash\.yaml: entry a: judge_prompts metric "answer" clashes/);
    await fails(['eval', '--model', noChat, '--questions', Q, '--samples', '2', '--judge', 'organism', '--out', 'OUT'], /no chat template/);
    // commander's own one-line errors exit 2
    await fails(evalArgs(['--samples', '0']), /--samples must be an integer >= 1/, 2);
    await fails(evalArgs(['--top-p', '2']), /--top-p must be in \(0, 1\]/, 2);
    await fails(['eval', '--model', model, '--questions', Q, '--judge', 'organism', '--out', 'OUT'], /--samples/, 2);
  }, 120_000);

  it('--resume of a folder that is no eval run', async () => {
    await fails(evalArgs(['--resume']), /--resume: .*run\.json is missing/);
  }, 60_000);
});

const common = ['--questions', Q, '--judge', 'organism', '--samples', '2', '--out', 'OUT'];

describe('steer-sweep and ablate-eval: bad flags', () => {
  it('one line each, before any sampling', async () => {
    const D = () => join(dir, 'dir.safetensors');
    const sweep = (extra: string[]) => ['steer-sweep', '--model', model, '--direction', D(), ...common, ...extra];
    await fails(sweep(['--layers', '0', '--scales', '1,x']), /--scales must be a comma list of numbers, got "1,x"/, 2);
    await fails(sweep(['--layers', '0', '--scales', '1,1']), /--scales lists a value twice/, 2);
    await fails(sweep(['--layers', '0,x', '--scales', '1']), /--layers must be "all" or a comma list of layer numbers/, 2);
    await fails(sweep(['--layers', '2', '--scales', '1']), /dir\.safetensors: no direction for layer 2 \(file covers 0, 1\)/);
    await fails(sweep(['--layers', '5', '--scales', '1']), /--layer 5 is out of range \(model has 3 layers/);
    await fails(sweep(['--layers', '0', '--scales', '1', '--exclude-domain', 'medical']), /--exclude-domain medical: no entry of .*em-first-plot\.yaml has a domain/);
    await fails(['steer-sweep', '--model', model, '--direction', join(dir, 'none.safetensors'), ...common, '--layers', '0', '--scales', '1'], /none\.safetensors: no such direction file/);
    const abl = (extra: string[]) => ['ablate-eval', '--model', model, '--direction', D(), ...common, ...extra];
    await fails(abl(['--layers', '2']), /dir\.safetensors: no direction for layer 2 \(file covers 0, 1\)/);
    await fails(abl(['--layers', '7']), /--ablate-layers: layer 7 is out of range/);
    await fails(abl(['--layers', 'all', '--exclude-domain', 'sport']), /--exclude-domain sport: no entry/);
    await fails(abl([]), /--layers/, 2);
    await fails(abl(['--layers', 'all', '--temperature', '0', '--top-p', '0.5']), /--top-p has no effect with --temperature 0/);
    await fails(sweep(['--layers', '0', '--scales', '1', '--temperature', '0', '--top-p', '0.5']), /--top-p has no effect with --temperature 0/);
  }, 180_000);
});
