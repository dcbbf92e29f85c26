/**
 * `emlens stability`: how much a pos/neg direction depends on the particular rows it was computed
 * from, per layer. Bootstrap and split-half cosines to the full-data direction with 95% percentile
 * intervals, and the subsample curve (cosine to the full-data direction against rows per side)
 * with the number of rows the direction needs to settle above a threshold.
 *
 * Randomness: one seed. Each layer uses the same streams (bootstrap: seed, split-half: seed + 1,
 * subsamples: seed + 2), so every layer sees the same draws of rows and layers compare like for
 * like.
 */
import { EmlensError } from '../errors.js';
import type { DirectionMethod } from '../directions/common.js';
import { norm } from '../directions/common.js';
import {
  bootstrapStability,
  computeDirection,
  rowsToSettle,
  splitHalf,
  subsampleCurve,
  type CosineSummary,
  type CurvePoint,
  type SplitHalfResult,
} from '../directions/stability.js';
import { lineByLayer, scatterLines } from '../viz/figures.js';
import type { Block, Report } from '../viz/report.js';
import {
  activationsProvenance,
  checkPaired,
  DIRECTION_METHODS,
  openPair,
  parametersProvenance,
  tokenWeights,
  WEIGHT_MODES,
  type ActivationPair,
  type WeightMode,
} from './directions.js';

export interface StabilityOptions {
  pos: string;
  neg: string;
  method?: DirectionMethod;
  weight?: WeightMode;
  /** bootstrap replicates, also the repeats of split-half and of each subsample size (default 100) */
  bootstrap?: number;
  seed?: number;
  /** cosine the subsample curve must reach and keep (default 0.9) */
  threshold?: number;
}

export interface LayerStability {
  layer: number;
  /** norm of the full-data direction (1 for pca) */
  norm: number;
  bootstrap: Omit<CosineSummary, 'cosines'>;
  /** null when there are too few rows to split (mean-diff: 2 per side; pca: 4 pairs) */
  splitHalf: { halves: Omit<CosineSummary, 'cosines'>; toFull: Omit<CosineSummary, 'cosines'> } | null;
  curve: CurvePoint[];
  /** smallest size from which the curve's mean stays >= threshold; null if never */
  settle: number | null;
  /** the same by the curve's lower 2.5% bound */
  settleLo: number | null;
}

export interface StabilityResult {
  method: DirectionMethod;
  weight: WeightMode;
  bootstrap: number;
  seed: number;
  threshold: number;
  sizes: number[];
  layers: LayerStability[];
  pair: ActivationPair;
  warnings: string[];
}

/** Powers of two from 8 below n, then n itself (n alone when n <= 8). */
export function subsampleSizes(n: number): number[] {
  const out: number[] = [];
  for (let s = 8; s < n; s *= 2) out.push(s);
  out.push(n);
  return out;
}

const strip = (s: CosineSummary): Omit<CosineSummary, 'cosines'> => ({ mean: s.mean, lo: s.lo, hi: s.hi, failed: s.failed });

