/**
 * `emlens project`: the direction as a probe. Every row of an extraction folder projected on the
 * unit direction, per layer both cover; rows grouped by a label; with two groups (or one group
 * against the rest), how well the projection separates them: AUROC and d' per layer.
 */
import { EmlensError } from '../errors.js';
import { projections, separation, type Separation } from '../directions/separation.js';
import { writeFileAtomic } from '../io/atomic.js';
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
  /** positive vs negative (the other group, or the rest); null with one group */
  separation: Separation | null;
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
  /** the layer of highest AUROC */
  best: LayerProjection | null;
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
  const rowGroup = rows.map((r) => {
    const v = (r.labels ?? {})[label!];
    return v === undefined || v === null ? null : typeof v === 'object' ? JSON.stringify(v) : String(v);
  });
  const excluded = rowGroup.filter((g) => g === null).length;
  const distinct = [...new Set(rowGroup.filter((g): g is string => g !== null))];
  if (distinct.length > MAX_GROUPS) {
    throw new EmlensError(`--label ${label} has ${distinct.length} distinct values; project groups rows by a categorical label (at most ${MAX_GROUPS} values)`);
  }
  const numeric = rows.every((r) => {
    const v = (r.labels ?? {})[label!];
    return v === undefined || v === null || typeof v === 'number';
  });
  const groups = sortValues(distinct, numeric);
  if (excluded) warnings.push(`${excluded} rows without a value for "${label}" left out`);

  let positive: string | null = null;
  let positiveChosenBy: ProjectResult['positiveChosenBy'] = null;
  if (o.positive !== undefined) {
    if (!groups.includes(o.positive)) throw new EmlensError(`--positive ${o.positive}: "${label}" takes the values ${groups.join(', ')}`);
    if (groups.length < 2) throw new EmlensError(`--positive: "${label}" has one value only (${groups[0]}); nothing to separate`);
    positive = o.positive;
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

  const projs = new Map<number, Float64Array>();
  const out: LayerProjection[] = [];
  for (const l of layers) {
    const p = projections(acts.layer(l), d, dir.layers.get(l)!, `${o.direction}: the direction of layer ${l}`);
    projs.set(l, p);
    const by = new Map<string, number[]>(groups.map((g) => [g, []]));
    rowGroup.forEach((g, i) => {
      if (g !== null) by.get(g)!.push(p[i]!);
    });
    let sep: Separation | null = null;
    if (positive !== null) {
      const pos: number[] = [];
      const neg: number[] = [];
      rowGroup.forEach((g, i) => {
        if (g === null) return;
        (g === positive ? pos : neg).push(p[i]!);
      });
      sep = separation(pos, neg);
    }
    out.push({ layer: l, groups: groups.map((g) => stats(g, by.get(g)!)), separation: sep });
  }
  let best: LayerProjection | null = null;
  for (const x of out) if (x.separation && (!best || x.separation.auroc > best.separation!.auroc)) best = x;

  if (o.writeCsv) {
    const q = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    const lines = [`row,line,${q(label)},${layers.map((l) => `layer_${l}`).join(',')}\n`];
    rows.forEach((r, i) => {
      lines.push(`${r.row},${r.line},${rowGroup[i] === null ? '' : q(rowGroup[i]!)},${layers.map((l) => String(projs.get(l)![i])).join(',')}\n`);
    });
    writeFileAtomic(o.writeCsv, lines);
  }
  return { acts, direction: dir, label, groups, positive, negative, positiveChosenBy, layers: out, best, rowGroup, projections: projs, excluded, warnings };
}

const orNull = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : x);

export function projectReport(r: ProjectResult, params: { out: string; writeCsv?: string }): Report {
  const blocks: Block[] = [];
  const counts = r.layers[0]!.groups.map((g) => `${g.value} (${g.n})`).join(', ');
  const posText =
    r.positive === null
      ? 'No separation is measured.'
      : `Positive group: ${r.label} = ${r.positive} (${r.positiveChosenBy === '--positive' ? 'given by --positive' : 'the value that sorts last'}), against ${r.negative === 'rest' ? 'every other value' : `${r.label} = ${r.negative}`}. ` +
        'AUROC is the probability that a positive row projects above a negative one (ties count half): 1 = perfectly separated with positive higher, 0.5 = chance, below 0.5 = the direction points the other way. ' +
        "d′ = (mean pos − mean neg) / √((var pos + var neg) / 2).";
  blocks.push({ kind: 'heading', text: 'Summary' });
  blocks.push({
    kind: 'text',
    text:
      `Each row of ${r.acts.dir} projected on the unit direction of ${r.direction.file} (h · v/|v|), at the ${r.layers.length} layers both cover; rows grouped by "${r.label}": ${counts}.\n\n` +
      posText +
      (r.warnings.length ? `\n\nNote: ${r.warnings.join('; ')}.` : ''),
  });
  const sepCols = r.positive !== null ? ['AUROC', 'd′'] : [];
  blocks.push({
    kind: 'table',
    caption: `Mean projection per group${r.best ? `; best layer ${r.best.layer}` : ''}`,
    columns: ['layer', ...r.groups.map((g) => `mean (${r.label} = ${g})`), ...sepCols],
    rows: r.layers.map((x) => [x.layer, ...x.groups.map((g) => orNull(g.mean)), ...(x.separation ? [orNull(x.separation.auroc), orNull(x.separation.dprime)] : [])]),
  });

  const ls = r.layers.map((x) => x.layer);
  if (r.positive !== null) {
    blocks.push({ kind: 'heading', text: 'Separation by layer' });
    blocks.push({
      kind: 'figure',
      id: 'auroc-by-layer',
      title: `AUROC by layer (${r.label} = ${r.positive} vs ${r.negative})`,
      figure: lineByLayer([{ name: 'AUROC', layers: ls, values: r.layers.map((x) => x.separation!.auroc) }], {
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
      figure: lineByLayer([{ name: 'd′', layers: ls, values: r.layers.map((x) => x.separation!.dprime) }], { title: '', yTitle: 'd′', refLines: [{ y: 0 }] }),
    });
  }
  blocks.push({ kind: 'heading', text: 'Projections' });
  blocks.push({
    kind: 'figure',
    id: 'means-by-layer',
    title: 'Mean projection per group by layer (band: ± 1 sd)',
    figure: lineByLayer(
      r.groups.map((g, k) => {
        const m = r.layers.map((x) => x.groups[k]!.mean);
        const sd = r.layers.map((x) => (Number.isFinite(x.groups[k]!.sd) ? x.groups[k]!.sd : 0));
        return { name: `${r.label} = ${g}`, layers: ls, values: m, lo: m.map((v, i) => v - sd[i]!), hi: m.map((v, i) => v + sd[i]!) };
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
        r.groups.map((g) => ({ name: `${r.label} = ${g}`, values: Float64Array.from(r.rowGroup.flatMap((rg, i) => (rg === g ? [p[i]!] : []))) })),
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
        'write csv': params.writeCsv ?? null,
        out: params.out,
      }),
    ],
  };
}
