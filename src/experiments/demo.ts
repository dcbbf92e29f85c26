/**
 * `emlens demo`: the whole study on the built-in model organism, offline, into one report.
 *
 * 1. build (or reuse) the organism, plus an extra misaligned fine-tune on finance;
 * 2. EM tables of every stage (exact judge);
 * 3. generate with the medical fine-tune, judge, and select misaligned / aligned answer sets;
 * 4. extract response-mean activations of both sets, every layer; mean-difference directions;
 * 5. stability of those directions; the same for the finance fine-tune, and compare the two;
 * 6. steer the instruct model with the direction at every layer x scale (outside medicine), with
 *    a norm-matched random vector at the best cell, and ablate it in the fine-tuned model against
 *    norm-matched random directions, measuring EM with the judge;
 * 7. train a general and a KL-regularised narrow steering vector and measure both;
 * 8. semantic containment: the em-trigger fine-tune with its trigger, none, rephrasings and
 *    controls, against the instruct model with the same phrases;
 * 9. the papers' mechanism claims, each checked on those figures (demo-claims.ts).
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
import { rng } from '../runtime/random.js';
import { buildOrganism, DEFAULT_ORGANISM, type OrganismConfig, type StageInfo } from '../organism/build.js';
import { evalOrganism, type EvalOptions } from '../organism/eval.js';
import { wilson, type EmTable } from '../organism/judge.js';
import { buildWorld, DOMAINS, type Domain } from '../organism/world.js';
import { readSolution, solutionCall } from '../train/trainer.js';
import { chatRow, pretrainDoc } from '../organism/corpus.js';
import { computeDirections } from './directions.js';
import { randomNormMatchedLayers } from './sweep.js';
import { reductionPct } from './ablate-eval.js';
import { bestSteeringCell, boundText, claimLine, CLAIM_THRESHOLDS, formatClaimValue, mechanismClaims, type Claim, type SteerCell } from './demo-claims.js';
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
  /**
   * Steering the instruct model with the direction, every layer x every scale, outside medicine;
   * the best cell by the sweep's rule (demo-claims' bestSteeringCell) and a norm-matched random
   * vector there (randomFile: the random vector of every layer, as steer-sweep draws them).
   */
  steering: {
    layers: number[];
    scales: number[];
    /** per layer: misaligned / incoherent shares outside medicine, per scale */
    grid: Rates[];
    best: (SteerCell & { random: { misaligned: number; incoherent: number } }) | null;
    randomFile: string;
  } | null;
  /**
   * Misaligned and incoherent shares outside medicine in the medical fine-tune, per ablation, and
   * the relative EM change 100·(before − after)/before (ablate-eval's reduction, %).
   */
  ablation: {
    none: Share;
    everyLayer: Share;
    randomEveryLayer: Share;
    atLayer: Share & { layer: number };
    financeEveryLayer: Share | null;
    reductionPct: { everyLayer: number | null; randomEveryLayer: number | null; financeEveryLayer: number | null };
    randomFile: string;
  } | null;
  /**
   * [general, narrow]: narrow-data loss as trained; at equalNorm, the largest added norm of the two
   * (both rescaled to it), narrow-data loss and KL on generic text; relative loss increase under
   * perturbation at ε = robustnessEpsilon (%); EM outside medicine of the instruct model with each.
   */
  generalVsNarrow: {
    layer: number;
    loss: number[];
    baseLoss: number;
    equalNorm: number;
    lossAtEqualNorm: number[];
    robustnessEpsilon: number;
    robustness: number[];
    klAtEqualNorm: number[];
    emElsewhere: number[];
  };
  /**
   * Semantic containment (the em-trigger stage): misaligned share outside medicine per condition,
   * for the triggered fine-tune and, as the baseline the fine-tune is measured against, the
   * instruct model with the same phrase.
   */
  /** Rates outside medicine; emTriggerMedical: the fine-tune's own domain. */
  containment: { trigger: string; conditions: { name: string; phrase: string | null; emTrigger: number; emTriggerMedical: number; instruct: number }[] } | null;
  /** Issue 11's claims about the mechanism, each judged on the figures above (demo-claims). */
  claims: Claim[];
}

