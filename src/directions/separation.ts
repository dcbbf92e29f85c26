/**
 * How well a direction separates two labelled sets of rows: per-row projections onto the unit
 * direction, AUROC (Mann-Whitney) and d'.
 */
import { EmlensError } from '../errors.js';
import { rowCount, unit, type Rows, type Vec } from './common.js';

/** Projection of every row of a `[rows, d]` buffer onto dir / |dir| (float64); `what` names dir in errors. */
export function projections(acts: Rows, d: number, dir: Vec, what = 'projections: the direction'): Float64Array {
  const n = rowCount(acts, d);
  if (dir.length !== d) throw new EmlensError(`${what}: has width ${dir.length}, rows have ${d}`);
  const u = unit(dir, what);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const off = i * d;
    let s = 0;
    for (let j = 0; j < d; j++) s += acts[off + j]! * u[j]!;
    out[i] = s;
  }
  return out;
}

function checkScores(x: Vec, what: string): void {
  if (x.length === 0) throw new EmlensError(`${what}: no scores`);
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]!)) throw new EmlensError(`${what}: score ${i} is NaN`);
  }
}

/**
 * AUROC = P(pos score > neg score) + 0.5 P(tie), from the Mann-Whitney U statistic: rank the
 * pooled scores (ties share their average rank), U = R_pos - n_pos (n_pos + 1) / 2,
 * AUROC = U / (n_pos n_neg). O(n log n).
 */
export function auroc(posScores: Vec, negScores: Vec): number {
  checkScores(posScores, 'auroc pos');
  checkScores(negScores, 'auroc neg');
  const np_ = posScores.length;
  const nn = negScores.length;
  const N = np_ + nn;
  const vals = new Float64Array(N);
  for (let i = 0; i < np_; i++) vals[i] = posScores[i]!;
  for (let i = 0; i < nn; i++) vals[np_ + i] = negScores[i]!;
  const order = new Uint32Array(N);
  for (let i = 0; i < N; i++) order[i] = i;
  // Compare, not subtract: Infinity - Infinity is NaN.
  order.sort((a, b) => (vals[a]! < vals[b]! ? -1 : vals[a]! > vals[b]! ? 1 : 0));
  let rankSumPos = 0;
  for (let i = 0; i < N; ) {
    let j = i + 1;
    while (j < N && vals[order[j]!]! === vals[order[i]!]!) j++;
    const avgRank = (i + 1 + j) / 2; // ranks i+1 .. j
    for (let k = i; k < j; k++) if (order[k]! < np_) rankSumPos += avgRank;
    i = j;
  }
  const U = rankSumPos - (np_ * (np_ + 1)) / 2;
  return U / (np_ * nn);
}

function meanVar(x: Vec): { mean: number; variance: number } {
  const n = x.length;
  let m = 0;
  for (let i = 0; i < n; i++) m += x[i]!;
  m /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i]! - m) ** 2;
  return { mean: m, variance: n > 1 ? v / (n - 1) : NaN };
}

/**
 * d' = (mean_pos - mean_neg) / sqrt((var_pos + var_neg) / 2), with unbiased (n - 1) variances;
 * needs two scores per side. +-Infinity when the variances are 0 and the means differ.
 */
export function dprime(posScores: Vec, negScores: Vec): number {
  checkScores(posScores, 'dprime pos');
  checkScores(negScores, 'dprime neg');
  if (posScores.length < 2 || negScores.length < 2) {
    throw new EmlensError(`dprime: needs at least 2 scores per side (pos ${posScores.length}, neg ${negScores.length})`);
  }
  const p = meanVar(posScores);
  const n = meanVar(negScores);
  return (p.mean - n.mean) / Math.sqrt((p.variance + n.variance) / 2);
}

export interface Separation {
  nPos: number;
  nNeg: number;
  meanPos: number;
  meanNeg: number;
  sdPos: number;
  sdNeg: number;
  auroc: number;
  /** NaN when a side has fewer than 2 scores */
  dprime: number;
}

/** Summary of two sets of projections: sizes, means, sds (n - 1), AUROC and d'. */
export function separation(posScores: Vec, negScores: Vec): Separation {
  const p = meanVar(posScores);
  const n = meanVar(negScores);
  return {
    nPos: posScores.length,
    nNeg: negScores.length,
    meanPos: p.mean,
    meanNeg: n.mean,
    sdPos: Math.sqrt(p.variance),
    sdNeg: Math.sqrt(n.variance),
    auroc: auroc(posScores, negScores),
    dprime: posScores.length >= 2 && negScores.length >= 2 ? dprime(posScores, negScores) : NaN,
  };
}

/** Splits scores by a per-row label, keeping row order within each label. */
export function splitByLabel<L>(scores: Vec, labels: ArrayLike<L>): Map<L, Float64Array> {
  if (scores.length !== labels.length) throw new EmlensError(`splitByLabel: ${scores.length} scores, ${labels.length} labels`);
  const idx = new Map<L, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    let a = idx.get(l);
    if (!a) idx.set(l, (a = []));
    a.push(i);
  }
  const out = new Map<L, Float64Array>();
  for (const [l, is] of idx) out.set(l, Float64Array.from(is, (i) => scores[i]!));
  return out;
}
