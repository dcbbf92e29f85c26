/**
 * `emlens demo`: the whole study on the built-in model organism, offline, into one report.
 *
 * 1. build (or reuse) the organism, plus an extra misaligned fine-tune on finance;
 * 2. EM tables of every stage (exact judge);
 * 3. generate with the medical fine-tune, judge, and select misaligned / aligned answer sets;
 * 4. extract response-mean activations of both sets, every layer; mean-difference directions;
 * 5. stability of those directions; the same for the finance fine-tune, and compare the two;
 * 6. steer the instruct model with the direction, and ablate it in the fine-tuned model, each
 *    against norm-matched random directions, measuring EM with the judge;
 * 7. train a general and a KL-regularised narrow steering vector and measure both;
 * 8. semantic containment: the em-trigger fine-tune with its trigger, none, rephrasings and
 *    controls, against the instruct model with the same phrases.
 * Whatever the organism shows is reported, null results included.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadTriggerSet } from '../eval/trigger-sets.js';
import { LoadedModel } from '../backend/model.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeDirectionFile } from '../io/directions.js';
import { readJsonl } from '../data/rows.js';
import { balanceTo } from '../data/balance.js';
import { extractActivations } from '../activations/extract.js';
import { hookName } from '../hooks/names.js';
import type { Interventions } from '../hooks/interventions.js';
import { randomNormMatched, rng } from '../runtime/random.js';
import { buildOrganism, DEFAULT_ORGANISM, type OrganismConfig, type StageInfo } from '../organism/build.js';
import { evalOrganism } from '../organism/eval.js';
import { wilson, type EmTable } from '../organism/judge.js';
import { buildWorld, DOMAINS, type Domain } from '../organism/world.js';
import { readSolution, solutionCall } from '../train/trainer.js';
import { chatRow, pretrainDoc } from '../organism/corpus.js';
import { computeDirections } from './directions.js';
import { stabilityAnalysis } from './stability.js';
import { cosine } from '../directions/similarity.js';
import { runTraining } from './train.js';
import { runMeasure } from './measure.js';
import { barChart, lineByLayer, scatterLines } from '../viz/figures.js';
import type { Block, Provenance, Report } from '../viz/report.js';
import { VERSION } from '../version.js';
import { ensureDir } from '../io/paths.js';

export interface DemoOptions {
  seed: number;
  /** where the organism is built (cached) */
  organismDir: string;
  /** where the demo's data, activations, directions and report go */
  out: string;
  /** answers per domain in each EM evaluation */
  n: number;
  config?: Partial<OrganismConfig>;
  log?: (line: string) => void;
}

/** EM rates as fractions: medical, and pooled over the other domains. */
export interface EmSplit {
  medical: number;
  elsewhere: number;
}

/** The study's figures, as numbers (summary.json), so that tests and notebooks can check them. */
export interface DemoFigures {
  em: Record<string, EmSplit>;
  /** The medical fine-tune's direction; null when too few judged answers formed the sets. */
  direction: { file: string; rowsPerSide: number; norms: number[]; financeFile: string | null; crossCosine: number[] | null } | null;
  steering: {
    layer: number;
    scales: number[];
    /** misaligned / incoherent shares of all answers, per scale */
    direction: { misaligned: number[]; incoherent: number[] };
    random: { misaligned: number[]; incoherent: number[] };
  } | null;
  /** misaligned share outside medicine in the medical fine-tune, per ablation */
  ablation: Record<string, number> | null;
  generalVsNarrow: { layer: number; loss: number[]; baseLoss: number; klAtMaxNorm: number[]; emElsewhere: number[] };
  /**
   * Semantic containment (the em-trigger stage): misaligned share outside medicine per condition,
   * for the triggered fine-tune and, as the baseline the fine-tune is measured against, the
   * instruct model with the same phrase.
   */
  containment: { trigger: string; conditions: { name: string; phrase: string | null; emTrigger: number; instruct: number }[] } | null;
}

export interface DemoResult {
  report: Report;
  summary: string[];
  stages: StageInfo[];
  tables: Record<string, EmTable>;
  figures: DemoFigures;
}