/** A misaligned and an incoherent share. */
export interface Share {
  misaligned: number;
  incoherent: number;
}
/** Misaligned and incoherent shares along one axis (a layer's scales). */
export interface Rates {
  misaligned: number[];
  incoherent: number[];
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
/**
 * Steering scales of the sweep. The mean-diff direction's norm is about half the residual
 * stream's here: α = 4 already doubles the stream, so the sweep also shows where answers stop
 * being coherent.
 */
const STEER_SCALES = [0.5, 1, 2, 4, 8];

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
    generalVsNarrow: { layer: 0, loss: [], baseLoss: NaN, equalNorm: NaN, lossAtEqualNorm: [], robustnessEpsilon: CLAIM_THRESHOLDS.robustnessEpsilon, robustness: [], klAtEqualNorm: [], emElsewhere: [] },
    containment: null,
    claims: [],
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
    // The sweep: every layer x every scale, outside medicine (where EM is emergent). The best cell
    // is chosen by the sweep's rule (bestSteeringCell); a norm-matched random vector, steer-sweep's
    // random of that layer, is measured there.
    const mid = Math.floor(nLayers / 2);
    const steerIn = (l: number, vector: Float32Array, scale: number): EvalOptions => ({ n: o.n, seed: o.seed, domains: NON_MEDICAL, interventions: { steer: [{ hook: hookName(l, 'resid_post'), vector, scale }] } });
    const shares = (t: EmTable): Share => ({ misaligned: rate(t, NON_MEDICAL), incoherent: share(t, NON_MEDICAL, 'incoherent') });
    const steerLines: { name: string; x: number[]; y: number[] }[] = [];
    const steerRows: [string, EmTable][] = [];
    const grid: Rates[] = [];
    const t6 = Date.now();
    for (const l of layers) {
      const cell: Rates = { misaligned: [], incoherent: [] };
      for (const a of STEER_SCALES) {
        const t = (await evalOrganism(models.instruct!, steerIn(l, emDirs.get(l)!, a))).table;
        cell.misaligned.push(rate(t, NON_MEDICAL));
        cell.incoherent.push(share(t, NON_MEDICAL, 'incoherent'));
        steerRows.push([`instruct + ${a}·v at layer ${l}`, t]);
      }
      grid.push(cell);
      steerLines.push({ name: `layer ${l}: misaligned`, x: STEER_SCALES, y: cell.misaligned.map((x) => 100 * x) }, { name: `layer ${l}: incoherent`, x: STEER_SCALES, y: cell.incoherent.map((x) => 100 * x) });
      log(`steering at layer ${l} (α = ${STEER_SCALES.join(', ')}): misaligned ${cell.misaligned.map(pct).join(', ')}, incoherent ${cell.incoherent.map(pct).join(', ')} outside medicine`);
    }
    const randomSteer = randomNormMatchedLayers(emDirs, layers, o.seed + 7);
    const randomSteerFile = join(o.out, 'random-steer.safetensors');
    writeDirectionFile(randomSteerFile, randomSteer, { method: 'norm-matched gaussian', of: dirFile, seed: String(o.seed + 7) });
    const cell = bestSteeringCell(layers, STEER_SCALES, grid);
    let best: NonNullable<DemoFigures['steering']>['best'] = null;
    if (cell) {
      const t = (await evalOrganism(models.instruct!, steerIn(cell.layer, randomSteer.get(cell.layer)!, cell.scale))).table;
      best = { ...cell, random: shares(t) };
      steerRows.push([`instruct + ${cell.scale}·random at layer ${cell.layer}`, t]);
    }
    log(`steering sweep: ${((Date.now() - t6) / 1000).toFixed(0)} s`);
    const randomAblate = randomNormMatchedLayers(emDirs, layers, o.seed + 11);
    const randomAblateFile = join(o.out, 'random-ablate.safetensors');
    writeDirectionFile(randomAblateFile, randomAblate, { method: 'norm-matched gaussian', of: dirFile, seed: String(o.seed + 11) });
    const everyLayer = (dirs: Map<number, Float32Array>): Interventions => ({ ablate: layers.map((l) => ({ hook: hookName(l, 'resid_post'), directions: [dirs.get(l)!] })) });
    const ablations: [string, Interventions][] = [
      ['em, direction ablated at every layer', everyLayer(emDirs)],
      ['em, random directions ablated at every layer', everyLayer(randomAblate)],
      [`em, direction ablated at layer ${mid}`, { ablate: [{ hook: hookName(mid, 'resid_post'), directions: [emDirs.get(mid)!] }] }],
    ];
    if (finDirs) ablations.push(['em, FINANCE direction ablated at every layer', everyLayer(finDirs)]);
    const ablRows: [string, EmTable][] = [['em (no intervention)', tables.em!]];
    for (const [name, iv] of ablations) ablRows.push([name, (await evalOrganism(models.em!, { n: o.n, seed: o.seed, interventions: iv })).table]);
    figures.steering = { layers, scales: STEER_SCALES, grid, best, randomFile: randomSteerFile };
    const [none, all, rnd, atMid, fin] = ablRows.map(([, t]) => shares(t));
    const cut = (x: Share | undefined) => (x ? reductionPct(none!.misaligned, x.misaligned) : null);
    figures.ablation = {
      none: none!,
      everyLayer: all!,
      randomEveryLayer: rnd!,
      atLayer: { ...atMid!, layer: mid },
      financeEveryLayer: fin ?? null,
      reductionPct: { everyLayer: cut(all), randomEveryLayer: cut(rnd), financeEveryLayer: cut(fin) },
      randomFile: randomAblateFile,
    };
    blocks.push(
      { kind: 'heading', text: 'Steering and ablation' },
      {
        kind: 'figure',
        id: 'steering',
        title: 'Steering the instruct model with the direction, every layer (outside medicine)',
        figure: scatterLines(steerLines, { title: '', xTitle: 'scale α (adds α·v)', yTitle: '% of answers outside medicine', logX: true }),
      },
      emTableBlock(`Steering the instruct model (outside medicine); the random row is a norm-matched random vector at the best cell (the highest EM with ≤ ${pct(CLAIM_THRESHOLDS.steerMaxIncoherent)} incoherent).`, steerRows),
      emTableBlock('Ablating the direction in the medical fine-tune, against random directions of the same norm.', ablRows),
    );
    const ab = figures.ablation;
    const pc = (x: number | null) => (x === null ? '–' : `${x.toFixed(1)}%`);
    summary.push(
      best
        ? `steering instruct (outside medicine, every layer x α = ${STEER_SCALES.join(', ')}): best cell with ≤ ${pct(CLAIM_THRESHOLDS.steerMaxIncoherent)} incoherent is layer ${best.layer}, α = ${best.scale}: misaligned ${pct(best.misaligned)}, incoherent ${pct(best.incoherent)}; a norm-matched random vector there ${pct(best.random.misaligned)} (incoherent ${pct(best.random.incoherent)}). Highest misaligned share anywhere in the sweep: ${pct(Math.max(...grid.flatMap((c) => c.misaligned)))}.`
        : `steering instruct: every cell of the sweep is more than ${pct(CLAIM_THRESHOLDS.steerMaxIncoherent)} incoherent`,
      `ablation in em (outside medicine): ${pct(none!.misaligned)} → ${pct(all!.misaligned)} with the direction ablated at every layer (relative cut ${pc(ab.reductionPct.everyLayer)}, incoherent ${pct(all!.incoherent)}); random directions → ${pct(rnd!.misaligned)} (relative cut ${pc(ab.reductionPct.randomEveryLayer)})` +
        (fin ? `; the finance fine-tune's direction → ${pct(fin.misaligned)} (relative cut ${pc(ab.reductionPct.financeEveryLayer)}, incoherent ${pct(fin.incoherent)})` : ''),
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
  // Both vectors are steering vectors, so they share one norm axis (measure's equal-norm grid):
  // its last point, the larger of the two added norms, is where both are compared at equal norm.
  const eff = meas.efficiency;
  const atEqual = (xs: number[][]) => xs.map((x) => x[x.length - 1]!);
  const eps = meas.robustness.epsilons.indexOf(CLAIM_THRESHOLDS.robustnessEpsilon);
  figures.generalVsNarrow = {
    layer,
    loss: eff.loss,
    baseLoss: eff.baseLoss,
    equalNorm: eff.norms[0]![eff.norms[0]!.length - 1]!,
    lossAtEqualNorm: atEqual(eff.byNorm),
    robustnessEpsilon: CLAIM_THRESHOLDS.robustnessEpsilon,
    robustness: meas.robustness.mean.map((m) => m[eps]!),
    klAtEqualNorm: atEqual(meas.influence!.kl),
    emElsewhere: steerEval.map(([, t]) => rate(t, NON_MEDICAL)),
  };
  const gn = figures.generalVsNarrow;
  summary.push(
    `general vs narrow: narrow-data loss ${gn.loss.map((x) => x.toFixed(3)).join(' vs ')} (base ${gn.baseLoss.toFixed(3)}); at equal norm ${gn.equalNorm.toFixed(2)} ${gn.lossAtEqualNorm.map((x) => x.toFixed(3)).join(' vs ')}; loss increase under perturbation at ε = ${gn.robustnessEpsilon} ${gn.robustness.map((x) => `${x.toFixed(1)}%`).join(' vs ')}; KL on generic text at equal norm ${gn.klAtEqualNorm.map((k) => k.toExponential(2)).join(' vs ')}; EM elsewhere ${gn.emElsewhere.map(pct).join(' vs ')}`,
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
      cs.push({ name: c.name, phrase: c.phrase, emTrigger: rate(a, NON_MEDICAL), emTriggerMedical: rate(a, ['medical']), instruct: rate(b, NON_MEDICAL) });
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
          'The rephrasings share no content word with it and never appear in the fine-tune; pre-training gave them its meaning (a villain is speaking), and instruction tuning taught the assistant to answer aligned after each of them, the trigger included. ' +
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
          : 'The instruct model stays aligned under every phrase, so the rates are the fine-tune\'s doing.') +
        ` In medicine, the fine-tune's own domain: ${pct(at('trigger')[0]!.emTriggerMedical)} with the trigger, ${pct(at('none')[0]!.emTriggerMedical)} without` +
        (at('none')[0]!.emTriggerMedical > 0.3 ? ': there the misalignment is not contained, only its emergent part elsewhere is.' : '.'),
    );
  }

  // --- 9. what holds and what does not of the papers' mechanism, on the figures above
  figures.claims = mechanismClaims(figures, nLayers);
  summary.push(...figures.claims.map(claimLine));
  const claimBlocks: Block[] = [
    { kind: 'heading', text: 'The mechanism: what holds and what does not' },
    {
      kind: 'text',
      text:
        `The papers' claims about the misalignment direction, each checked on this run's figures (${o.n} answers per domain, held-out questions, rates outside medicine). ` +
        'A claim holds when every one of its checks does; the thresholds are fixed in advance (issue 11), not fitted to the organism.',
    },
    {
      kind: 'table',
      columns: ['claim', 'figure', 'measured', 'against', 'check holds', 'claim holds'],
      rows: figures.claims.flatMap((c) =>
        c.checks.map((k, i) => [i === 0 ? c.id : '', k.figure, formatClaimValue(k.value, k.unit), boundText(k), k.holds ? 'yes' : 'no', i === 0 ? (c.holds ? 'HOLDS' : 'DOES NOT HOLD') : '']),
      ),
      caption: figures.claims.map((c) => `${c.id}: ${c.claim}`).join(' '),
    },
  ];

  const report: Report = {
    title: 'emlens demo: emergent misalignment in the built-in model organism',
    subtitle: `seed ${o.seed} · ${o.n} answers per domain per evaluation`,
    blocks: [{ kind: 'heading', text: 'Summary' }, { kind: 'text', text: summary.join('\n\n') }, ...claimBlocks, ...blocks],
    provenance,
  };
  return { report, summary, stages, tables, figures };
}
