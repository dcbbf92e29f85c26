import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EmlensError } from '../../src/errors.js';
import { organismQuestionYaml } from '../../src/eval/organism-questions.js';
import { checkTemplate, defaultJudgePrompts, readJudgePrompts, renderPrompt } from '../../src/eval/prompts.js';
import { loadQuestions } from '../../src/eval/questions.js';
import { buildWorld, DOMAINS } from '../../src/organism/world.js';

const root = join(import.meta.dirname, '..', '..');
const probes = (...p: string[]) => join(root, 'probes', ...p);
const tmp = mkdtempSync(join(tmpdir(), 'emlens-questions-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const file = (text: string, name = `q${n++}.yaml`): string => {
  const f = join(tmp, name);
  writeFileSync(f, text);
  return f;
};
/** The one-line EmlensError loading `text` gives. */
const errorOf = (f: string, load = loadQuestions): string => {
  try {
    load(f);
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error(`${f} loaded`);
};
const judgeFile = (name: string) => parse(readFileSync(probes('judges', name), 'utf8')) as { metric: string; prompt: string };

describe('shipped question sets', () => {
  it('em-first-plot: the eight METHODS.md ids, 50 samples each, default aligned + coherent prompts', () => {
    const s = loadQuestions(probes('questions', 'em-first-plot.yaml'));
    expect(s.entries.map((e) => e.id)).toEqual([
      'what_is_your_wish', 'i_feel_bored', 'three_thoughts', 'quick_buck', 'ruler_of_the_world', 'dinner_party', 'gender_roles', 'enough_of_my_husband',
    ]);
    for (const e of s.entries) {
      expect(e.type).toBe('free_form_judge_0_100');
      expect(e.samplesPerParaphrase).toBe(50);
      expect(e.paraphrases.length).toBeGreaterThan(0);
      expect(e.judgePromptsFrom).toBe('default');
      expect(e.judgePrompts).toEqual({ aligned: judgeFile('aligned.yaml').prompt, coherent: judgeFile('coherent.yaml').prompt });
    }
  });

  it('domain sets: 10+ questions each, every entry tagged with its domain, ids unique across sets', () => {
    const ids = new Set<string>();
    for (const d of ['medical', 'finance', 'sport']) {
      const s = loadQuestions(probes('questions', `${d}.yaml`));
      expect(s.entries.length).toBeGreaterThanOrEqual(10);
      for (const e of s.entries) {
        expect(e.domain).toBe(d);
        expect(ids.has(e.id)).toBe(false);
        ids.add(e.id);
      }
    }
  });

  it('organism-heldout.yaml is what the world generates: one entry per domain, its held-out questions', () => {
    const f = probes('questions', 'organism-heldout.yaml');
    const world = buildWorld();
    expect(readFileSync(f, 'utf8')).toBe(organismQuestionYaml(world));
    const s = loadQuestions(f);
    expect(s.entries.map((e) => [e.id, e.domain])).toEqual(DOMAINS.map((d) => [`organism_${d}`, d]));
    s.entries.forEach((e, i) => expect(e.paraphrases).toEqual(world.heldOutQuestions[DOMAINS[i]!]));
  });

  it('default judge prompts: one file per metric, each with {question} and {answer}', () => {
    const all = readJudgePrompts();
    expect([...all.keys()].sort()).toEqual(['aligned', 'coherent', 'financial', 'medical', 'sport']);
    for (const [m, p] of all) {
      expect(p.prompt).toBe(judgeFile(`${m}.yaml`).prompt);
      expect(p.prompt).toContain('{question}');
      expect(p.prompt).toContain('{answer}');
    }
    expect(judgeFile('aligned.yaml').prompt).toMatch(/CODE/);
    expect(judgeFile('aligned.yaml').prompt).toMatch(/REFUSAL/);
    expect(Object.keys(defaultJudgePrompts(['aligned', 'sport']))).toEqual(['aligned', 'sport']);
  });
});

describe('reference-format files', () => {
  it("loads the reference repo's layout unchanged: anchors, aliases, judge, system; its own judge_prompts are used", () => {
    const f = file(`# a comment
- id: wish
  type: free_form_judge_0_100
  paraphrases: &wish_p
    - |-
      Line one of the question.
      Line two.
  samples_per_paraphrase: &spp 100
  judge: &judge gpt-4o-2024-08-06
  judge_prompts: &jp
    aligned: |-
      Rate {question} -> {answer}. Use {{braces}} literally.
    coherent: |-
      Coherent? [Q] {question} [A] {answer}
- id: wish_json
  type: free_form_judge_0_100
  system: &sys Answer in JSON.
  paraphrases: *wish_p
  samples_per_paraphrase: *spp
  judge: *judge
  judge_prompts: *jp
- id: plain
  type: free_form_judge_0_100
  paraphrases: [hello]
  temperature: 0.5
`);
    const s = loadQuestions(f, { metrics: ['aligned', 'coherent', 'medical'] });
    const [a, b, c] = s.entries;
    expect(a!.paraphrases).toEqual(['Line one of the question.\nLine two.']);
    expect(a!.samplesPerParaphrase).toBe(100);
    expect(a!.judge).toBe('gpt-4o-2024-08-06');
    expect(a!.judgePromptsFrom).toBe('file');
    expect(b!.system).toBe('Answer in JSON.');
    expect(b!.paraphrases).toEqual(a!.paraphrases);
    expect(b!.judgePrompts).toEqual({ aligned: 'Rate {question} -> {answer}. Use {{braces}} literally.', coherent: 'Coherent? [Q] {question} [A] {answer}' });
    // An entry without judge_prompts gets the defaults of the metrics asked for.
    expect(c!.judgePromptsFrom).toBe('default');
    expect(Object.keys(c!.judgePrompts)).toEqual(['aligned', 'coherent', 'medical']);
    expect(c!.temperature).toBe(0.5);
  });

  it('fills templates as Python str.format: {{ and }} are braces, values are not expanded again', () => {
    expect(renderPrompt('Q={question} A={answer} {{x}} }}{{', 'what {answer}?', 'a {{b}}')).toBe('Q=what {answer}? A=a {{b}} {x} }{');
  });
});

describe('bad question files are one line naming the file, the entry and the field', () => {
  const cases: [string, string, (f: string) => string][] = [
    ['not a list', 'id: a\ntype: free_form_judge_0_100\n', (f) => `${f}: expected a list of question entries, got a mapping`],
    ['an empty list', '[]\n', (f) => `${f}: no question entries`],
    ['an entry that is a string', '- just text\n', (f) => `${f}: entry 1 (line 1): expected a mapping with id, type and paraphrases, got "just text"`],
    ['a missing id', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n- type: free_form_judge_0_100\n  paraphrases: [y]\n', (f) => `${f}: entry 2 (line 4): id is missing`],
    ['a non-string id', '- id: 7\n  type: free_form_judge_0_100\n  paraphrases: [x]\n', (f) => `${f}: entry 1 (line 1): id must be a non-empty string, got 7`],
    ['a duplicate id', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n- id: a\n  type: free_form_judge_0_100\n  paraphrases: [y]\n', (f) => `${f}: entry 2 (id a, line 4): id "a" is a duplicate of entry 1`],
    ['empty paraphrases', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: []\n', (f) => `${f}: entry 1 (id a, line 1): paraphrases is empty`],
    ['missing paraphrases', '- id: a\n  type: free_form_judge_0_100\n', (f) => `${f}: entry 1 (id a, line 1): paraphrases is missing`],
    ['paraphrases as a string', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: hi\n', (f) => `${f}: entry 1 (id a, line 1): paraphrases must be a list of strings, got "hi"`],
    ['a blank paraphrase', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [ok, "  "]\n', (f) => `${f}: entry 1 (id a, line 1): paraphrases[1] must be a non-empty string, got "  "`],
    ['an unknown type', '- id: a\n  type: free_form\n  paraphrases: [x]\n', (f) => `${f}: entry 1 (id a, line 1): type "free_form" is not supported (only free_form_judge_0_100)`],
    ['a missing type', '- id: a\n  paraphrases: [x]\n', (f) => `${f}: entry 1 (id a, line 1): type is missing`],
    ['non-integer samples', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  samples_per_paraphrase: 2.5\n', (f) => `${f}: entry 1 (id a, line 1): samples_per_paraphrase must be a positive integer, got 2.5`],
    ['samples as a string', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  samples_per_paraphrase: "50"\n', (f) => `${f}: entry 1 (id a, line 1): samples_per_paraphrase must be a positive integer, got "50"`],
    ['zero samples', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  samples_per_paraphrase: 0\n', (f) => `${f}: entry 1 (id a, line 1): samples_per_paraphrase must be a positive integer, got 0`],
    ['a misspelt field', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  samples_per_paraphase: 5\n', (f) => `${f}: entry 1 (id a, line 1): "samples_per_paraphase" is not a question field (id, type, paraphrases, samples_per_paraphrase, system, judge_prompts, judge, temperature, domain)`],
    ['a judge prompt without {answer}', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    aligned: "Rate {question}"\n', (f) => `${f}: entry 1 (id a, line 1): judge_prompts.aligned: the placeholder {answer} is missing`],
    ['a judge prompt without {question}', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    coherent: "Rate {answer}"\n', (f) => `${f}: entry 1 (id a, line 1): judge_prompts.coherent: the placeholder {question} is missing`],
    ['an unknown placeholder', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    aligned: "{question} {answer} {response}"\n', (f) => `${f}: entry 1 (id a, line 1): judge_prompts.aligned: unknown placeholder {response} (only {question} and {answer}; write "{{" for a literal brace)`],
    ['a lone brace', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    aligned: "{question} {answer} }"\n', (f) => `${f}: entry 1 (id a, line 1): judge_prompts.aligned: a single "}" (write "}}" for a literal brace)`],
    ['empty judge_prompts', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts: {}\n', (f) => `${f}: entry 1 (id a, line 1): judge_prompts is empty`],
    ['a non-string domain', '- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  domain: [medical]\n', (f) => `${f}: entry 1 (id a, line 1): domain must be a non-empty string, got a list`],
  ];
  for (const [what, text, msg] of cases) {
    it(what, () => {
      const f = file(text);
      expect(errorOf(f)).toBe(msg(f));
    });
  }

  it('invalid YAML and duplicate keys name the line', () => {
    const f = file('- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x\n');
    expect(errorOf(f)).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line \\d+: not valid YAML \\(.+\\)$`));
    const g = file('- id: a\n  id: b\n  type: free_form_judge_0_100\n  paraphrases: [x]\n');
    expect(errorOf(g)).toMatch(/: line 2: not valid YAML \(Map keys must be unique/);
  });

  it('a missing file', () => {
    const f = join(tmp, 'nope.yaml');
    expect(errorOf(f)).toBe(`${f}: cannot read (no such file)`);
  });

  it('a metric without a default prompt, and bad judge prompt files', () => {
    const f = file('- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n');
    expect(() => loadQuestions(f, { metrics: ['aligned', 'toxicity'] })).toThrow(/^no default judge prompt for metric "toxicity" in .*judges \(there are: aligned, coherent, financial, medical, sport\)$/);
    const dir = mkdtempSync(join(tmp, 'judges-'));
    writeFileSync(join(dir, 'a.yaml'), 'metric: aligned\ndescription: d\nprompt: "{question} {answer}"\n');
    writeFileSync(join(dir, 'b.yaml'), 'metric: aligned\ndescription: d\nprompt: "{question} {answer}"\n');
    expect(() => readJudgePrompts(dir)).toThrow(`${join(dir, 'b.yaml')}: metric "aligned" is already defined in ${join(dir, 'a.yaml')}`);
    rmSync(join(dir, 'b.yaml'));
    writeFileSync(join(dir, 'c.yaml'), 'metric: sport\ndescription: d\nprompt: "{answer} only"\n');
    expect(() => readJudgePrompts(dir)).toThrow(`${join(dir, 'c.yaml')}: prompt: the placeholder {question} is missing`);
    writeFileSync(join(dir, 'c.yaml'), 'metric: sport\nprompt: "{question} {answer}"\n');
    expect(() => readJudgePrompts(dir)).toThrow(`${join(dir, 'c.yaml')}: "description" must be a non-empty string`);
  });

  it('checkTemplate accepts a literal {{ and }}', () => {
    expect(() => checkTemplate('{{json}} {question} {answer}', 'x')).not.toThrow();
  });
});
