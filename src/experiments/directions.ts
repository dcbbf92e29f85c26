/**
 * `emlens directions`: per-layer directions from two extraction folders (pos, neg), written as a
 * direction file (safetensors), a llama.cpp control vector (GGUF) or numpy arrays (.npy).
 *
 * Also the pieces the other direction experiments share: opening a pos/neg pair of extraction
 * folders (same model, hook and layers) and the provenance of both kinds of input.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { openActivations, type Activations } from '../activations/read.js';
import { ACTIVATIONS_ROOT, activationsDir, isBareName } from '../activations/store.js';
import { EmlensError } from '../errors.js';
import type { DirectionMethod } from '../directions/common.js';
import { norm } from '../directions/common.js';
import { meanDiff } from '../directions/meandiff.js';
import { pcaDiffFit } from '../directions/pca.js';
import { DIRECTION_EXTENSIONS, DIRECTION_FORMATS, writeDirectionFile, type DirectionFile, type DirectionFormat } from '../io/directions.js';
import { writeControlVectorGguf } from '../io/gguf.js';
import { writeDirectionsNpy } from '../io/npy.js';
import { firstNonFinite } from '../io/safetensors/dtype.js';
import type { HookKind } from '../hooks/names.js';
import { sha256File } from '../model/fingerprint.js';
import type { Provenance } from '../viz/report.js';
import { VERSION } from '../version.js';

export type WeightMode = 'rows' | 'tokens';
export const WEIGHT_MODES: readonly WeightMode[] = ['rows', 'tokens'];
export const DIRECTION_METHODS: readonly DirectionMethod[] = ['mean-diff', 'pca'];
export { DIRECTION_FORMATS, type DirectionFormat };

/** An extraction folder, checked to exist and be finished. */
/** An extraction folder, by name (see activationsDir), checked to exist and be finished. */
export function openActivationsDir(name: string, flag: string): Activations {
  const dir = activationsDir(name);
  const here = isBareName(name) && existsSync(name) ? `; a bare name is a folder under ${ACTIVATIONS_ROOT}/, write ./${name} for the one here` : '';
  if (!existsSync(dir)) throw new EmlensError(`${flag} ${name}: no such folder ${dir}${here}`);
  if (!statSync(dir).isDirectory()) throw new EmlensError(`${flag} ${name}: ${dir} is not a folder (give an extraction folder written by emlens extract)`);
  return openActivations(dir);
}

export interface ActivationPair {
  pos: Activations;
  neg: Activations;
  /** layers both folders hold, ascending */
  layers: number[];
  hook: HookKind;
  d: number;
  /** things worth telling the user (different pools, layers only one side has) */
  warnings: string[];
}

/**
 * Opens --pos and --neg and checks they are comparable: the same model weights, the same hook,
 * at least one shared layer. Layers only one side holds are left out with a warning.
 */
export function openPair(posDir: string, negDir: string): ActivationPair {
  const pos = openActivationsDir(posDir, '--pos');
  const neg = openActivationsDir(negDir, '--neg');
  if (realpathSync(pos.dir) === realpathSync(neg.dir)) {
    throw new EmlensError(`--pos and --neg are the same folder (${posDir}); a direction needs two different sets`);
  }
  const pm = pos.meta;
  const nm = neg.meta;
  if (pm.model.weights_sha256 !== nm.model.weights_sha256) {
    throw new EmlensError(
      `--pos ${posDir} and --neg ${negDir} come from different models (${pm.model.source}, weights sha256 ${pm.model.weights_sha256.slice(0, 12)}… vs ${nm.model.source}, ${nm.model.weights_sha256.slice(0, 12)}…)`,
    );
  }
  if (pm.hook !== nm.hook) throw new EmlensError(`--pos ${posDir} holds hook ${pm.hook}, --neg ${negDir} holds ${nm.hook}; extract both at the same hook`);
  if (pm.model.d_model !== nm.model.d_model) {
    throw new EmlensError(`--pos ${posDir} has d_model ${pm.model.d_model}, --neg ${negDir} has ${nm.model.d_model}`);
  }
  const negLayers = new Set(nm.layers);
  const layers = pm.layers.filter((l) => negLayers.has(l)).sort((a, b) => a - b);
  if (layers.length === 0) {
    throw new EmlensError(`--pos ${posDir} (layers ${pm.layers.join(',')}) and --neg ${negDir} (layers ${nm.layers.join(',')}) share no layer`);
  }
  const warnings: string[] = [];
  const only = (a: number[], b: Set<number>) => a.filter((l) => !b.has(l));
  const posOnly = only(pm.layers, negLayers);
  const negOnly = only(nm.layers, new Set(pm.layers));
  if (posOnly.length || negOnly.length) {
    warnings.push(`using the ${layers.length} shared layers; left out layers ${[...posOnly, ...negOnly].sort((a, b) => a - b).join(',')} (held by one side only)`);
  }
  if (pm.pool !== nm.pool) warnings.push(`--pos was pooled "${pm.pool}", --neg "${nm.pool}": the two means are of different things`);
  return { pos, neg, layers, hook: pm.hook, d: pm.model.d_model, warnings };
}