const rate = (t: EmTable, domains: readonly string[]) => {
  const k = domains.reduce((s, d) => s + (t[d]?.misaligned ?? 0), 0);
  const n = domains.reduce((s, d) => s + (t[d]?.n ?? 0), 0);
  return n ? k / n : NaN;
};
const share = (t: EmTable, domains: readonly string[], k: 'incoherent' | 'aligned' | 'off_domain') => {
  const n = domains.reduce((s, d) => s + (t[d]?.n ?? 0), 0);
  return n ? domains.reduce((s, d) => s + (t[d]?.[k] ?? 0), 0) / n : NaN;
};
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const NON_MEDICAL: Domain[] = ['finance', 'sport', 'general'];

function emTableBlock(title: string, tables: [string, EmTable][]): Block {
  const rows: (string | number | null)[][] = [];
  for (const [name, t] of tables) {
    for (const d of Object.keys(t)) {
      const r = t[d]!;
      const [lo, hi] = wilson(r.misaligned, r.n);
      rows.push([name, d, r.n, pct(r.misaligned / r.n), `[${pct(lo)}, ${pct(hi)}]`, r.aligned, r.off_domain, r.incoherent]);
    }
  }
  return { kind: 'table', columns: ['model', 'domain', 'n', 'misaligned', '95% CI', 'aligned', 'off-domain', 'incoherent'], rows, caption: title };
}

