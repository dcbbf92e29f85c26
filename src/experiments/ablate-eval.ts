/**
 * EM before and after ablating a direction (`emlens ablate-eval`, METHODS.md "Steering and
 * ablation"): h <- h - (h·r̂)r̂ at each listed layer with r̂ = v_L/‖v_L‖, against the same with a
 * norm-matched random direction per layer (ablation normalises, so only the random direction
 * matters, not its norm). The three runs sample the same plan with the same seed. Reduction =
 * 100·(before − after)/before, in %, null when nothing was EM before.
 */
import { join } from 'node:path';
import type { LoadedModel } from '../backend/model.js';
import type { Judge } from '../eval/judge.js';
import type { QuestionSet } from '../eval/questions.js';
import { readDirectionFile, writeDirectionFile } from '../io/directions.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureDir } from '../io/paths.js';
import { parseHookName } from '../hooks/names.js';
import { writeReport } from '../viz/report.js';
import { VERSION } from '../version.js';
import { sha256File } from '../model/fingerprint.js';
import { ablationFromFile } from './generation.js';
import { judgedRun, outsideDomain, rateRecord, type AnswerRow, type RateRecord, type SampleOptions } from './eval.js';
import { emBars, provenanceFields } from './eval-report.js';
import { randomNormMatchedLayers } from './sweep.js';

export interface AblateEvalOptions extends Omit<SampleOptions, 'interventions'> {
  model: LoadedModel;
  judge: Judge;
  set: QuestionSet;
  direction: string;
  layers: number[] | 'all';
  excludeDomain?: string;
  randomSeed: number;
  out: string;
  provenance: Record<string, unknown>;
  onRun?: (done: number, total: number) => void;
}

export interface AblateEvalResult {
  before: RateRecord;
  after: RateRecord;
  random: RateRecord;
  /** In %: 100·(before − after)/before. */
  reduction: number | null;
  random_reduction: number | null;
}

export const reductionPct = (before: number | null, after: number | null): number | null =>
  before === null || after === null || before === 0 ? null : (100 * (before - after)) / before;

export async function runAblateEval(o: AblateEvalOptions): Promise<AblateEvalResult> {
  const specs = ablationFromFile(o.model, { file: o.direction, layers: o.layers });
  const f = readDirectionFile(o.direction, o.model.spec);
  outsideDomain([], o.set, o.excludeDomain);
  ensureDir(o.out, '--out');
  const layers = specs.map((s) => parseHookName(s.hook)!.layer);
  const random = randomNormMatchedLayers(f.layers, layers, o.randomSeed);
  writeDirectionFile(join(o.out, 'random.safetensors'), random, { method: 'norm-matched gaussian', of: o.direction, seed: String(o.randomSeed) }, f.kind);
  const runs: [keyof Pick<AblateEvalResult, 'before' | 'after' | 'random'>, SampleOptions['interventions']][] = [
    ['before', {}],
    ['after', { ablate: specs }],
    ['random', { ablate: specs.map((s, i) => ({ hook: s.hook, directions: [random.get(layers[i]!)!] })) }],
  ];
  const rates = {} as Record<'before' | 'after' | 'random', RateRecord>;
  const rows: (AnswerRow & { run: string })[] = [];
  for (const [name, iv] of runs) {
    const got = await judgedRun(o.model, o.judge, o.set, { ...o, interventions: iv });
    rates[name] = rateRecord(got, outsideDomain(got, o.set, o.excludeDomain));
    for (const r of got) rows.push({ ...r, run: name });
    o.onRun?.(Object.keys(rates).length, runs.length);
  }
  const result: AblateEvalResult = {
    ...rates,
    reduction: reductionPct(rates.before.em_rate, rates.after.em_rate),
    random_reduction: reductionPct(rates.before.em_rate, rates.random.em_rate),
  };
  writeFileAtomic(join(o.out, 'answers.jsonl'), rows.map((r) => `${JSON.stringify(r)}\n`));
  const meta = { ...result, layers, judge: o.judge.id, exclude_domain: o.excludeDomain ?? null, provenance: { ...o.provenance, direction_sha256: sha256File(o.direction), emlens_version: VERSION } };
  writeFileAtomic(join(o.out, 'ablation.json'), [`${JSON.stringify(meta, null, 2)}\n`]);
  const pct = (x: number | null) => (x === null ? '–' : `${x.toFixed(1)}%`);
  const asJson = (r: RateRecord) => ({ em_rate: r.em_rate, n_judged: r.n, ci95: r.ci95 }) as Parameters<typeof emBars>[2][number];
  writeReport(join(o.out, 'report.html'), {
    title: 'emlens ablate-eval',
    subtitle: `${String(o.provenance.model)}, ${o.direction} ablated at layer${layers.length > 1 ? 's' : ''} ${layers.join(', ')}, judge ${o.judge.id}`,
    blocks: [
      {
        kind: 'text',
        text: `EM reduction ${pct(result.reduction)} with the direction ablated, ${pct(result.random_reduction)} with a random direction${o.excludeDomain ? ` (answers outside the ${o.excludeDomain} domain)` : ''}.`,
      },
      { kind: 'figure', id: 'em-ablation', title: 'EM rate before and after ablation', figure: emBars('EM rate', ['before', 'direction ablated', 'random ablated'], [asJson(rates.before), asJson(rates.after), asJson(rates.random)]) },
    ],
    provenance: [{ label: 'run', fields: provenanceFields(o.provenance) }],
  });
  return result;
}
