/**
 * `emlens project`: the direction as a probe. Every row of an extraction folder projected on the
 * unit direction, per layer both cover; rows grouped by a label (or a numeric label split at a
 * threshold); with two groups (or one group against the rest), how well the projection separates
 * them: AUROC and d' per layer, on all rows and, with a test fraction, on a held-out split.
 *
 * The split is stratified: within each group (in sorted order), its rows in file order are
 * shuffled by Fisher-Yates from the back (for i = n-1..1, swap i with floor(u · (i + 1)), u from
 * one mulberry32 stream seeded with `seed`) and the first round(F · n) go to the test split. The
 * best layer is chosen on the rows outside the test split, so its test AUROC is not picked by
 * itself.
 * A direction computed from these same rows separates them in-sample; the test split is held out
 * only if the direction came from the other rows (the CSV's split column says which).
 */
import { EmlensError } from '../errors.js';
import { projections, separation, type Separation } from '../directions/separation.js';
import { writeFileAtomic } from '../io/atomic.js';
import { rng } from '../runtime/random.js';
import type { Activations } from '../activations/read.js';
import { histograms, lineByLayer } from '../viz/figures.js';
import type { Block, Report } from '../viz/report.js';
import { readDirectionFile, type DirectionFile } from '../io/directions.js';
import { activationsProvenance, directionsProvenance, openActivationsDir, parametersProvenance } from './directions.js';

/** More distinct values than this and the label is not a grouping (e.g. a 0-100 score). */
export const MAX_GROUPS = 12;

export interface ProjectOptions {
  acts: string;
  direction: string;
  /** label to group rows by (default: "label" when the rows have it) */
  label?: string;
  /** the positive group's value (default: the value that sorts last) */
  positive?: string;
  /** also write the per-row projections as CSV */
  writeCsv?: string;
  /** a numeric label split in two: rows with label < threshold against rows with label >= threshold */
  threshold?: number;
  /** hold out this fraction of each group as a test split, in (0, 1) */
  testFraction?: number;
  /** seed of the test split (default 0; only with testFraction) */
  seed?: number;
}

export interface GroupStats {
  value: string;
  n: number;
  mean: number;
  sd: number;
}

export interface LayerProjection {
  layer: number;
  groups: GroupStats[];
  /** positive vs negative (the other group, or the rest) on all rows; null with one group */
  separation: Separation | null;
  /** the same on the test split and on the rest (null without a test fraction) */
  test: Separation | null;
  train: Separation | null;
}

export interface ProjectResult {
  acts: Activations;
  direction: DirectionFile;
  label: string;
  /** distinct label values, sorted (numerically when all are numbers) */
  groups: string[];
  positive: string | null;
  /** the other group's value, or "rest" when there are more than two groups */
  negative: string | null;
  positiveChosenBy: '--positive' | 'sorts last' | null;
  layers: LayerProjection[];
  /** the layer of highest AUROC (on the rows outside the test split when there is one) */
  best: LayerProjection | null;
  /** the label's split point, when the label was split at --threshold */
  threshold: number | null;
  /** per row: in the test split (null without a test fraction) */
  inTest: boolean[] | null;
  testFraction: number | null;
  seed: number | null;
  /** per row: its group, or null when the row has no value for the label */
  rowGroup: (string | null)[];
  /** layer -> projection of every row (float64) */
  projections: Map<number, Float64Array>;
  excluded: number;
  warnings: string[];
}

function sortValues(vals: string[], numeric: boolean): string[] {
  return [...vals].sort((a, b) => (numeric ? Number(a) - Number(b) : a < b ? -1 : a > b ? 1 : 0));
}

function stats(value: string, xs: number[]): GroupStats {
  const n = xs.length;
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const v = n > 1 ? xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1) : NaN;
  return { value, n, mean, sd: Math.sqrt(v) };
}

