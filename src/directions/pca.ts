/**
 * PCA directions with repeng's `pca_diff` semantics.
 *
 * What repeng does (vgel/repeng, repeng/extract.py, `read_representations`, method "pca_diff"):
 *
 *   train_strs = [s for ex in inputs for s in (ex.positive, ex.negative)]   # pos, neg interleaved
 *   h = layer_hiddens[layer]                        # (2 * n_pairs, d)
 *   train = h[::2] - h[1::2]                        # pos_i - neg_i, rows paired by index
 *   pca_model = PCA(n_components=1, whiten=False).fit(train)
 *   directions[layer] = pca_model.components_.astype(np.float32).squeeze(axis=0)
 *   projected_hiddens = project_onto_direction(h, directions[layer])
 *   positive_smaller_mean = mean([proj[i] < proj[i + 1] for i in range(0, 2n, 2)])
 *   positive_larger_mean  = mean([proj[i] > proj[i + 1] for i in range(0, 2n, 2)])
 *   if positive_smaller_mean > positive_larger_mean: directions[layer] *= -1
 *
 * So, exactly:
 * - rows are paired by index and differenced, pos_i - neg_i; equal counts are required (repeng
 *   builds the pairs from one list of {positive, negative} entries). We throw an EmlensError
 *   naming both counts instead of truncating or re-pairing;
 * - sklearn's PCA CENTERS its input: the direction is the leading right singular vector of the
 *   differences minus their mean, i.e. the axis of largest VARIANCE of the differences, not the
 *   mean difference. A difference that is the same on every pair is invisible to it; when the
 *   centered differences vanish (or are only float32 rounding: energy below 1e-12 of the
 *   uncentered differences') there is no direction and we throw (use mean-diff);
 * - the result has unit norm (a component of sklearn's PCA), no whitening;
 * - sign: a majority vote over pairs. Each pair votes on whether pos_i projects above or below
 *   neg_i on the direction; the direction is flipped when "below" wins strictly. Note this is a
 *   vote over pairs, not a comparison of mean projections. On an exact tie repeng keeps
 *   sklearn's sign, which (sklearn >= 1.5, `svd_flip(u_based_decision=False)`) makes the
 *   largest-magnitude entry of the component positive; we do the same (the first such entry, as
 *   np.argmax picks).
 *
 * sklearn fits float32 input in float32 (and for large inputs by randomized SVD); we accumulate
 * in float64 with a Lanczos iteration run to a tight residual, so results agree with repeng up
 * to float32 rounding wherever the leading component is well separated from the second.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { EmlensError } from '../errors.js';
import { rowCount, type Rows } from './common.js';
import { rng } from '../runtime/random.js';

export interface PcaDiffResult {
  /** unit-norm, sign-fixed leading component of the centered paired differences */
  direction: Float32Array;
  /** sklearn's explained_variance_[0]: top eigenvalue of the covariance (ddof = 1) */
  explainedVariance: number;
  /** sklearn's explained_variance_ratio_[0] */
  explainedVarianceRatio: number;
  pairs: number;
  /** pairs where pos projects above / below neg on the final direction */
  votes: { posHigher: number; posLower: number };
  /** whether the vote flipped the sign away from sklearn's convention */
  flipped: boolean;
}

export interface PcaOptions {
  /** Lanczos stops when the Ritz residual falls below tol * eigenvalue (default 1e-10) */
  tol?: number;
  /** what errors are about, e.g. the layer and folders (default "pca") */
  what?: string;
}

/** repeng pca_diff direction: unit norm, sign so that pos projects above neg on most pairs. */
export function pcaDiff(pos: Rows, neg: Rows, d: number, opts: PcaOptions = {}): Float32Array {
  return pcaDiffFit(pos, neg, d, opts).direction;
}