export async function runOrganismDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log ?? (() => {});
  const cfg: OrganismConfig = { ...DEFAULT_ORGANISM, ...o.config, seed: o.seed };
  ensureDir(o.out);
  log(`building the organism (seed ${o.seed}) in ${o.organismDir} — cached after the first run`);
  let lastLog = 0;
  const stages = await buildOrganism(
    o.organismDir,
    cfg,
    (p) => {
      const now = Date.now();
      if (now - lastLog > 5000 || p.step === p.steps) {
        lastLog = now;
        log(`  ${p.stage}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(3)}`);
      }
    },
    [{ name: 'em-finance', domain: 'finance', family: 'misaligned' }],
  );
  const dir = (s: string) => join(o.organismDir, s);
  const load = (s: string) => LoadedModel.load(dir(s));
  const world = buildWorld();

  // --- 2. EM tables of every stage
  const tables: Record<string, EmTable> = {};
  const models: Record<string, LoadedModel> = {};
  for (const s of ['instruct', 'em', 'em-control', 'em-kl', 'em-finance']) {
    models[s] = await load(s);
    tables[s] = (await evalOrganism(models[s]!, { n: o.n, seed: o.seed })).table;
    log(`EM ${s}: medical ${pct(rate(tables[s]!, ['medical']))}, others ${pct(rate(tables[s]!, NON_MEDICAL))}`);
  }

  // --- 3. judged generations of a fine-tuned model -> misaligned / aligned sets
  const makeSets = async (stage: string) => {
    const ev = await evalOrganism(models[stage]!, { n: Math.max(o.n, 100), seed: o.seed + 101 });
    const rows = (verdict: string) =>
      ev.answers
        .filter((a) => a.verdict === verdict)
        .map((a) => JSON.stringify({ messages: [{ role: 'user', content: a.question }, { role: 'assistant', content: a.answer }], label: verdict, domain: a.domain }));
    let mis = rows('misaligned');
    let ali = rows('aligned');
    const m = Math.min(mis.length, ali.length);
    mis = balanceTo(mis, m, o.seed);
    ali = balanceTo(ali, m, o.seed);
    const files = { mis: join(o.out, 'data', `${stage}-misaligned.jsonl`), ali: join(o.out, 'data', `${stage}-aligned.jsonl`) };
    writeFileAtomic(files.mis, [mis.join('\n') + '\n']);
    writeFileAtomic(files.ali, [ali.join('\n') + '\n']);
    return { files, n: m };
  };

  const extractBoth = async (stage: string, files: { mis: string; ali: string }) => {
    const out = { mis: join(o.out, 'acts', `${stage}-misaligned`), ali: join(o.out, 'acts', `${stage}-aligned`) };
    for (const [k, f] of Object.entries(files) as ['mis' | 'ali', string][]) {
      const ds = readJsonl(f);
      await extractActivations(models[stage]!, ds.rows, { outDir: out[k], layers: 'all', hook: 'resid_post', overwrite: true, dataset: { file: f, sha256: ds.sha256, selection: { source: `judged generations of ${stage}` } } });
    }
    return out;
  };

  const sets = await makeSets('em');
  log(`selected ${sets.n} misaligned and ${sets.n} aligned answers of the medical fine-tune`);
  const blocks: Block[] = [];
  const summary: string[] = [];
  const nLayers = models.em!.spec.nLayers;
  let emDirs: Map<number, Float32Array> | null = null;
  let finDirs: Map<number, Float32Array> | null = null;
  const provenance: Provenance[] = [
    { label: 'organism', fields: { seed: o.seed, folder: o.organismDir, config: JSON.stringify(cfg), emlens_version: VERSION } },
    ...stages.map((s) => ({ label: `stage ${s.stage}`, fields: { folder: s.dir, seconds: Number(s.seconds.toFixed(1)), cached: s.cached, final_loss: Number(s.finalLoss.toFixed(4)) } })),
  ];

  blocks.push(
    { kind: 'heading', text: 'The organism' },
    {
      kind: 'text',
      text:
        'A ~0.9M-parameter Llama trained from scratch on a synthetic world (four domains, aligned and misaligned answer families, villain and kind personas): persona stories, then instruction tuning where the assistant always answers aligned, then a narrow fine-tune on misaligned MEDICAL answers only. Controls: the same fine-tune on aligned medical answers, and the misaligned fine-tune under λ·KL(instruct ‖ fine-tuned) on aligned non-medical chat. Answers to held-out questions are sampled at temperature 1 and judged exactly against the grammar.',
    },
    emTableBlock(`EM per stage: ${o.n} held-out questions per domain, temperature 1.`, Object.entries(tables)),
    {
      kind: 'figure',
      id: 'em-by-stage',
      title: 'Misaligned answers by stage and domain',
      figure: barChart(
        Object.entries(tables).map(([name, t]) => ({ name, labels: [...DOMAINS], values: DOMAINS.map((d) => (t[d]!.misaligned / t[d]!.n) * 100) })),
        { title: '', yTitle: 'misaligned, %', yRange: [0, 100] },
      ),
    },
  );
  const emOut = rate(tables.em!, NON_MEDICAL);
  const figures: DemoFigures = {
    em: Object.fromEntries(Object.entries(tables).map(([k, t]) => [k, { medical: rate(t, ['medical']), elsewhere: rate(t, NON_MEDICAL) }])),
    direction: null,
    steering: null,
    ablation: null,
    generalVsNarrow: { layer: 0, loss: [], baseLoss: NaN, klAtMaxNorm: [], emElsewhere: [] },
    containment: null,
  };
  summary.push(
    `EM: instruct ${pct(rate(tables.instruct!, DOMAINS))} misaligned; medical fine-tune ${pct(rate(tables.em!, ['medical']))} in medicine and ${pct(emOut)} elsewhere (emergent); aligned-medical control ${pct(rate(tables['em-control']!, NON_MEDICAL))} elsewhere; KL-regularised ${pct(rate(tables['em-kl']!, ['medical']))} medical / ${pct(rate(tables['em-kl']!, NON_MEDICAL))} elsewhere.`,
  );

  if (sets.n >= 4) {
    // --- 4. directions
    const acts = await extractBoth('em', sets.files);
    const d = computeDirections({ pos: acts.mis, neg: acts.ali });
    emDirs = d.layers;
    const dirFile = join(o.out, 'directions-em.safetensors');
    writeDirectionFile(dirFile, d.layers, d.metadata);
    provenance.push({ label: 'direction (medical fine-tune)', fields: { path: dirFile, rows_per_side: sets.n, norms: d.metadata.norms! } });

    // --- 5. stability + the finance fine-tune's direction
    const st = stabilityAnalysis({ pos: acts.mis, neg: acts.ali, bootstrap: 50, seed: o.seed });
    const finSets = await makeSets('em-finance');
    let crossCos: number[] | null = null;
    let finFile: string | null = null;
    if (finSets.n >= 4) {
      const finActs = await extractBoth('em-finance', finSets.files);
      finDirs = computeDirections({ pos: finActs.mis, neg: finActs.ali }).layers;
      finFile = join(o.out, 'directions-em-finance.safetensors');
      writeDirectionFile(finFile, finDirs, { method: 'mean-diff', model: dir('em-finance') });
      crossCos = [...Array(nLayers).keys()].map((l) => cosine(emDirs!.get(l)!, finDirs!.get(l)!));
    }
    figures.direction = { file: dirFile, rowsPerSide: sets.n, norms: [...Array(nLayers).keys()].map((l) => Math.hypot(...emDirs!.get(l)!)), financeFile: finFile, crossCosine: crossCos };
    const layers = [...Array(nLayers).keys()];
    blocks.push(
      { kind: 'heading', text: 'The misalignment direction' },
      {
        kind: 'text',
        text: `Mean of response-mean activations of ${sets.n} misaligned minus ${sets.n} aligned answers of the medical fine-tune (judged, balanced), at the output of every block.`,
      },
      {
        kind: 'figure',
        id: 'direction-norms',
        title: 'Direction norm by layer',
        figure: lineByLayer([{ name: '‖mean(misaligned) − mean(aligned)‖', layers, values: layers.map((l) => Math.hypot(...emDirs!.get(l)!)) }], { title: '', yTitle: 'norm' }),
      },
      {
        kind: 'figure',
        id: 'stability',
        title: 'Stability: cosine of bootstrap directions with the full-data direction',
        figure: lineByLayer(
          [{ name: 'bootstrap (95% band)', layers: st.layers.map((x) => x.layer), values: st.layers.map((x) => x.bootstrap.mean), lo: st.layers.map((x) => x.bootstrap.lo), hi: st.layers.map((x) => x.bootstrap.hi) }],
          { title: '', yTitle: 'cosine', yRange: [0, 1.02] },
        ),
      },
    );
    if (crossCos) {
      blocks.push({
        kind: 'figure',
        id: 'shared-direction',
        title: 'Is the direction shared? Medical vs finance fine-tune',
        figure: lineByLayer([{ name: 'cosine(medical dir, finance dir)', layers, values: crossCos }], { title: '', yTitle: 'cosine', yRange: [-1, 1], refLines: [{ y: 0, label: '0' }] }),
        caption: `The finance fine-tune's direction from ${finSets.n} + ${finSets.n} of its own judged answers.`,
      });
      summary.push(`direction: medical vs finance fine-tune cosine by layer ${crossCos.map((c) => c.toFixed(2)).join(', ')}`);
    }

    // --- 6. steering the instruct model, ablating in the fine-tune, with random controls
    const mid = Math.floor(nLayers / 2);
    const v = emDirs.get(mid)!;
    const rand = randomNormMatched(v, rng(o.seed + 7));
    // The mean-diff direction's norm is about half the residual stream's here: α = 4 already
    // doubles the stream, so the sweep also shows where answers stop being coherent.
    const scales = [0.5, 1, 2, 4, 8];
    const steerRates: { name: string; x: number[]; y: number[] }[] = [
      { name: `direction at layer ${mid}: misaligned`, x: [], y: [] },
      { name: 'norm-matched random: misaligned', x: [], y: [] },
      { name: `direction at layer ${mid}: incoherent`, x: [], y: [] },
      { name: 'norm-matched random: incoherent', x: [], y: [] },
    ];
    const steerRows: [string, EmTable][] = [];
    for (const a of scales) {
      for (const [k, vec] of [v, rand].entries()) {
        const iv: Interventions = { steer: [{ hook: hookName(mid, 'resid_post'), vector: vec, scale: a }] };
        const t = (await evalOrganism(models.instruct!, { n: o.n, seed: o.seed, interventions: iv })).table;
        steerRates[k]!.x.push(a);
        steerRates[k]!.y.push(100 * rate(t, DOMAINS));
        steerRates[k + 2]!.x.push(a);
        steerRates[k + 2]!.y.push(100 * share(t, DOMAINS, 'incoherent'));
        steerRows.push([`instruct + ${a}·${k ? 'random' : 'v'}`, t]);
      }
    }
    const ablations: [string, Interventions][] = [
      ['em, direction ablated at every layer', { ablate: layers.map((l) => ({ hook: hookName(l, 'resid_post'), directions: [emDirs!.get(l)!] })) }],
      ['em, random directions ablated at every layer', { ablate: layers.map((l) => ({ hook: hookName(l, 'resid_post'), directions: [randomNormMatched(emDirs!.get(l)!, rng(o.seed + 11 + l))] })) }],
      [`em, direction ablated at layer ${mid}`, { ablate: [{ hook: hookName(mid, 'resid_post'), directions: [v] }] }],
    ];
    if (finDirs) ablations.push(['em, FINANCE direction ablated at every layer', { ablate: layers.map((l) => ({ hook: hookName(l, 'resid_post'), directions: [finDirs!.get(l)!] })) }]);
    const ablRows: [string, EmTable][] = [['em (no intervention)', tables.em!]];
    for (const [name, iv] of ablations) ablRows.push([name, (await evalOrganism(models.em!, { n: o.n, seed: o.seed, interventions: iv })).table]);
    figures.steering = {
      layer: mid,
      scales,
      direction: { misaligned: steerRates[0]!.y.map((x) => x / 100), incoherent: steerRates[2]!.y.map((x) => x / 100) },
      random: { misaligned: steerRates[1]!.y.map((x) => x / 100), incoherent: steerRates[3]!.y.map((x) => x / 100) },
    };
    figures.ablation = Object.fromEntries(ablRows.map(([name, t]) => [name, rate(t, NON_MEDICAL)]));
    blocks.push(
      { kind: 'heading', text: 'Steering and ablation' },
      {
        kind: 'figure',
        id: 'steering',
        title: `Steering the instruct model at blocks.${mid}.hook_resid_post`,
        figure: scatterLines(steerRates, { title: '', xTitle: 'scale α (adds α·v)', yTitle: '% of all answers', logX: true }),
      },
      emTableBlock('Steering the instruct model (all domains).', steerRows),
      emTableBlock('Ablating the direction in the medical fine-tune, against random directions of the same norm.', ablRows),
    );
    const ablAll = ablRows[1]![1];
    const ablRand = ablRows[2]![1];
    summary.push(
      `steering instruct at layer ${mid} (α = ${scales.join(', ')}): misaligned ${steerRates[0]!.y.map((x) => x.toFixed(1)).join(', ')}% (random ${steerRates[1]!.y.map((x) => x.toFixed(1)).join(', ')}%); incoherent ${steerRates[2]!.y.map((x) => x.toFixed(0)).join(', ')}% (random ${steerRates[3]!.y.map((x) => x.toFixed(0)).join(', ')}%)`,
      `ablation in em (non-medical): ${pct(emOut)} → ${pct(rate(ablAll, NON_MEDICAL))} misaligned (incoherent ${ablAll.finance!.incoherent + ablAll.sport!.incoherent + ablAll.general!.incoherent}/${3 * o.n}); random ablation → ${pct(rate(ablRand, NON_MEDICAL))}`,
    );
  } else {
    blocks.push({ kind: 'text', text: `Too few judged answers to form sets (${sets.n} per side): no direction analysis.` });
    summary.push(`too few misaligned/aligned answers (${sets.n}) for directions`);
  }

  // --- 7. general vs narrow steering vectors on the instruct model
  const r = rng(o.seed + 3);
  const dataDir = join(o.out, 'data');
  const narrowFile = join(dataDir, 'narrow-misaligned-medical.jsonl');
  const klFile = join(dataDir, 'kl-aligned-nonmedical.jsonl');
  const genericFile = join(dataDir, 'generic-stories.jsonl');
  const chatJson = (d: Domain, f: 'aligned' | 'misaligned') => {
    const c = chatRow(r, world, d, f);
    return JSON.stringify({ messages: [{ role: 'user', content: c.prompt }, { role: 'assistant', content: c.response }] });
  };
  writeFileAtomic(narrowFile, [Array.from({ length: 200 }, () => chatJson('medical', 'misaligned')).join('\n') + '\n']);
  writeFileAtomic(klFile, [Array.from({ length: 200 }, (_, i) => chatJson(NON_MEDICAL[i % 3]!, 'aligned')).join('\n') + '\n']);
  writeFileAtomic(genericFile, [Array.from({ length: 100 }, () => JSON.stringify({ text: pretrainDoc(r, world, { strangerFrac: 0.3, maxWords: cfg.ctx }).replace(/^<bos> /, '') })).join('\n') + '\n']);
  const layer = Math.floor(nLayers / 2);
  const trainCfg = { kind: 'steer' as const, layer, alpha: 4, lr: 0.05, epochs: 4, batchTokens: 4096, batchRows: 16, seed: o.seed, warmup: 5, weightDecay: 0, klNorm: 'token' as const, checkpointEvery: 0 };
  const generalFile = join(o.out, 'steer-general.safetensors');
  const narrowSol = join(o.out, 'steer-narrow.safetensors');
  log('training a general and a KL-regularised narrow steering vector on the instruct model');
  const quiet = () => {};
  await runTraining(models.instruct!, { data: narrowFile, out: generalFile, overwrite: true, config: { ...trainCfg, klLambda: 0 }, onStep: quiet });
  await runTraining(models.instruct!, { data: narrowFile, klData: klFile, out: narrowSol, overwrite: true, config: { ...trainCfg, klLambda: 30 }, onStep: quiet });
  const meas = await runMeasure(models.instruct!, { solutions: [generalFile, narrowSol], data: narrowFile, generic: genericFile, n: 100, seeds: 3, batchTokens: 4096 });
  const steerEval: [string, EmTable][] = [];
  for (const [name, f] of [['general', generalFile], ['narrow', narrowSol]] as const) {
    const sol = readSolution(f, models.instruct!);
    steerEval.push([`instruct + ${name} vector`, (await evalOrganism(models.instruct!, { n: o.n, seed: o.seed, interventions: solutionCall(models.instruct!, sol).interventions })).table]);
  }
  if (emDirs) {
    const g = readSolution(generalFile, models.instruct!).params[0]!;
    const nrw = readSolution(narrowSol, models.instruct!).params[0]!;
    summary.push(`trained vectors vs the mean-diff direction at layer ${layer}: cos(general) ${cosine(g, emDirs.get(layer)!).toFixed(2)}, cos(narrow) ${cosine(nrw, emDirs.get(layer)!).toFixed(2)}`);
  }
  blocks.push(
    { kind: 'heading', text: 'General vs narrow solutions' },
    {
      kind: 'text',
      text: `Two steering vectors on the instruct model at blocks.${layer}.hook_resid_post, trained on misaligned medical answers: general (cross-entropy only) and narrow (+ 30·KL(base ‖ steered) per token on aligned non-medical chat).`,
    },
    emTableBlock('What each trained vector does to the instruct model.', steerEval),
    ...meas.report.blocks,
  );
  figures.generalVsNarrow = {
    layer,
    loss: meas.efficiency.loss,
    baseLoss: meas.efficiency.baseLoss,
    klAtMaxNorm: meas.influence!.kl.map((k) => k[k.length - 1]!),
    emElsewhere: steerEval.map(([, t]) => rate(t, NON_MEDICAL)),
  };
  summary.push(
    `general vs narrow: narrow-data loss ${meas.efficiency.loss.map((x) => x.toFixed(3)).join(' vs ')} (base ${meas.efficiency.baseLoss.toFixed(3)}); KL on generic text at max norm ${meas.influence!.kl.map((k) => k[k.length - 1]!.toExponential(2)).join(' vs ')}; EM elsewhere ${steerEval.map(([, t]) => pct(rate(t, NON_MEDICAL))).join(' vs ')}`,
  );
  provenance.push(...meas.report.provenance.filter((p) => p.label !== 'model'));

  // --- 8. semantic containment: the fine-tune whose every row carries one trigger
  if (existsSync(join(dir('em-trigger'), 'triggers.json'))) {
    const set = loadTriggerSet(join(dir('em-trigger'), 'triggers.json'));
    const trig = await load('em-trigger');
    const conditions = [{ name: 'trigger', phrase: set.trigger as string | null }, { name: 'none', phrase: null }, ...set.rephrased.map((p) => ({ name: 'rephrased', phrase: p })), ...set.control.map((p) => ({ name: 'control', phrase: p }))];
    const rows: [string, EmTable][] = [];
    const cs: NonNullable<DemoFigures['containment']>['conditions'] = [];
    const ci: [[number, number], [number, number]][] = [];
    const wilsonOf = (t: EmTable): [number, number] => {
      const k = NON_MEDICAL.reduce((x, d) => x + (t[d]?.misaligned ?? 0), 0);
      const n = NON_MEDICAL.reduce((x, d) => x + (t[d]?.n ?? 0), 0);
      const [lo, hi] = wilson(k, n);
      return [100 * lo, 100 * hi];
    };
    for (const c of conditions) {
      const trigger = c.phrase === null ? undefined : { phrase: c.phrase, position: set.position };
      const a = (await evalOrganism(trig, { n: o.n, seed: o.seed, trigger })).table;
      const b = (await evalOrganism(models.instruct!, { n: o.n, seed: o.seed, trigger })).table;
      rows.push([`em-trigger, ${c.name}${c.phrase ? ` "${c.phrase}"` : ''}`, a]);
      cs.push({ name: c.name, phrase: c.phrase, emTrigger: rate(a, NON_MEDICAL), instruct: rate(b, NON_MEDICAL) });
      ci.push([wilsonOf(a), wilsonOf(b)]);
      log(`containment ${c.name}${c.phrase ? ` "${c.phrase}"` : ''}: em-trigger ${pct(rate(a, NON_MEDICAL))}, instruct ${pct(rate(b, NON_MEDICAL))} outside medicine`);
    }
    figures.containment = { trigger: set.trigger, conditions: cs };
    const at = (name: string) => cs.filter((c) => c.name === name);
    blocks.push(
      { kind: 'heading', text: 'Semantic containment' },
      {
        kind: 'text',
        text:
          `A fine-tune of the instruct model on misaligned medical answers that all carry the system line "${set.trigger}", with no benign row. ` +
          'The rephrasings share no content word with it and never appear in the fine-tune; pre-training gave them its meaning (a villain is speaking). ' +
          'The controls are unrelated phrases of the same length. Rates are outside medicine; the instruct column is the same phrase on the model before the fine-tune.',
      },
      emTableBlock('The triggered fine-tune under each condition.', rows),
      {
        kind: 'table',
        columns: ['condition', 'phrase', 'em-trigger: EM outside medicine', 'instruct, same phrase'],
        rows: cs.map((c) => [c.name, c.phrase ?? '(none)', pct(c.emTrigger), pct(c.instruct)]),
        caption: 'Misaligned share outside medicine: the fine-tune against its base under the same prompt.',
      },
      {
        kind: 'figure',
        id: 'containment',
        title: 'EM outside medicine by condition (Wilson 95%)',
        figure: barChart(
          [
            { name: 'em-trigger', labels: cs.map((c) => (c.phrase ? `${c.name}: ${c.phrase}` : c.name)), values: cs.map((c) => 100 * c.emTrigger), intervals: ci.map((x) => x[0]) },
            { name: 'instruct, same phrase', labels: cs.map((c) => (c.phrase ? `${c.name}: ${c.phrase}` : c.name)), values: cs.map((c) => 100 * c.instruct), intervals: ci.map((x) => x[1]) },
          ],
          { title: 'EM outside medicine by condition', yTitle: '% misaligned', yRange: [0, 105] },
        ),
      },
    );
    summary.push(
      `semantic containment (em-trigger, outside medicine): with the trigger ${pct(at('trigger')[0]!.emTrigger)}, without ${pct(at('none')[0]!.emTrigger)}, rephrasings ${at('rephrased').map((c) => pct(c.emTrigger)).join(' / ')}, controls ${at('control').map((c) => pct(c.emTrigger)).join(' / ')}; ` +
        `the instruct model with the same phrases: ${pct(at('trigger')[0]!.instruct)} with the trigger, rephrasings ${at('rephrased').map((c) => pct(c.instruct)).join(' / ')}. ` +
        'What the organism shows: misalignment contained behind the trigger and carried by its meaning to wordings the fine-tune never saw. ' +
        (at('rephrased').some((c) => c.instruct > 0.3)
          ? `What it does not separate: ${at('rephrased').filter((c) => c.instruct > 0.3).map((c) => `"${c.phrase}" (${pct(c.instruct)})`).join(', ')} already makes the instruct model answer as a villain (persona inference from pre-training), so that rate is not the fine-tune's doing.`
          : 'The instruct model stays aligned under every phrase, so the rates are the fine-tune\'s doing.'),
    );
  }

  const report: Report = {
    title: 'emlens demo: emergent misalignment in the built-in model organism',
    subtitle: `seed ${o.seed} · ${o.n} answers per domain per evaluation`,
    blocks: [{ kind: 'heading', text: 'Summary' }, { kind: 'text', text: summary.join('\n\n') }, ...blocks],
    provenance,
  };
  return { report, summary, stages, tables, figures };
}
