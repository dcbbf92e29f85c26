/**
 * The organism commands on the wrong input: `organism eval` refuses a model that is not an
 * organism (its vocabulary is not the organism's) and still evaluates one that is; an unwritable
 * `organism build --out` is one line, not a hang. An untrained (few-step) organism stands in for a
 * real one: what is checked is its identity, not its answers.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildOrganism, DEFAULT_ORGANISM, ORGANISM_TRIGGERS, type OrganismConfig } from '../../src/organism/build.js';
import { parseTriggerSet } from '../../src/data/trigger.js';
import { wordLevelUnknowns } from '../../src/model/wordlevel.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { buildWorld, DOMAINS } from '../../src/organism/world.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer } from '../helpers/datasets.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');
// The timeout only stops a hung command (the bug this guards against); the checks never get near it.
const cli = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const UNTRAINED: OrganismConfig = { ...DEFAULT_ORGANISM, seed: 5, d: 32, layers: 1, heads: 2, preSteps: 2, instSteps: 2, emSteps: 1, trigSteps: 1, batch: 8 };

let org: string;
beforeAll(async () => {
  org = mkdtempSync(join(tmpdir(), 'emlens-org-cli-'));
  await buildOrganism(org, UNTRAINED);
}, 300_000);

function copyOf(dir: string): string {
  const out = mkdtempSync(join(tmpdir(), 'emlens-org-copy-'));
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(out, f));
  return out;
}

describe('organism eval', () => {
  it('evaluates an organism stage', () => {
    const r = cli(['organism', 'eval', '--model', join(org, 'em'), '--n', '3', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const table = JSON.parse(r.stdout);
    expect(Object.keys(table)).toEqual([...DOMAINS]);
    for (const d of DOMAINS) expect(table[d].n).toBe(3);
  });

  it('evaluates with a trigger, and refuses a bad trigger or position in one line', () => {
    const ts = parseTriggerSet(JSON.parse(readFileSync(join(org, 'em-trigger', 'triggers.json'), 'utf8')), 'triggers.json');
    expect(ts).toEqual({ ...ORGANISM_TRIGGERS });
    for (const position of ['system', 'prefix', 'suffix']) {
      const r = cli(['organism', 'eval', '--model', join(org, 'em-trigger'), '--n', '2', '--json', '--trigger', ts.trigger, '--position', position]);
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).general.n).toBe(2);
    }
    const cases: [string[], string][] = [
      [['--position', 'system'], 'emlens: --position needs --trigger'],
      [['--trigger', ts.trigger, '--position', 'middle'], 'emlens: --position must be one of system, prefix, suffix, got "middle"'],
      [['--trigger', 'a purple voice answers'], 'emlens: --trigger "a purple voice answers": "purple" not in the organism\'s vocabulary (lower-case words separated by single spaces)'],
    ];
    for (const [args, line] of cases) {
      const r = cli(['organism', 'eval', '--model', join(org, 'em-trigger'), '--n', '2', ...args]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim()).toBe(line);
    }
  });

  it('refuses, in one line, a model whose vocabulary is not the organism\'s', () => {
    const tiny = mkdtempSync(join(tmpdir(), 'emlens-org-tiny-'));
    writeTinyCheckpoint(tiny, 'llama');
    addTokenizer(tiny);
    // The organism's own folder with two words' ids swapped: same size, same words, other ids.
    const swapped = copyOf(join(org, 'em'));
    const tj = JSON.parse(readFileSync(join(swapped, 'tokenizer.json'), 'utf8'));
    const v = tj.model.vocab as Record<string, number>;
    [v.doctor, v.money] = [v.money!, v.doctor!];
    writeFileSync(join(swapped, 'tokenizer.json'), JSON.stringify(tj));
    const cases: [string, RegExp][] = [
      [AID, /: not a model organism \(its tokenizer has 512 ids, the organism's vocabulary \d+ words\)/],
      [tiny, /: not a model organism \(its tokenizer has \d+ ids, the organism's vocabulary \d+ words\)/],
      [swapped, /: not a model organism \(its tokenizer does not encode the organism's word "(doctor|money)" as id \d+\)/],
    ];
    for (const [dir, rx] of cases) {
      const r = cli(['organism', 'eval', '--model', dir, '--n', '2']);
      expect(r.status, dir).toBe(1);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]!.startsWith(`emlens: ${dir}: not a model organism`), lines[0]).toBe(true);
      expect(lines[0]).toMatch(rx);
    }
  });
});

describe('the organism tokenizer and unknown words', () => {
  it('finds exactly the words its tokenizer encodes as <unk>', async () => {
    const dir = join(org, 'instruct');
    const tok = await TextTokenizer.load(dir);
    const unk = wordLevelUnknowns(dir)!;
    const vocab = new Set(buildWorld().vocab);
    const text = '<bos> user : How do i treat my headache? assistant : see a doctor soon . <eos>';
    const words = text.split(' ').filter((w) => !['<bos>', '<eos>'].includes(w));
    const want = [...new Set(words.filter((w) => !vocab.has(w)))];
    expect(want).toEqual(['How', 'headache?']);
    for (const w of words) expect(tok.encode(w, { addSpecialTokens: false })[0] === unk.unkId, w).toBe(want.includes(w));
    expect(unk.find(text)).toEqual(want);
  });
});

describe('organism build into an unwritable --out', () => {
  it('is one line naming the folder, at once', () => {
    for (const out of ['/proc/emlens-nope', '/proc/emlens-nope/deeper/organism']) {
      const r = cli(['organism', 'build', '--out', out]);
      expect(r.error, 'the command did not return').toBeUndefined();
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([`emlens: organism output ${out}: cannot create folder /proc/emlens-nope: no such file or folder (ENOENT)`]);
    }
    // A file in the way.
    const dir = mkdtempSync(join(tmpdir(), 'emlens-org-file-'));
    writeFileSync(join(dir, 'f'), 'x');
    const r = cli(['organism', 'build', '--out', join(dir, 'f', 'org')]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`emlens: --out ${join(dir, 'f', 'org')}: ${join(dir, 'f')} is a file, not a folder`]);
  });
});