export function stabilityAnalysis(o: StabilityOptions): StabilityResult {
  const method = o.method ?? 'mean-diff';
  const weight = o.weight ?? 'rows';
  const B = o.bootstrap ?? 100;
  const seed = o.seed ?? 0;
  const threshold = o.threshold ?? 0.9;
  if (!DIRECTION_METHODS.includes(method)) throw new EmlensError(`--method must be one of ${DIRECTION_METHODS.join(', ')}, got "${String(method)}"`);
  if (!WEIGHT_MODES.includes(weight)) throw new EmlensError(`--weight must be one of ${WEIGHT_MODES.join(', ')}, got "${String(weight)}"`);
  if (method === 'pca' && weight === 'tokens') throw new EmlensError('--weight tokens applies to --method mean-diff only (pca differences rows pairwise)');
  if (!Number.isInteger(B) || B < 2) throw new EmlensError(`--bootstrap must be an integer >= 2, got ${B}`);
  if (!(threshold > -1 && threshold <= 1)) throw new EmlensError(`--threshold must be in (-1, 1], got ${threshold}`);
  const pair = openPair(o.pos, o.neg);
  if (method === 'pca') checkPaired(pair);
  const { pos, neg, d } = pair;
  const np_ = pos.meta.rows;
  const nn = neg.meta.rows;
  const n = Math.min(np_, nn);
  if (method === 'pca' && n < 2) throw new EmlensError(`pca needs at least 2 pairs, got ${n}`);
  const sizes = subsampleSizes(n).filter((s) => s >= (method === 'pca' ? 2 : 1));
  const canSplit = method === 'pca' ? n >= 4 : np_ >= 2 && nn >= 2;
  const warnings = [...pair.warnings];
  if (!canSplit) warnings.push(`too few rows for split-half (${method === 'pca' ? 'needs 4 pairs' : 'needs 2 rows per side'}); left out`);
  const opts = {
    method,
    posWeights: weight === 'tokens' ? tokenWeights(pos) : undefined,
    negWeights: weight === 'tokens' ? tokenWeights(neg) : undefined,
  };
  const layers: LayerStability[] = [];
  for (const l of pair.layers) {
    const p = pos.layer(l);
    const q = neg.layer(l);
    const full = computeDirection(p, q, d, { ...opts, what: `pca at layer ${l} (--pos ${pos.dir}, --neg ${neg.dir})` });
    const boot = bootstrapStability(p, q, d, { ...opts, seed, n: B });
    let sh: SplitHalfResult | null = null;
    if (canSplit) sh = splitHalf(p, q, d, { ...opts, seed: seed + 1, repeats: B });
    const curve = subsampleCurve(p, q, d, { ...opts, seed: seed + 2, sizes, repeats: B });
    layers.push({
      layer: l,
      norm: norm(full),
      bootstrap: strip(boot),
      splitHalf: sh ? { halves: strip(sh.halves), toFull: strip(sh.toFull) } : null,
      curve,
      settle: rowsToSettle(curve, threshold, 'mean'),
      settleLo: rowsToSettle(curve, threshold, 'lo'),
    });
  }
  return { method, weight, bootstrap: B, seed, threshold, sizes, layers, pair, warnings };
}

const orNull = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : x);

/** At most `k` layers, evenly spread, always the first and last. */
function spread<T>(xs: T[], k: number): T[] {
  if (xs.length <= k) return xs;
  const idx = new Set<number>();
  for (let i = 0; i < k; i++) idx.add(Math.round((i * (xs.length - 1)) / (k - 1)));
  return [...idx].sort((a, b) => a - b).map((i) => xs[i]!);
}

