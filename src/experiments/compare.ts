/**
 * `emlens compare`: how alike direction files are. For every pair of files, the per-layer cosine
 * similarity (signed, and absolute for directions whose sign is a convention) over the layers both
 * cover; for every file, the layer x layer similarity of its own directions; a summary table.
 * Past MAX_PAIR_LINES pairs (5 files make 10) one line per pair is spaghetti: the per-layer
 * cosines become a pair x layer heatmap, and their table one row per pair.
 */
import { basename } from 'node:path';
import { EmlensError } from '../errors.js';
import { norm } from '../directions/common.js';
import { crossLayerMatrix, layerCosines, type LayerCosine } from '../directions/similarity.js';
import { heatmap, lineByLayer } from '../viz/figures.js';
import type { Block, Report } from '../viz/report.js';
import { readDirectionFile, type DirectionFile } from '../io/directions.js';
import { directionsProvenance, parametersProvenance } from './directions.js';

export interface PairComparison {
  /** indices into files */
  a: number;
  b: number;
  cosines: LayerCosine[];
  /** means over the shared layers (NaN when none) */
  meanSigned: number;
  meanAbs: number;
  /** the shared layer of largest |cosine| */
  best: LayerCosine | null;
  min: number;
  max: number;
}

export interface CompareResult {
  files: DirectionFile[];
  /** short unique names of the files (basenames, paths where basenames collide) */
  names: string[];
  pairs: PairComparison[];
  /** per file: its layer x layer cosine matrix */
  within: { layers: number[]; m: Float64Array }[];
  warnings: string[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : NaN);

export function compareDirections(files: string[]): CompareResult {
  if (files.length < 2) throw new EmlensError(`compare needs at least two direction files, got ${files.length}`);
  const loaded = files.map((f) => readDirectionFile(f));
  const bases = loaded.map((f) => basename(f.file));
  const names = bases.map((b, i) => (bases.indexOf(b) !== bases.lastIndexOf(b) ? loaded[i]!.file : b));
  const warnings: string[] = [];
  const width = (f: DirectionFile) => f.layers.values().next().value!.length;
  for (let i = 1; i < loaded.length; i++) {
    if (width(loaded[i]!) !== width(loaded[0]!)) {
      throw new EmlensError(`${loaded[0]!.file} has width ${width(loaded[0]!)}, ${loaded[i]!.file} has ${width(loaded[i]!)}: directions of different models cannot be compared`);
    }
  }
  const kinds = new Set(loaded.map((f) => f.kind));
  if (kinds.size > 1) warnings.push(`the files are at different hooks (${loaded.map((f, i) => `${names[i]}: ${f.kind}`).join(', ')}); layer l compares different points of the residual stream`);
  const pairs: PairComparison[] = [];
  for (let a = 0; a < loaded.length; a++) {
    for (let b = a + 1; b < loaded.length; b++) {
      const cosines = layerCosines(loaded[a]!.layers, loaded[b]!.layers);
      if (cosines.length === 0) warnings.push(`${names[a]} and ${names[b]} share no layer`);
      const finite = cosines.filter((c) => Number.isFinite(c.signed));
      let best: LayerCosine | null = null;
      for (const c of finite) if (!best || c.abs > best.abs) best = c;
      pairs.push({
        a,
        b,
        cosines,
        meanSigned: mean(finite.map((c) => c.signed)),
        meanAbs: mean(finite.map((c) => c.abs)),
        best,
        min: finite.length ? Math.min(...finite.map((c) => c.signed)) : NaN,
        max: finite.length ? Math.max(...finite.map((c) => c.signed)) : NaN,
      });
    }
  }
  const within = loaded.map((f) => crossLayerMatrix(f.layers));
  return { files: loaded, names, pairs, within, warnings };
}

/** More pairs than this and per-layer cosines are drawn as a heatmap, not as lines. */
export const MAX_PAIR_LINES = 6;

const pairName = (r: CompareResult, p: PairComparison) => `${r.names[p.a]} vs ${r.names[p.b]}`;
const orNull = (x: number) => (Number.isFinite(x) ? x : null);

export function compareReport(r: CompareResult, params: { files: string[]; out: string }): Report {
  const blocks: Block[] = [];
  blocks.push({ kind: 'heading', text: 'Summary' });
  blocks.push({
    kind: 'text',
    text:
      'Cosine similarity between the directions of each pair of files, layer by layer, over the layers both files cover. ' +
      'Signed cosines keep the direction of each vector (mean-diff directions point from neg to pos); absolute cosines ignore the sign, ' +
      'for methods whose sign is only a convention. Means are over the shared layers; the best layer is the one of largest |cosine|.' +
      (r.warnings.length ? `\n\nNote: ${r.warnings.join('; ')}.` : ''),
  });
  blocks.push({
    kind: 'table',
    caption: 'Pairs of files: signed cosine (cos) and absolute cosine (|cos|) over the shared layers; best = the layer of largest |cos|',
    columns: ['A', 'B', 'shared layers', 'mean cos', 'mean |cos|', 'min cos', 'max cos', 'best layer', 'cos at best'],
    rows: r.pairs.map((p) => [
      r.names[p.a]!,
      r.names[p.b]!,
      p.cosines.length,
      orNull(p.meanSigned),
      orNull(p.meanAbs),
      orNull(p.min),
      orNull(p.max),
      p.best ? p.best.layer : null,
      p.best ? p.best.signed : null,
    ]),
  });
  blocks.push({
    kind: 'table',
    caption: 'Files',
    columns: ['file', 'format', 'hook', 'method', 'layers', 'smallest norm', 'largest norm'],
    rows: r.files.map((f, i) => {
      const norms = [...f.layers.values()].map((v) => norm(v));
      const ls = [...f.layers.keys()].sort((a, b) => a - b);
      return [r.names[i]!, f.format, f.kind, f.metadata.method ?? null, `${ls.length} (${ls[0]}..${ls[ls.length - 1]})`, Math.min(...norms), Math.max(...norms)];
    }),
  });

  blocks.push({ kind: 'heading', text: 'Cosine by layer' });
  const withLayers = r.pairs.filter((p) => p.cosines.length > 0);
  const series = (abs: boolean) =>
    withLayers.map((p) => ({ name: pairName(r, p), layers: p.cosines.map((c) => c.layer), values: p.cosines.map((c) => (abs ? c.abs : c.signed)) }));
  const allLayers = [...new Set(withLayers.flatMap((p) => p.cosines.map((c) => c.layer)))].sort((a, b) => a - b);
  const at = (p: PairComparison, l: number, abs: boolean) => {
    const c = p.cosines.find((x) => x.layer === l);
    return c ? (abs ? c.abs : c.signed) : NaN;
  };
  if (withLayers.length > MAX_PAIR_LINES) {
    const names = withLayers.map((p) => pairName(r, p));
    const cols = allLayers.map(String);
    const grid = (abs: boolean) => Float64Array.from(withLayers.flatMap((p) => allLayers.map((l) => at(p, l, abs))));
    blocks.push({
      kind: 'figure',
      id: 'cosine-signed',
      title: 'Signed cosine similarity by layer, one row per pair of files',
      caption: `${withLayers.length} pairs: a heatmap rather than ${withLayers.length} overlapping lines. Blank cells: the pair does not share the layer.`,
      figure: heatmap(grid(false), names, cols, { title: '', zmin: -1, zmax: 1, xTitle: 'layer', zTitle: 'cosine' }),
    });
    blocks.push({
      kind: 'figure',
      id: 'cosine-abs',
      title: 'Absolute cosine similarity by layer, one row per pair of files',
      figure: heatmap(grid(true), names, cols, { title: '', zmin: 0, zmax: 1, xTitle: 'layer', zTitle: '|cosine|' }),
    });
    blocks.push({
      kind: 'table',
      caption: 'Signed cosine per pair (rows) and layer (columns) (— where a pair does not share the layer)',
      columns: ['pair', ...cols],
      rows: withLayers.map((p, k) => [names[k]!, ...allLayers.map((l) => orNull(at(p, l, false)))]),
    });
  } else if (withLayers.length) {
    blocks.push({
      kind: 'figure',
      id: 'cosine-signed',
      title: 'Signed cosine similarity by layer',
      figure: lineByLayer(series(false), { title: '', yTitle: 'cosine', yRange: [-1.05, 1.05], refLines: [{ y: 0 }] }),
    });
    blocks.push({
      kind: 'figure',
      id: 'cosine-abs',
      title: 'Absolute cosine similarity by layer',
      figure: lineByLayer(series(true), { title: '', yTitle: '|cosine|', yRange: [0, 1.05] }),
    });
    blocks.push({
      kind: 'table',
      caption: 'Signed cosine per layer (— where a pair does not share the layer)',
      columns: ['layer', ...withLayers.map((p) => pairName(r, p))],
      rows: allLayers.map((l) => [l, ...withLayers.map((p) => orNull(at(p, l, false)))]),
    });
  } else {
    blocks.push({ kind: 'text', text: 'No pair of files shares a layer.' });
  }
  blocks.push({
    kind: 'figure',
    id: 'norms',
    title: 'Direction norm by layer',
    caption: 'Mean-diff directions are unnormalised: the norm is the size of the mean difference. PCA directions have norm 1.',
    figure: lineByLayer(
      r.files.map((f, i) => {
        const ls = [...f.layers.keys()].sort((a, b) => a - b);
        return { name: r.names[i]!, layers: ls, values: ls.map((l) => norm(f.layers.get(l)!)) };
      }),
      { title: '', yTitle: '|v|' },
    ),
  });

  if (r.files.length >= 3) {
    const n = r.files.length;
    const m = new Float64Array(n * n);
    for (let i = 0; i < n; i++) m[i * n + i] = 1;
    for (const p of r.pairs) {
      m[p.a * n + p.b] = p.meanSigned;
      m[p.b * n + p.a] = p.meanSigned;
    }
    blocks.push({
      kind: 'figure',
      id: 'files-matrix',
      title: 'Mean signed cosine between files',
      caption: 'Each cell: the signed cosine averaged over the layers the two files share.',
      figure: heatmap(m, r.names, r.names, { title: '', zmin: -1, zmax: 1, zTitle: 'cosine' }),
    });
  }

  blocks.push({ kind: 'heading', text: 'Layer × layer similarity within each file' });
  blocks.push({ kind: 'text', text: 'Signed cosine between the directions of two layers of the same file: how far a direction carries across depth.' });
  r.files.forEach((f, i) => {
    const w = r.within[i]!;
    if (w.layers.length < 2) {
      blocks.push({ kind: 'text', text: `${r.names[i]}: one layer only (${w.layers[0]}), no matrix.` });
      return;
    }
    const labels = w.layers.map(String);
    blocks.push({
      kind: 'figure',
      id: `within-${i}`,
      title: r.names[i]!,
      figure: heatmap(w.m, labels, labels, { title: '', zmin: -1, zmax: 1, xTitle: 'layer', yTitle: 'layer', zTitle: 'cosine' }),
    });
  });

  return {
    title: 'Direction comparison',
    subtitle: r.names.join(' · '),
    blocks,
    provenance: [
      ...r.files.map((f, i) => directionsProvenance(`File ${i + 1}: ${r.names[i]}`, f)),
      parametersProvenance(`emlens compare ${params.files.join(' ')} --out ${params.out}`, { files: params.files.length, out: params.out }),
    ],
  };
}