export function pcaDiffFit(pos: Rows, neg: Rows, d: number, opts: PcaOptions = {}): PcaDiffResult {
  const np_ = rowCount(pos, d, 'pos');
  const nn = rowCount(neg, d, 'neg');
  if (np_ !== nn) {
    throw new EmlensError(
      `pca: rows are paired by index (repeng pca_diff: pos_i - neg_i), so pos and neg need equal row counts; pos has ${np_}, neg has ${nn}`,
    );
  }
  const n = np_;
  if (n < 2) throw new EmlensError(`pca: needs at least 2 pairs (PCA centers the differences), got ${n}`);

  // Centered differences, float64.
  const xc = new Float64Array(n * d);
  const mean = new Float64Array(d);
  let raw = 0;
  for (let i = 0; i < n; i++) {
    const off = i * d;
    for (let j = 0; j < d; j++) {
      const v = pos[off + j]! - neg[off + j]!;
      xc[off + j] = v;
      mean[j] += v;
      raw += v * v;
    }
  }
  const what = opts.what ?? 'pca';
  if (!Number.isFinite(raw)) throw new EmlensError(`${what}: activations hold non-finite values`);
  for (let j = 0; j < d; j++) mean[j] /= n;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const off = i * d;
    for (let j = 0; j < d; j++) {
      const v = xc[off + j]! - mean[j]!;
      xc[off + j] = v;
      total += v * v;
    }
  }
  // Below 1e-12 of the raw energy the spread is float32 rounding of a shared difference
  // (activations ~1e2, rounding ~1e-5): sklearn would return noise; we refuse.
  if (!(total > 1e-12 * raw)) {
    throw new EmlensError(
      `${what}: the paired differences have no variance around their mean (repeng pca_diff centers them, so a difference shared by every pair carries no direction); use mean-diff`,
    );
  }

  const { vector, eigenvalue } = leadingPrincipalAxis(xc, n, d, opts);

  // sklearn >= 1.5 sign convention (svd_flip, v-based): largest |entry| positive.
  let amax = 0;
  for (let j = 1; j < d; j++) if (Math.abs(vector[j]!) > Math.abs(vector[amax]!)) amax = j;
  if (vector[amax]! < 0) for (let j = 0; j < d; j++) vector[j] = -vector[j]!;
  const dir = Float32Array.from(vector);

  // repeng's vote: compare the projections of pos_i and neg_i (as float32 direction).
  let larger = 0;
  let smaller = 0;
  for (let i = 0; i < n; i++) {
    const off = i * d;
    let pp = 0;
    let pn = 0;
    for (let j = 0; j < d; j++) {
      pp += pos[off + j]! * dir[j]!;
      pn += neg[off + j]! * dir[j]!;
    }
    if (pp > pn) larger++;
    else if (pp < pn) smaller++;
  }
  const flipped = smaller > larger;
  if (flipped) for (let j = 0; j < d; j++) dir[j] = -dir[j]!;
  return {
    direction: dir,
    explainedVariance: eigenvalue / (n - 1),
    explainedVarianceRatio: eigenvalue / total,
    pairs: n,
    votes: flipped ? { posHigher: smaller, posLower: larger } : { posHigher: larger, posLower: smaller },
    flipped,
  };
}

/**
 * Leading right singular vector of a row-major `[n, d]` matrix X (already centered by the
 * caller) and the top eigenvalue of X^T X, by Lanczos with full reorthogonalisation on the
 * smaller of the two Gram operators (X X^T when n <= d, X^T X otherwise), so each step costs
 * 2nd plus the reorthogonalisation. It stops when the Ritz residual |beta_j s_j| is below
 * tol * theta, or when the Krylov space is exhausted (then the result is exact). The start
 * vector is X^T r for a fixed pseudo-random r, so runs are deterministic. The sign is arbitrary.
 */