/** Per-row pooled token counts of an extraction folder (the weights of --weight tokens). */
export function tokenWeights(a: Activations): number[] {
  const t = a.meta.tokens_per_row;
  if (!Array.isArray(t) || t.length !== a.meta.rows) throw new EmlensError(`${a.dir}: meta.json has ${t?.length} token counts for ${a.meta.rows} rows`);
  return t;
}

/** The error for pca on unpaired sets: say how to pair them. */
export function checkPaired(pair: ActivationPair, what = 'pca'): void {
  const np_ = pair.pos.meta.rows;
  const nn = pair.neg.meta.rows;
  if (np_ !== nn) {
    throw new EmlensError(
      `${what} pairs rows by index (pos_i - neg_i, as repeng), so --pos and --neg need equal row counts: ${pair.pos.dir} has ${np_}, ${pair.neg.dir} has ${nn}; extract one with --balance-with the other`,
    );
  }
}

export interface DirectionsOptions {
  pos: string;
  neg: string;
  /** default 'mean-diff' */
  method?: DirectionMethod;
  /** default 'rows'; 'tokens' is for mean-diff only */
  weight?: WeightMode;
}

export interface LayerDirection {
  layer: number;
  /** |v| as written: the effect size for mean-diff, 1 for pca */
  norm: number;
  /** pca only: explained variance ratio of the component and repeng's sign vote */
  explainedVarianceRatio?: number;
  votes?: { posHigher: number; posLower: number };
}

export interface DirectionsResult {
  method: DirectionMethod;
  weight: WeightMode;
  hook: HookKind;
  /** layer -> float32 [d_model] vector, ascending layers */
  layers: Map<number, Float32Array>;
  perLayer: LayerDirection[];
  /** string metadata for the file (provenance) */
  metadata: Record<string, string>;
  pair: ActivationPair;
  warnings: string[];
}

/**
 * Per shared layer: mean(pos) - mean(neg) (unnormalised; row- or token-weighted), or repeng's
 * pca_diff component (unit norm, sign so that pos projects higher on most pairs).
 */
