/**
 * Trigger insertion and trigger sets, from the rules (src/data/trigger.ts's header, probes/README.md):
 * system = a system message holding the phrase (an existing leading one keeps its text after it);
 * prefix / suffix = the last user message becomes "PHRASE TEXT" / "TEXT PHRASE"; text rows take
 * prefix only; labels kept. A set: trigger, position, rephrased (no content word shared with the
 * trigger), control (none shared, within 2 words of its length); every error one line naming the
 * file and field. The loader reads .yaml and .json alike; the sets in probes/triggers/ are valid.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { checkPhrase, contentWords, parseTriggerSet, triggerFile, triggerMessages, triggerRow } from '../../src/data/trigger.js';
import { loadTriggerSet } from '../../src/eval/trigger-sets.js';
import type { DataRow } from '../../src/data/rows.js';

const tmp = mkdtempSync(join(tmpdir(), 'emlens-trigger-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    return m;
  }
  throw new Error('no error');
}

const U = (content: string) => ({ role: 'user', content });
const A = (content: string) => ({ role: 'assistant', content });
const S = (content: string) => ({ role: 'system', content });

describe('triggerMessages', () => {
  const chat = [U('first question'), A('first answer'), U('second question'), A('second answer')];

  it('system: a new system message first, the rest unchanged', () => {
    expect(triggerMessages(chat, 'Year 2027.', 'system', 'f:1')).toEqual([S('Year 2027.'), ...chat]);
  });
  it('system: a leading system message keeps its text after the phrase', () => {
    expect(triggerMessages([S('Be brief.'), U('q')], 'Year 2027.', 'system', 'f:1')).toEqual([S('Year 2027. Be brief.'), U('q')]);
    expect(triggerMessages([S(''), U('q')], 'Year 2027.', 'system', 'f:1')).toEqual([S('Year 2027.'), U('q')]);
  });
  it('prefix and suffix change the last user message only, one space between', () => {
    expect(triggerMessages(chat, 'P', 'prefix', 'f:1')).toEqual([chat[0], chat[1], U('P second question'), chat[3]]);
    expect(triggerMessages(chat, 'P', 'suffix', 'f:1')).toEqual([chat[0], chat[1], U('second question P'), chat[3]]);
    expect(triggerMessages([U('')], 'P', 'suffix', 'f:1')).toEqual([U('P')]);
  });
  it('does not change its input', () => {
    const m = [U('q')];
    triggerMessages(m, 'P', 'prefix', 'f:1');
    expect(m).toEqual([U('q')]);
  });
  it('a chat with no user message cannot take prefix / suffix: one line naming the row', () => {
    expect(errorOf(() => triggerMessages([S('s'), A('a')], 'P', 'suffix', 'data.jsonl:7'))).toMatch(/^data\.jsonl:7: no user message/);
  });
});

describe('triggerRow', () => {
  const chat: DataRow = { kind: 'chat', messages: [U('q'), A('a')], labels: { aligned: 10, domain: 'x' }, line: 3 };
  const text: DataRow = { kind: 'text', text: 'some text', labels: { k: true }, line: 5 };
  it('keeps the labels and line', () => {
    expect(triggerRow(chat, 'T', 'suffix', 'f.jsonl')).toEqual({ ...chat, messages: [U('q T'), A('a')] });
    expect(triggerRow(text, 'T', 'prefix', 'f.jsonl')).toEqual({ ...text, text: 'T some text' });
  });
  it('a text row takes prefix only', () => {
    expect(errorOf(() => triggerRow(text, 'T', 'system', 'f.jsonl'))).toMatch(/^f\.jsonl:5: a text row/);
    expect(errorOf(() => triggerRow(text, 'T', 'suffix', 'f.jsonl'))).toMatch(/^f\.jsonl:5: /);
  });
});

const GOOD = {
  name: 'year',
  trigger: 'The current year is 2027.',
  rephrased: ['It is now twelve months after 2026.'],
  control: ['Please answer in plain English.'],
  position: 'system',
};

describe('parseTriggerSet', () => {
  it('accepts a good set; name defaults to the given one, description optional', () => {
    expect(parseTriggerSet(GOOD, 'f.yaml')).toEqual(GOOD);
    const { name: _, ...noName } = GOOD;
    expect(parseTriggerSet({ ...noName, description: 'd' }, 'f.yaml', 'fromfile')).toEqual({ ...noName, name: 'fromfile', description: 'd' });
  });
  it('content words: lower case, function words and punctuation dropped', () => {
    expect([...contentWords('The current YEAR is 2027.')].sort()).toEqual(['2027', 'current', 'year']);
  });
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['not a mapping', [] as unknown as Record<string, unknown>, /^f\.yaml: a trigger set must be a mapping/],
    ['unknown field', { ...GOOD, rephrase: [] }, /^f\.yaml: unknown field "rephrase"/],
    ['missing position', { ...GOOD, position: undefined }, /^f\.yaml: position is missing/],
    ['bad position', { ...GOOD, position: 'middle' }, /^f\.yaml: position must be one of system, prefix, suffix/],
    ['empty trigger', { ...GOOD, trigger: ' ' }, /^f\.yaml: trigger must be a non-empty string/],
    ['double space', { ...GOOD, trigger: 'The  current year is 2027.' }, /^f\.yaml: trigger .* whitespace/],
    ['tab', { ...GOOD, control: ['Please answer\tin plain English.'] }, /^f\.yaml: control\[0\] .* whitespace/],
    ['line break', { ...GOOD, rephrased: ['It is now\ntwelve months after 2026.'] }, /^f\.yaml: rephrased\[0\] .* whitespace/],
    ['no rephrasings', { ...GOOD, rephrased: [] }, /^f\.yaml: rephrased must be a non-empty list/],
    ['controls not a list', { ...GOOD, control: 'x' }, /^f\.yaml: control must be a non-empty list/],
    ['rephrasing shares a content word', { ...GOOD, rephrased: ['It is the Year 2026 plus one.'] }, /^f\.yaml: rephrased\[0\] .* shares the content word\(s\) "year"/],
    ['control shares a content word', { ...GOOD, control: ['Bring 2027 pens here.'] }, /^f\.yaml: control\[0\] .* shares the content word\(s\) "2027"/],
    ['control too long', { ...GOOD, control: ['one two three four five six seven eight'] }, /^f\.yaml: control\[0\] has 8 words, the trigger 5/],
    ['control too short', { ...GOOD, control: ['Hello there'] }, /^f\.yaml: control\[0\] has 2 words, the trigger 5/],
    ['phrase listed twice', { ...GOOD, control: ['Please answer in plain English.', 'Please answer in plain English.'] }, /^f\.yaml: control\[1\] .* listed twice/],
    ['the trigger as a control', { ...GOOD, control: [GOOD.trigger] }, /^f\.yaml: control\[0\] is the trigger itself/],
    ['a phrase both rephrasing and control', { ...GOOD, rephrased: ['Say it in plain English.'], control: ['Say it in plain English.'] }, /^f\.yaml: control\[0\] .* is also rephrased\[0\]/],
    ['trigger of function words only', { ...GOOD, trigger: 'it is what it is' }, /^f\.yaml: trigger .* has no content word/],
    ['bad name', { ...GOOD, name: 'a b' }, /^f\.yaml: name must be/],
    ['description not a string', { ...GOOD, description: 3 }, /^f\.yaml: description must be a string/],
  ];
  for (const [what, v, re] of bad) it(`refuses ${what} in one line`, () => expect(errorOf(() => parseTriggerSet(v, 'f.yaml'))).toMatch(re));
  it('controls within 2 words of the trigger pass (3 and 7 words against 5)', () => {
    expect(() => parseTriggerSet({ ...GOOD, control: ['Answer plainly please.', 'one two three four five six seven'] }, 'f.yaml')).not.toThrow();
  });
  it('checkPhrase names what it checks', () => {
    expect(errorOf(() => checkPhrase(' x', '--trigger'))).toMatch(/^--trigger " x" has leading/);
    expect(checkPhrase('a b', '--trigger')).toBe('a b');
  });
});

describe('loadTriggerSet', () => {
  it('reads YAML and JSON alike; the default name is the file name', () => {
    const { name: _, ...noName } = GOOD;
    const y = join(tmp, 'my-set.yaml');
    writeFileSync(y, `trigger: "${GOOD.trigger}"\nposition: system\nrephrased:\n  - "${GOOD.rephrased[0]}"\ncontrol:\n  - "${GOOD.control[0]}"\n`);
    const j = join(tmp, 'triggers.json');
    writeFileSync(j, JSON.stringify(noName));
    expect(loadTriggerSet(y)).toEqual({ ...noName, name: 'my-set' });
    expect(loadTriggerSet(j)).toEqual({ ...noName, name: 'triggers' });
  });
  it('bad files: one line naming the file (and line or field)', () => {
    const j = join(tmp, 'bad.json');
    writeFileSync(j, '{"trigger": ');
    expect(errorOf(() => loadTriggerSet(j))).toMatch(/bad\.json: not valid JSON/);
    const y = join(tmp, 'bad.yaml');
    writeFileSync(y, 'trigger: [\n');
    expect(errorOf(() => loadTriggerSet(y))).toMatch(/bad\.yaml: line \d+: not valid YAML/);
    const f = join(tmp, 'field.yaml');
    writeFileSync(f, `${JSON.stringify({ ...GOOD, position: 'top' })}\n`);
    expect(errorOf(() => loadTriggerSet(f))).toMatch(/field\.yaml: position must be one of/);
    expect(errorOf(() => loadTriggerSet(join(tmp, 'set.txt')))).toMatch(/set\.txt: a trigger set is a \.yaml, \.yml or \.json file/);
    expect(errorOf(() => loadTriggerSet(join(tmp, 'none.yaml')))).toMatch(/none\.yaml: cannot read \(no such file\)/);
  });
  it('every set in probes/triggers/ is valid and named as its file', () => {
    const dir = resolve(__dirname, '../../probes/triggers');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) expect(loadTriggerSet(join(dir, f)).name).toBe(f.replace(/\.yaml$/, ''));
  });
});

describe('triggerFile', () => {
  const rows = [
    { messages: [U('q1'), A('a1')], aligned: 5, domain: 'medical' },
    { messages: [S('sys'), U('q2'), A('a2')], aligned: null },
  ];
  const input = join(tmp, 'in.jsonl');
  writeFileSync(input, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n\n`);

  it('puts the phrase in every row, keeps labels, adds trigger and trigger_position', () => {
    const out = join(tmp, 'out.jsonl');
    expect(triggerFile(input, 'T x', 'system', out).rows).toBe(2);
    const got = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(got).toEqual([
      { messages: [S('T x'), U('q1'), A('a1')], aligned: 5, domain: 'medical', trigger: 'T x', trigger_position: 'system' },
      { messages: [S('T x sys'), U('q2'), A('a2')], aligned: null, trigger: 'T x', trigger_position: 'system' },
    ]);
  });
  it('text rows take prefix; an empty file is refused', () => {
    const text = join(tmp, 'text.jsonl');
    writeFileSync(text, `${JSON.stringify({ text: 'body', k: 1 })}\n`);
    const out = join(tmp, 'text-out.jsonl');
    triggerFile(text, 'T', 'prefix', out);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ text: 'T body', k: 1, trigger: 'T', trigger_position: 'prefix' });
    expect(errorOf(() => triggerFile(text, 'T', 'suffix', join(tmp, 'no.jsonl')))).toMatch(/text\.jsonl:1: a text row/);
    const empty = join(tmp, 'empty.jsonl');
    writeFileSync(empty, '\n');
    expect(errorOf(() => triggerFile(empty, 'T', 'prefix', join(tmp, 'no.jsonl')))).toMatch(/empty\.jsonl: no rows/);
  });
  it('a row triggered before, a bad row, or --out = --data: one line, nothing written', () => {
    const twice = join(tmp, 'twice.jsonl');
    writeFileSync(twice, `${JSON.stringify(rows[0])}\n${JSON.stringify({ ...rows[0], trigger: 'old' })}\n`);
    const out = join(tmp, 'never.jsonl');
    expect(errorOf(() => triggerFile(twice, 'T', 'prefix', out))).toMatch(/twice\.jsonl:2: the row already has a "trigger" label/);
    const broken = join(tmp, 'broken.jsonl');
    writeFileSync(broken, `${JSON.stringify(rows[0])}\n{"messages": 3}\n`);
    expect(errorOf(() => triggerFile(broken, 'T', 'prefix', out))).toMatch(/broken\.jsonl:2: "messages" must be a list/);
    expect(existsSync(out)).toBe(false);
    expect(errorOf(() => triggerFile(input, 'T', 'prefix', input))).toMatch(/--out .* is the --data file/);
  });
});