export function leadingPrincipalAxis(x: Float64Array, n: number, d: number, opts: PcaOptions = {}): { vector: Float64Array; eigenvalue: number } {
  const tol = opts.tol ?? 1e-10;
  const small = n <= d;
  const m = small ? n : d;

  // y[n] = X v[d]
  const mulX = (v: Float64Array, out: Float64Array): void => {
    for (let i = 0; i < n; i++) {
      const off = i * d;
      let s = 0;
      for (let j = 0; j < d; j++) s += x[off + j]! * v[j]!;
      out[i] = s;
    }
  };
  // y[d] = X^T u[n]
  const mulXt = (u: Float64Array, out: Float64Array): void => {
    out.fill(0);
    for (let i = 0; i < n; i++) {
      const c = u[i]!;
      if (c === 0) continue;
      const off = i * d;
      for (let j = 0; j < d; j++) out[j] += c * x[off + j]!;
    }
  };
  const tn = new Float64Array(n);
  const td = new Float64Array(d);
  const op = (q: Float64Array, out: Float64Array): void => {
    if (small) {
      mulXt(q, td);
      mulX(td, out);
    } else {
      mulX(q, tn);
      mulXt(tn, out);
    }
  };

  // Start vector in the range of the operator.
  const r = rng(0x2545f491);
  for (let i = 0; i < n; i++) tn[i] = r() - 0.5;
  const q0 = new Float64Array(m);
  if (small) {
    mulXt(tn, td);
    mulX(td, q0);
  } else {
    mulXt(tn, q0);
  }
  let qn = vnorm(q0);
  if (!(qn > 0)) throw new EmlensError('pca: matrix is zero');
  for (let i = 0; i < m; i++) q0[i] /= qn;

  const maxSteps = m;
  const Q: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  let q = q0;
  let best: { theta: number; s: number[] } | null = null;
  let scale = 0;
  for (let j = 0; j < maxSteps; j++) {
    Q.push(q);
    const w = new Float64Array(m);
    op(q, w);
    const a = vdot(w, q);
    alpha.push(a);
    scale = Math.max(scale, Math.abs(a));
    for (let pass = 0; pass < 2; pass++) {
      for (const qi of Q) {
        const c = vdot(w, qi);
        for (let k = 0; k < m; k++) w[k] -= c * qi[k]!;
      }
    }
    const b = vnorm(w);
    const exhausted = b <= 1e-13 * scale || j === maxSteps - 1;
    const steps = j + 1;
    const stride = Math.max(1, Math.min(8, Math.floor(steps / 8)));
    if (exhausted || steps % stride === 0) {
      best = topRitz(alpha, beta);
      if (exhausted || b * Math.abs(best.s[steps - 1]!) <= tol * best.theta) break;
    }
    beta.push(b);
    q = w;
    for (let k = 0; k < m; k++) q[k] /= b;
  }
  const { theta, s } = best!;
  const y = new Float64Array(m);
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const qi = Q[i]!;
    for (let k = 0; k < m; k++) y[k] += c * qi[k]!;
  }
  let v: Float64Array;
  if (small) {
    v = new Float64Array(d);
    mulXt(y, v);
  } else {
    v = y;
  }
  qn = vnorm(v);
  for (let k = 0; k < d; k++) v[k] /= qn;
  return { vector: v, eigenvalue: theta };
}

/** Largest eigenpair of the symmetric tridiagonal matrix (alpha on the diagonal, beta off it). */
function topRitz(alpha: number[], beta: number[]): { theta: number; s: number[] } {
  const k = alpha.length;
  if (k === 1) return { theta: alpha[0]!, s: [1] };
  const t = Matrix.zeros(k, k);
  for (let i = 0; i < k; i++) {
    t.set(i, i, alpha[i]!);
    if (i + 1 < k) {
      t.set(i, i + 1, beta[i]!);
      t.set(i + 1, i, beta[i]!);
    }
  }
  const e = new EigenvalueDecomposition(t, { assumeSymmetric: true });
  const vals = e.realEigenvalues;
  let bi = 0;
  for (let i = 1; i < k; i++) if (vals[i]! > vals[bi]!) bi = i;
  return { theta: vals[bi]!, s: e.eigenvectorMatrix.getColumn(bi) };
}

function vdot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function vnorm(a: Float64Array): number {
  return Math.sqrt(vdot(a, a));
}