export function computeDirections(o: DirectionsOptions): DirectionsResult {
  const method = o.method ?? 'mean-diff';
  const weight = o.weight ?? 'rows';
  if (!DIRECTION_METHODS.includes(method)) throw new EmlensError(`--method must be one of ${DIRECTION_METHODS.join(', ')}, got "${String(method)}"`);
  if (!WEIGHT_MODES.includes(weight)) throw new EmlensError(`--weight must be one of ${WEIGHT_MODES.join(', ')}, got "${String(weight)}"`);
  if (method === 'pca' && weight === 'tokens') throw new EmlensError('--weight tokens applies to --method mean-diff only (pca differences rows pairwise)');
  const pair = openPair(o.pos, o.neg);
  if (method === 'pca') checkPaired(pair);
  const { pos, neg, d } = pair;
  const posWeights = weight === 'tokens' ? tokenWeights(pos) : undefined;
  const negWeights = weight === 'tokens' ? tokenWeights(neg) : undefined;
  const layers = new Map<number, Float32Array>();
  const perLayer: LayerDirection[] = [];
  for (const l of pair.layers) {
    const p = pos.layer(l);
    const n = neg.layer(l);
    checkFinite(p, d, `--pos ${pos.dir}`, l);
    checkFinite(n, d, `--neg ${neg.dir}`, l);
    if (p.length === n.length && p.every((x, i) => x === n[i])) {
      throw new EmlensError(`--pos ${pos.dir} and --neg ${neg.dir} hold identical activations at layer ${l}; the direction would be zero`);
    }
    if (method === 'pca') {
      const fit = pcaDiffFit(p, n, d, { what: `pca at layer ${l} (--pos ${pos.dir}, --neg ${neg.dir})` });
      layers.set(l, fit.direction);
      perLayer.push({ layer: l, norm: norm(fit.direction), explainedVarianceRatio: fit.explainedVarianceRatio, votes: fit.votes });
    } else {
      const v = meanDiff(p, n, d, { posWeights, negWeights });
      if (!v.some((x) => x !== 0)) {
        throw new EmlensError(`--pos ${pos.dir} and --neg ${neg.dir} have equal means at layer ${l}; the mean-diff direction would be zero`);
      }
      layers.set(l, v);
      perLayer.push({ layer: l, norm: norm(v) });
    }
  }
  const norms: Record<string, number> = {};
  for (const x of perLayer) norms[String(x.layer)] = x.norm;
  const side = (a: Activations) => a.meta;
  const metadata: Record<string, string> = {
    emlens_version: VERSION,
    created: new Date().toISOString(),
    method,
    weight,
    model: side(pos).model.source,
    weights_sha256: side(pos).model.weights_sha256,
    hook: pair.hook,
    layers: pair.layers.join(','),
    pos: pos.dir,
    pos_dataset: side(pos).dataset.file,
    pos_dataset_sha256: side(pos).dataset.sha256,
    pos_rows: String(side(pos).rows),
    pos_pool: String(side(pos).pool),
    neg: neg.dir,
    neg_dataset: side(neg).dataset.file,
    neg_dataset_sha256: side(neg).dataset.sha256,
    neg_rows: String(side(neg).rows),
    neg_pool: String(side(neg).pool),
    norms: JSON.stringify(norms),
  };
  if (method === 'pca') {
    const evr: Record<string, number> = {};
    for (const x of perLayer) evr[String(x.layer)] = x.explainedVarianceRatio!;
    metadata.pca_explained_variance_ratio = JSON.stringify(evr);
  }
  return { method, weight, hook: pair.hook, layers, perLayer, metadata, pair, warnings: [...pair.warnings] };
}

/** A NaN or Inf activation would make a NaN direction: refuse it, naming folder, layer and row. */
function checkFinite(acts: Float32Array, d: number, what: string, layer: number): void {
  const bad = firstNonFinite(new Int32Array(acts.buffer, acts.byteOffset, acts.length));
  if (bad >= 0) throw new EmlensError(`${what}: layer ${layer}, row ${Math.floor(bad / d)} holds ${acts[bad]} (column ${bad % d})`);
}

/**
 * The format of --out, from its extension (.safetensors, .gguf, .npy; any case). Another or no
 * extension is an error, and so is a --format that disagrees with it.
 */
export function directionFormat(file: string, explicit?: DirectionFormat): DirectionFormat {
  if (explicit && !DIRECTION_FORMATS.includes(explicit)) throw new EmlensError(`--format must be one of ${DIRECTION_FORMATS.join(', ')}, got "${String(explicit)}"`);
  const ext = extname(file).toLowerCase();
  const byExt = DIRECTION_FORMATS.find((f) => DIRECTION_EXTENSIONS[f] === ext);
  const accepted = DIRECTION_FORMATS.map((f) => DIRECTION_EXTENSIONS[f]);
  const list = `${accepted.slice(0, -1).join(', ')} or ${accepted[accepted.length - 1]}`;
  if (!byExt) {
    throw new EmlensError(`--out ${file}: emlens writes direction files as ${list}${ext ? `, not ${extname(file)}` : '; the name has no extension'}`);
  }
  if (explicit && explicit !== byExt) {
    const suggestion = basename(file, extname(file)) + DIRECTION_EXTENSIONS[explicit];
    throw new EmlensError(`--out ${file} is a ${ext} name but --format is ${explicit}; use ${suggestion} or drop --format`);
  }
  return byExt;
}