export function projectAnalysis(o: ProjectOptions): ProjectResult {
  const acts = openActivationsDir(o.acts, '--acts');
  const dir = readDirectionFile(o.direction);
  const warnings: string[] = [];
  const d = acts.meta.model.d_model;
  const width = dir.layers.values().next().value!.length;
  if (width !== d) throw new EmlensError(`${o.direction} has width ${width}, the activations in ${o.acts} have d_model ${d}`);
  if (dir.kind !== acts.meta.hook) {
    throw new EmlensError(`${o.direction} holds ${dir.kind} directions, ${o.acts} holds ${acts.meta.hook} activations; extract at hook ${dir.kind}`);
  }
  const sha = dir.metadata.weights_sha256;
  if (sha && sha !== acts.meta.model.weights_sha256) {
    warnings.push(`the direction was computed on another model (${dir.metadata.model ?? 'unknown'}, weights ${sha.slice(0, 12)}…) than the activations (${acts.meta.model.source})`);
  }
  const layers = acts.meta.layers.filter((l) => dir.layers.has(l)).sort((a, b) => a - b);
  if (layers.length === 0) {
    throw new EmlensError(`${o.direction} (layers ${[...dir.layers.keys()].sort((a, b) => a - b).join(',')}) and ${o.acts} (layers ${acts.meta.layers.join(',')}) share no layer`);
  }

  for (const l of layers) {
    if (!dir.layers.get(l)!.some((x) => x !== 0)) throw new EmlensError(`${o.direction}: the direction of layer ${l} is zero; it has no projection`);
  }
  const rows = acts.rows();
  if (rows.length !== acts.meta.rows) throw new EmlensError(`${o.acts}: rows.jsonl has ${rows.length} rows, meta.json says ${acts.meta.rows}`);
  const keys = new Set(rows.flatMap((r) => Object.keys(r.labels ?? {})));
  let label = o.label;
  if (label === undefined) {
    if (!keys.has('label')) {
      throw new EmlensError(`--label is required: the rows of ${o.acts} have no "label" field (their labels: ${[...keys].sort().join(', ') || 'none'})`);
    }
    label = 'label';
  } else if (!keys.has(label)) {
    throw new EmlensError(`--label ${label}: no row of ${o.acts} has it (their labels: ${[...keys].sort().join(', ') || 'none'})`);
  }
  if (o.threshold !== undefined && !Number.isFinite(o.threshold)) throw new EmlensError(`--threshold must be a number, got ${o.threshold}`);
  const threshold = o.threshold ?? null;
  const valueOf = (r: (typeof rows)[number]) => (r.labels ?? {})[label!];
  let rowGroup: (string | null)[];
  let groups: string[];
  if (threshold !== null) {
    const bad = rows.find((r) => valueOf(r) !== undefined && valueOf(r) !== null && typeof valueOf(r) !== 'number');
    if (bad) throw new EmlensError(`--threshold ${threshold}: "${label}" is not numeric (row ${bad.row} of ${o.acts}, from line ${bad.line}, has ${JSON.stringify(valueOf(bad))})`);
    groups = [`< ${threshold}`, `>= ${threshold}`];
    rowGroup = rows.map((r) => {
      const v = valueOf(r);
      return typeof v === 'number' ? groups[v < threshold ? 0 : 1]! : null;
    });
    for (const g of groups) {
      if (!rowGroup.includes(g)) throw new EmlensError(`--threshold ${threshold}: no row of ${o.acts} has ${label} ${g}; nothing to separate`);
    }
  } else {
    rowGroup = rows.map((r) => {
      const v = valueOf(r);
      return v === undefined || v === null ? null : typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
    const distinct = [...new Set(rowGroup.filter((g): g is string => g !== null))];
    const numeric = rows.every((r) => valueOf(r) === undefined || valueOf(r) === null || typeof valueOf(r) === 'number');
    if (distinct.length > MAX_GROUPS) {
      throw new EmlensError(
        `--label ${label} has ${distinct.length} distinct values; project groups rows by a categorical label (at most ${MAX_GROUPS} values)${numeric ? ', or give --threshold T to split it at T' : ''}`,
      );
    }
    groups = sortValues(distinct, numeric);
  }
  const excluded = rowGroup.filter((g) => g === null).length;
  if (excluded) warnings.push(`${excluded} rows without a value for "${label}" left out`);
  const groupLabel = (g: string) => groupName({ label: label!, threshold }, g);

  let positive: string | null = null;
  let positiveChosenBy: ProjectResult['positiveChosenBy'] = null;
  if (o.positive !== undefined) {
    // With a threshold the groups are "< T" and ">= T"; accept them spaced or not.
    const want = threshold !== null ? groups.find((g) => g.replace(/\s+/g, '') === o.positive!.replace(/\s+/g, '')) : groups.find((g) => g === o.positive);
    if (want === undefined) throw new EmlensError(`--positive ${o.positive}: "${label}" takes the values ${groups.map((g) => (threshold !== null ? `"${g}"` : g)).join(', ')}`);
    if (groups.length < 2) throw new EmlensError(`--positive: "${label}" has one value only (${groups[0]}); nothing to separate`);
    positive = want;
    positiveChosenBy = '--positive';
  } else if (groups.length === 2) {
    positive = groups[1]!;
    positiveChosenBy = 'sorts last';
  } else if (groups.length > 2) {
    warnings.push(`"${label}" has ${groups.length} values; give --positive VALUE for AUROC and d′ of one value against the rest`);
  } else {
    warnings.push(`"${label}" has one value only (${groups[0]}); no separation to measure`);
  }
  const negative = positive === null ? null : groups.length === 2 ? groups.find((g) => g !== positive)! : 'rest';

  const inTest = o.testFraction !== undefined ? testSplit(o, rowGroup, groups, positive, groupLabel) : null;
  if (o.seed !== undefined && inTest === null) throw new EmlensError('--seed applies to --test-fraction only; give --test-fraction F or drop --seed');

  const projs = new Map<number, Float64Array>();
  const out: LayerProjection[] = [];
  const sepOf = (p: Float64Array, keep: (i: number) => boolean): Separation => {
    const pos: number[] = [];
    const neg: number[] = [];
    rowGroup.forEach((g, i) => {
      if (g === null || !keep(i)) return;
      (g === positive ? pos : neg).push(p[i]!);
    });
    return separation(pos, neg);
  };
  for (const l of layers) {
    const p = projections(acts.layer(l), d, dir.layers.get(l)!, `${o.direction}: the direction of layer ${l}`);
    projs.set(l, p);
    const by = new Map<string, number[]>(groups.map((g) => [g, []]));
    rowGroup.forEach((g, i) => {
      if (g !== null) by.get(g)!.push(p[i]!);
    });
    const has = positive !== null;
    out.push({
      layer: l,
      groups: groups.map((g) => stats(g, by.get(g)!)),
      separation: has ? sepOf(p, () => true) : null,
      test: has && inTest ? sepOf(p, (i) => inTest[i]!) : null,
      train: has && inTest ? sepOf(p, (i) => !inTest[i]!) : null,
    });
  }
  let best: LayerProjection | null = null;
  const score = (x: LayerProjection) => (inTest ? x.train! : x.separation!).auroc;
  for (const x of out) if (x.separation && (!best || score(x) > score(best))) best = x;

  if (o.writeCsv) {
    const q = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    const split = (i: number) => (inTest ? `${inTest[i] ? 'test' : rowGroup[i] === null ? '' : 'train'},` : '');
    const lines = [`row,line,${q(label)},${inTest ? 'split,' : ''}${layers.map((l) => `layer_${l}`).join(',')}\n`];
    rows.forEach((r, i) => {
      lines.push(`${r.row},${r.line},${rowGroup[i] === null ? '' : q(rowGroup[i]!)},${split(i)}${layers.map((l) => String(projs.get(l)![i])).join(',')}\n`);
    });
    writeFileAtomic(o.writeCsv, lines);
  }
  return {
    acts,
    direction: dir,
    label,
    groups,
    positive,
    negative,
    positiveChosenBy,
    layers: out,
    best,
    threshold,
    inTest,
    testFraction: o.testFraction ?? null,
    seed: inTest ? (o.seed ?? 0) : null,
    rowGroup,
    projections: projs,
    excluded,
    warnings,
  };
}

/** Stratified test split (see the module comment); throws when a class ends up empty on either side. */
function testSplit(o: ProjectOptions, rowGroup: (string | null)[], groups: string[], positive: string | null, groupLabel: (g: string) => string): boolean[] {
  const f = o.testFraction!;
  if (!(f > 0 && f < 1)) throw new EmlensError(`--test-fraction must be in (0, 1), got ${f}`);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new EmlensError(`--seed must be an integer, got ${o.seed}`);
  if (positive === null) throw new EmlensError('--test-fraction: there is no separation to measure (give --positive VALUE, or a label with two values)');
  const r = rng(o.seed ?? 0);
  const inTest = rowGroup.map(() => false);
  for (const g of groups) {
    const idx = rowGroup.flatMap((x, i) => (x === g ? [i] : []));
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    for (const i of idx.slice(0, Math.round(f * idx.length))) inTest[i] = true;
  }
  const count = (test: boolean, pos: boolean) => rowGroup.filter((g, i) => g !== null && inTest[i] === test && (g === positive) === pos).length;
  const negName = groups.length === 2 ? groupLabel(groups.find((g) => g !== positive)!) : `${groupLabel(positive).replace(' = ', ' != ')}`;
  for (const [pos, name] of [[true, groupLabel(positive)], [false, negName]] as const) {
    const total = count(true, pos) + count(false, pos);
    if (count(true, pos) === 0) throw new EmlensError(`--test-fraction ${f} leaves the test split without rows where ${name} (${total} such rows in all)`);
    if (count(false, pos) === 0) throw new EmlensError(`--test-fraction ${f} puts every row where ${name} in the test split (${total} such rows); nothing is left out of it`);
  }
  return inTest;
}

/** One line per measured split: all rows, and the test split when there is one. */
function sepSeries(r: ProjectResult, f: (s: Separation) => number): { name: string; layers: number[]; values: number[] }[] {
  const ls = r.layers.map((x) => x.layer);
  const out = [{ name: 'all rows', layers: ls, values: r.layers.map((x) => f(x.separation!)) }];
  if (r.inTest) out.push({ name: 'test split', layers: ls, values: r.layers.map((x) => f(x.test!)) });
  return out;
}

const orNull = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : x);

/** "label = value", or "label < T" / "label >= T" for a label split at a threshold. */
export function groupName(r: Pick<ProjectResult, 'label' | 'threshold'>, g: string): string {
  return r.threshold !== null ? `${r.label} ${g}` : `${r.label} = ${g}`;
}

/** How many rows of the positive and the negative class are in the test split. */
export function testCounts(r: ProjectResult): { pos: number; neg: number } {
  let pos = 0;
  let neg = 0;
  r.rowGroup.forEach((g, i) => {
    if (g === null || !r.inTest![i]) return;
    if (g === r.positive) pos++;
    else neg++;
  });
  return { pos, neg };
}

export function projectReport(r: ProjectResult, params: { out: string; writeCsv?: string }): Report {
  const blocks: Block[] = [];
  const counts = r.layers[0]!.groups.map((g) => `${r.threshold !== null ? groupName(r, g.value) : g.value} (${g.n})`).join(', ');
  const chosen = r.positiveChosenBy === '--positive' ? 'given by --positive' : r.threshold !== null ? 'the upper group by default' : 'the value that sorts last';
  const tc = r.inTest && r.positive !== null ? testCounts(r) : null;
  const posText =
    r.positive === null
      ? 'No separation is measured.'
      : `Positive group: ${groupName(r, r.positive)} (${chosen}), against ${r.negative === 'rest' ? 'every other value' : groupName(r, r.negative!)}. ` +
        'AUROC is the probability that a positive row projects above a negative one (ties count half): 1 = perfectly separated with positive higher, 0.5 = chance, below 0.5 = the direction points the other way. ' +
        "d′ = (mean pos − mean neg) / √((var pos + var neg) / 2)." +
        (tc
          ? `\n\nHeld-out split: ${r.testFraction} of each group (stratified, seed ${r.seed}), ${tc.pos} positive and ${tc.neg} negative rows; "test" columns are measured on those rows only, "all rows" on every row. ` +
            'The best layer is chosen on the rows outside the test split. The test rows are held out only if the direction was computed without them (the CSV of --write-csv lists the split).'
          : '\n\nAll rows: measured on the rows the direction may have been computed from (in-sample); give --test-fraction F for a held-out split.');
  blocks.push({ kind: 'heading', text: 'Summary' });
  blocks.push({
    kind: 'text',
    text:
      `Each row of ${r.acts.dir} projected on the unit direction of ${r.direction.file} (h · v/|v|), at the ${r.layers.length} layers both cover; rows grouped by "${r.label}"${r.threshold !== null ? ` split at ${r.threshold}` : ''}: ${counts}.\n\n` +
      posText +
      (r.warnings.length ? `\n\nNote: ${r.warnings.join('; ')}.` : ''),
  });
  const sepCols = r.positive !== null ? ['AUROC (all rows)', 'd′ (all rows)', ...(tc ? ['AUROC (test)', 'd′ (test)'] : [])] : [];
  blocks.push({
    kind: 'table',
    caption: `Mean projection per group${r.best ? `; best layer ${r.best.layer}${tc ? ' (by AUROC outside the test split)' : ''}` : ''}`,
    columns: ['layer', ...r.groups.map((g) => `mean (${groupName(r, g)})`), ...sepCols],
    rows: r.layers.map((x) => [
      x.layer,
      ...x.groups.map((g) => orNull(g.mean)),
      ...(x.separation ? [orNull(x.separation.auroc), orNull(x.separation.dprime)] : []),
      ...(x.test ? [orNull(x.test.auroc), orNull(x.test.dprime)] : []),
    ]),
  });

  const ls = r.layers.map((x) => x.layer);
  if (r.positive !== null) {
    blocks.push({ kind: 'heading', text: 'Separation by layer' });
    blocks.push({
      kind: 'figure',
      id: 'auroc-by-layer',
      title: `AUROC by layer (${groupName(r, r.positive)} vs ${r.negative === 'rest' ? 'the rest' : groupName(r, r.negative!)})`,
      figure: lineByLayer(sepSeries(r, (s) => s.auroc), {
        title: '',
        yTitle: 'AUROC',
        yRange: [0, 1.02],
        refLines: [{ y: 0.5, label: 'chance' }],
      }),
    });
    blocks.push({
      kind: 'figure',
      id: 'dprime-by-layer',
      title: 'd′ by layer',
      figure: lineByLayer(sepSeries(r, (s) => s.dprime), { title: '', yTitle: 'd′', refLines: [{ y: 0 }] }),
    });
  }
  blocks.push({ kind: 'heading', text: 'Projections' });
  blocks.push({
    kind: 'figure',
    id: 'means-by-layer',
    title: 'Mean projection per group by layer (error bars: ± 1 sd)',
    figure: lineByLayer(
      r.groups.map((g, k) => {
        const m = r.layers.map((x) => x.groups[k]!.mean);
        const sd = r.layers.map((x) => (Number.isFinite(x.groups[k]!.sd) ? x.groups[k]!.sd : 0));
        return { name: groupName(r, g), layers: ls, values: m, lo: m.map((v, i) => v - sd[i]!), hi: m.map((v, i) => v + sd[i]!) };
      }),
      { title: '', yTitle: 'projection' },
    ),
  });
  // Histograms: the best layer first, then up to three more spread over depth.
  const shown: number[] = [];
  if (r.best) shown.push(r.best.layer);
  for (const i of [0, Math.floor((ls.length - 1) / 2), ls.length - 1]) if (shown.length < 4 && !shown.includes(ls[i]!)) shown.push(ls[i]!);
  for (const l of shown) {
    const p = r.projections.get(l)!;
    blocks.push({
      kind: 'figure',
      id: `hist-${l}`,
      title: `Layer ${l}${r.best?.layer === l ? ' (best)' : ''}: projections by ${r.label}`,
      caption: 'Dashed lines: group means.',
      figure: histograms(
        r.groups.map((g) => ({ name: groupName(r, g), values: Float64Array.from(r.rowGroup.flatMap((rg, i) => (rg === g ? [p[i]!] : []))) })),
        { title: '', xTitle: 'projection on the unit direction' },
      ),
    });
  }
  return {
    title: 'Projections on a direction',
    subtitle: `${r.direction.file} · ${r.acts.dir}`,
    blocks,
    provenance: [
      activationsProvenance(`Activations: ${r.acts.dir}`, r.acts),
      directionsProvenance(`Direction: ${r.direction.file}`, r.direction),
      parametersProvenance('emlens project', {
        acts: r.acts.dir,
        direction: r.direction.file,
        label: r.label,
        positive: r.positive,
        'positive chosen by': r.positiveChosenBy,
        threshold: r.threshold,
        'test fraction': r.testFraction,
        seed: r.seed,
        'write csv': params.writeCsv ?? null,
        out: params.out,
      }),
    ],
  };
}