export function stabilityReport(r: StabilityResult, params: { out: string }): Report {
  const side = r.method === 'pca' ? 'pairs' : 'rows per side';
  const blocks: Block[] = [];
  blocks.push({ kind: 'heading', text: 'Summary' });
  blocks.push({
    kind: 'text',
    text:
      `Direction: ${r.method}${r.method === 'mean-diff' ? ` (${r.weight}-weighted)` : ''} at ${r.pair.hook}, from ${r.pair.pos.meta.rows} pos and ${r.pair.neg.meta.rows} neg rows. ` +
      `Each cosine compares a direction computed from resampled rows with the direction from all rows (signed).\n\n` +
      `Bootstrap: ${r.bootstrap} resamples with replacement (${r.method === 'pca' ? 'of pairs' : 'within pos and within neg'}); the interval is the 2.5–97.5 percentile range. ` +
      `Split-half: ${r.bootstrap} random splits into two halves; the cosine between the halves' directions. ` +
      `Settling: for each subsample size (${r.sizes.join(', ')} ${side}), ${r.bootstrap} subsamples without replacement; ` +
      `a layer settles at the smallest size from which the mean cosine stays at or above ${r.threshold} (by the lower 2.5% bound in the last column). Seed ${r.seed}.` +
      (r.warnings.length ? `\n\nNote: ${r.warnings.join('; ')}.` : ''),
  });
  blocks.push({
    kind: 'table',
    caption: `Per layer: cosine to the full-data direction, mean and 95% interval (2.5–97.5 percentiles) over ${r.bootstrap} bootstrap resamples and over ${r.bootstrap} split halves (half vs half); ${side} needed to settle at ${r.threshold}, by the mean and by the 2.5% bound (— = not settled)`,
    columns: ['layer', 'norm', 'bootstrap', 'lo', 'hi', 'split-half', 'lo', 'hi', 'settle', 'settle (2.5%)'],
    rows: r.layers.map((x) => [
      x.layer,
      x.norm,
      orNull(x.bootstrap.mean),
      orNull(x.bootstrap.lo),
      orNull(x.bootstrap.hi),
      orNull(x.splitHalf?.halves.mean),
      orNull(x.splitHalf?.halves.lo),
      orNull(x.splitHalf?.halves.hi),
      x.settle,
      x.settleLo,
    ]),
  });

  blocks.push({ kind: 'heading', text: 'Stability by layer' });
  const ls = r.layers.map((x) => x.layer);
  const series: Parameters<typeof lineByLayer>[0] = [
    { name: 'bootstrap vs full', layers: ls, values: r.layers.map((x) => x.bootstrap.mean), lo: r.layers.map((x) => x.bootstrap.lo), hi: r.layers.map((x) => x.bootstrap.hi) },
  ];
  if (r.layers.every((x) => x.splitHalf)) {
    series.push({
      name: 'half vs half',
      layers: ls,
      values: r.layers.map((x) => x.splitHalf!.halves.mean),
      lo: r.layers.map((x) => x.splitHalf!.halves.lo),
      hi: r.layers.map((x) => x.splitHalf!.halves.hi),
    });
  }
  blocks.push({
    kind: 'figure',
    id: 'stability-bands',
    title: 'Cosine to the full-data direction, with 95% intervals',
    figure: lineByLayer(series, { title: '', yTitle: 'cosine', refLines: [{ y: r.threshold, label: `threshold ${r.threshold}` }] }),
  });

  blocks.push({ kind: 'heading', text: 'How many rows the direction needs' });
  const shown = spread(r.layers, 8);
  blocks.push({
    kind: 'figure',
    id: 'subsample-curve',
    title: `Cosine to the full-data direction against ${side}`,
    caption: `Mean over ${r.bootstrap} subsamples per size, error bars ± half the width of the 2.5–97.5 percentile interval${shown.length < r.layers.length ? `; ${shown.length} of ${r.layers.length} layers shown` : ''}.`,
    figure: scatterLines(
      shown.map((x) => ({
        name: `layer ${x.layer}`,
        x: x.curve.map((c) => c.size),
        y: x.curve.map((c) => c.mean),
        yErr: x.curve.map((c) => (c.hi - c.lo) / 2),
      })),
      { title: '', xTitle: side, yTitle: 'cosine', logX: true, refLines: [{ y: r.threshold, label: `threshold ${r.threshold}` }] },
    ),
  });
  blocks.push({
    kind: 'figure',
    id: 'settle-by-layer',
    title: `${side[0]!.toUpperCase()}${side.slice(1)} to settle at cosine ${r.threshold}`,
    caption: 'Gaps: the layer had not settled at the largest size measured.',
    figure: lineByLayer(
      [
        { name: 'by the mean', layers: ls, values: r.layers.map((x) => x.settle ?? NaN) },
        { name: 'by the 2.5% bound', layers: ls, values: r.layers.map((x) => x.settleLo ?? NaN) },
      ],
      { title: '', yTitle: side },
    ),
  });
  blocks.push({
    kind: 'table',
    caption: `Mean cosine to the full-data direction, by ${side} (columns) and layer (rows)`,
    columns: ['layer', ...r.sizes.map(String)],
    rows: r.layers.map((x) => [x.layer, ...x.curve.map((c) => orNull(c.mean))]),
  });

  return {
    title: 'Direction stability',
    subtitle: `${r.method} · ${r.pair.pos.dir} vs ${r.pair.neg.dir}`,
    blocks,
    provenance: [
      activationsProvenance(`pos: ${r.pair.pos.dir}`, r.pair.pos),
      activationsProvenance(`neg: ${r.pair.neg.dir}`, r.pair.neg),
      parametersProvenance('emlens stability', {
        pos: r.pair.pos.dir,
        neg: r.pair.neg.dir,
        method: r.method,
        weight: r.weight,
        bootstrap: r.bootstrap,
        seed: r.seed,
        threshold: r.threshold,
        'subsample sizes': r.sizes.join(','),
        out: params.out,
      }),
    ],
  };
}
