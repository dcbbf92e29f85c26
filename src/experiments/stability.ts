/**
 * `emlens stability`: how much a pos/neg direction depends on the particular rows it was computed
 * from, per layer. Bootstrap and split-half cosines with 95% percentile intervals, and the
 * agreement curve (cosine between the directions of two disjoint subsamples of n rows per side,
 * against n) with the number of rows the direction needs to settle above a threshold.
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
  agreementCurve,
  rowsToSettle,
  splitHalf,
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
  /** cosine two disjoint subsamples' directions must reach and keep (default 0.9) */
  threshold?: number;
}

export interface LayerStability {
  layer: number;
  /** norm of the full-data direction (1 for pca) */
  norm: number;
  bootstrap: Omit<CosineSummary, 'cosines'>;
  /** null when there are too few rows to split (mean-diff: 2 per side; pca: 4 pairs) */
  splitHalf: { halves: Omit<CosineSummary, 'cosines'>; toFull: Omit<CosineSummary, 'cosines'> } | null;
  /** cosine between the directions of two disjoint subsamples of each size (empty when too few rows) */
  curve: CurvePoint[];
  /** smallest size from which the curve's mean stays >= threshold; null if it does not settle */
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

/**
 * Subsample sizes for n rows per side: two disjoint subsamples must fit, so up to floor(n/2);
 * min, 2 min, 4 min… below it, then floor(n/2) itself; none when floor(n/2) < min.
 */
export function agreementSizes(n: number, min: number): number[] {
  const half = Math.floor(n / 2);
  if (half < min) return [];
  const out: number[] = [];
  for (let s = min; s < half; s *= 2) out.push(s);
  out.push(half);
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
  const sizes = agreementSizes(n, method === 'pca' ? 2 : 1);
  const canSplit = method === 'pca' ? n >= 4 : np_ >= 2 && nn >= 2;
  const warnings = [...pair.warnings];
  if (!canSplit) warnings.push(`too few rows for split-half and settling (${method === 'pca' ? 'needs 4 pairs' : 'needs 2 rows per side'}); left out`);
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
    const curve = sizes.length ? agreementCurve(p, q, d, { ...opts, seed: seed + 2, sizes, repeats: B }) : [];
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

/** A settle size, or "does not settle" (the largest size measured fell short, or none could be measured). */
export function settleCell(settle: number | null, sizes: number[]): number | string {
  if (settle !== null) return settle;
  return sizes.length ? 'does not settle' : 'too few rows';
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
      `Cosines are signed; every interval is the 2.5–97.5 percentile range of the replicates.\n\n` +
      `Bootstrap: ${r.bootstrap} resamples with replacement (${r.method === 'pca' ? 'of pairs' : 'within pos and within neg'}); the cosine of each resampled direction with the direction from all rows. ` +
      `Split-half: ${r.bootstrap} random splits into two halves; the cosine between the halves' directions. ` +
      (r.sizes.length
        ? `Settling: for each size n (${r.sizes.join(', ')} ${side}), ${r.bootstrap} draws of two disjoint subsamples of n ${side}; the cosine between their two directions. ` +
          `A layer settles at the smallest n from which the mean cosine stays at or above ${r.threshold} (by the lower 2.5% bound in the last column); "does not settle" when even two halves of the data (n = ${r.sizes[r.sizes.length - 1]}) agree less. ` +
          `Two independent directions that agree at cosine c are each at cosine about √c from the direction more rows would give. `
        : '') +
      `Seed ${r.seed}.` +
      (r.warnings.length ? `\n\nNote: ${r.warnings.join('; ')}.` : ''),
  });
  blocks.push({
    kind: 'table',
    caption: `Per layer: bootstrap cosine to the full-data direction and split-half cosine (half vs half), mean and 95% interval (2.5–97.5 percentiles) over ${r.bootstrap} replicates each; ${side} two disjoint subsamples need to agree at ${r.threshold}, by the mean and by the 2.5% bound`,
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
      settleCell(x.settle, r.sizes),
      settleCell(x.settleLo, r.sizes),
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
    title: 'Bootstrap (vs all rows) and split-half (half vs half) cosines, with 95% intervals',
    figure: lineByLayer(series, { title: '', yTitle: 'cosine', refLines: [{ y: r.threshold, label: `threshold ${r.threshold}` }] }),
  });

  blocks.push({ kind: 'heading', text: 'How many rows the direction needs' });
  if (r.sizes.length === 0) {
    blocks.push({ kind: 'text', text: 'Too few rows for two disjoint subsamples; settling is not measured.' });
    return stabilityDocument(r, blocks, params);
  }
  const shown = spread(r.layers, 8);
  blocks.push({
    kind: 'figure',
    id: 'subsample-curve',
    title: `Cosine between the directions of two disjoint subsamples, against ${side}`,
    caption: `Mean over ${r.bootstrap} pairs of subsamples per size; error bars: the 2.5–97.5 percentile interval${shown.length < r.layers.length ? `; ${shown.length} of ${r.layers.length} layers shown` : ''}.`,
    figure: scatterLines(
      shown.map((x) => ({
        name: `layer ${x.layer}`,
        x: x.curve.map((c) => c.size),
        y: x.curve.map((c) => c.mean),
        lo: x.curve.map((c) => c.lo),
        hi: x.curve.map((c) => c.hi),
      })),
      { title: '', xTitle: side, yTitle: 'cosine', logX: true, refLines: [{ y: r.threshold, label: `threshold ${r.threshold}` }] },
    ),
  });
  if (r.layers.some((x) => x.settle !== null || x.settleLo !== null)) {
    blocks.push({
      kind: 'figure',
      id: 'settle-by-layer',
      title: `${side[0]!.toUpperCase()}${side.slice(1)} to settle at cosine ${r.threshold}`,
      caption: `Gaps: the layer does not settle (two halves of the data agree below ${r.threshold}).`,
      figure: lineByLayer(
        [
          { name: 'by the mean', layers: ls, values: r.layers.map((x) => x.settle ?? NaN) },
          { name: 'by the 2.5% bound', layers: ls, values: r.layers.map((x) => x.settleLo ?? NaN) },
        ],
        { title: '', yTitle: side },
      ),
    });
  } else {
    // Nothing to draw: an empty plot would read as a rendering failure.
    blocks.push({ kind: 'text', text: `No layer settles: at every layer, two halves of the data give directions that agree below ${r.threshold}.` });
  }
  blocks.push({
    kind: 'table',
    caption: `Mean cosine between the directions of two disjoint subsamples, by ${side} (columns) and layer (rows)`,
    columns: ['layer', ...r.sizes.map(String)],
    rows: r.layers.map((x) => [x.layer, ...x.curve.map((c) => orNull(c.mean))]),
  });
  return stabilityDocument(r, blocks, params);
}

function stabilityDocument(r: StabilityResult, blocks: Block[], params: { out: string }): Report {
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