export interface WrittenDirections {
  format: DirectionFormat;
  /** files written (npy: the array and its .layers.json sidecar) */
  files: string[];
  /** layers written */
  layers: number[];
  /** layers left out (gguf: layer 0) */
  dropped: number[];
  warnings: string[];
}

/**
 * Writes the directions atomically in `format`. GGUF: `direction.N` = emlens layer N
 * (blocks.N.hook_resid_post); llama.cpp has no control vector for block 0, so layer 0 is left out
 * with a warning, and only resid_post directions can be written.
 */
export function writeDirections(file: string, r: Pick<DirectionsResult, 'layers' | 'metadata' | 'hook'>, format: DirectionFormat): WrittenDirections {
  const warnings: string[] = [];
  const all = [...r.layers.keys()].sort((a, b) => a - b);
  if (format === 'safetensors') {
    writeDirectionFile(file, r.layers, r.metadata, r.hook);
    return { format, files: [file], layers: all, dropped: [], warnings };
  }
  if (format === 'npy') {
    writeDirectionsNpy(file, r.layers, r.metadata, r.hook);
    return { format, files: [file, `${file}.layers.json`], layers: all, dropped: [], warnings };
  }
  if (r.hook !== 'resid_post') {
    throw new EmlensError(`--format gguf: llama.cpp control vectors act on block outputs (resid_post); these directions are at ${r.hook}`);
  }
  const kept = new Map([...r.layers].filter(([l]) => l !== 0));
  const dropped = all.filter((l) => l === 0);
  if (kept.size === 0) throw new EmlensError('--format gguf: the only layer is 0, and llama.cpp control vectors cannot steer block 0');
  if (dropped.length) warnings.push('layer 0 left out of the GGUF: llama.cpp control vectors cannot steer block 0 (direction.N is added to the output of block N, N >= 1)');
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.metadata)) metadata[`emlens.${k}`] = v;
  writeControlVectorGguf(file, kept, { modelHint: r.metadata.model ?? 'unknown', metadata });
  return { format, files: [file], layers: [...kept.keys()].sort((a, b) => a - b), dropped, warnings };
}

/** Everything `emlens directions` does: compute, then write. */
export function runDirections(o: DirectionsOptions & { out: string; format?: DirectionFormat }): DirectionsResult & { written: WrittenDirections } {
  const format = directionFormat(o.out, o.format);
  const r = computeDirections(o);
  const written = writeDirections(o.out, r, format);
  return { ...r, written, warnings: [...r.warnings, ...written.warnings] };
}

// ---------------------------------------------------------------------------------------------
// Provenance. (Direction files of any format are read by io/directions.ts readDirectionFile.)

/** Provenance of an extraction folder: where its rows and model came from. */
export function activationsProvenance(label: string, a: Activations): Provenance {
  const m = a.meta;
  return {
    label,
    fields: {
      folder: a.dir,
      model: m.model.source,
      family: m.model.family,
      'weights sha256': m.model.weights_sha256,
      dataset: m.dataset.file,
      'dataset sha256': m.dataset.sha256,
      selection: JSON.stringify(m.dataset.selection),
      rows: m.rows,
      hook: m.hook,
      pool: String(m.pool),
      layers: m.layers.join(','),
      extracted: m.created,
      'extracted by': `emlens ${m.emlens_version}`,
    },
  };
}

/** Provenance of a direction file: path, sha256 of its bytes, format, layers and its metadata. */
export function directionsProvenance(label: string, f: DirectionFile): Provenance {
  const fields: Provenance['fields'] = {
    file: f.file,
    sha256: sha256File(f.file),
    format: f.format,
    hook: f.kind,
    layers: [...f.layers.keys()].sort((a, b) => a - b).join(','),
    d_model: f.layers.values().next().value?.length ?? null,
  };
  for (const [k, v] of Object.entries(f.metadata)) fields[`meta: ${k}`] = v;
  return { label, fields };
}

/** Provenance of the command itself. */
export function parametersProvenance(command: string, params: Record<string, string | number | boolean | null | undefined>): Provenance {
  const fields: Provenance['fields'] = { command };
  for (const [k, v] of Object.entries(params)) fields[k] = v === undefined ? null : v;
  return { label: 'Parameters', fields };
}
