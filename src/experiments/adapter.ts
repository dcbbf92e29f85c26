/**
 * `emlens adapter ablate`: the weight-space ablation of a direction from a LoRA adapter
 * (Soligo et al.): for every adapted module that writes into the residual stream (o_proj and
 * down_proj, whose lora_B is [d_model, r]), B ← B − r̂ r̂ᵀ B, then rescaled to B's old Frobenius
 * norm, so the adapter keeps its strength but can no longer write along r̂. lora_A and the other
 * modules (q/k/v/gate/up write inside their block, not into the residual) are copied unchanged.
 *
 * Which direction: layer L's o_proj and down_proj add into the residual stream of layer L
 * (resid_mid and resid_post of block L), so layer L's B uses the direction file's vector for
 * layer L (emlens directions are blocks.L.hook_resid_post), or one chosen layer's vector for
 * every module (`directionLayer`, as the paper copies the layer-24 direction to every layer).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readDirectionFile } from '../io/directions.js';
import { readSafetensorsHeader, readTensorF32, writeSafetensors, type StWriteTensor } from '../io/safetensors/index.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, planAdapter } from '../model/adapter.js';
import { sha256File } from '../model/fingerprint.js';
import { VERSION } from '../version.js';

export interface AdapterAblateOptions {
  /** The adapter folder (resolved). */
  adapter: string;
  direction: string;
  out: string;
  /** Use this layer's vector for every module (default: each module's own layer). */
  directionLayer?: number;
}

export interface AblatedModule {
  key: string;
  layer: number;
  module: string;
  directionLayer: number;
  /** ‖B‖_F before (= after). */
  norm: number;
  /** ‖r̂ᵀB‖ before and after. */
  along: number;
  alongAfter: number;
}

export interface AdapterAblateResult {
  out: string;
  modules: AblatedModule[];
  /** Factors copied unchanged. */
  copied: number;
}

const RESIDUAL_WRITERS = new Set(['o_proj', 'down_proj']);

export function ablateAdapter(o: AdapterAblateOptions): AdapterAblateResult {
  const plan = planAdapter(o.adapter);
  if (existsSync(o.out) && realpathSync(o.out) === realpathSync(o.adapter)) {
    throw new EmlensError(`--out ${o.out} is the adapter folder itself; write the ablated adapter to a new folder`);
  }
  const dirs = readDirectionFile(o.direction);
  if (dirs.kind === 'resid_pre') {
    throw new EmlensError(`${o.direction}: holds blocks.L.hook_resid_pre vectors; layer L's o_proj/down_proj write into blocks.L.hook_resid_post, so pass a resid_post direction file`);
  }
  if (o.directionLayer !== undefined && !dirs.layers.has(o.directionLayer)) {
    throw new EmlensError(`--direction-layer ${o.directionLayer}: ${o.direction} has no vector for that layer (it has ${[...dirs.layers.keys()].join(', ')})`);
  }
  const writers = plan.modules.filter((m) => RESIDUAL_WRITERS.has(m.module));
  if (writers.length === 0) {
    throw new EmlensError(`${plan.weightsFile}: adapts no o_proj or down_proj, so nothing it adds lands in the residual stream; there is nothing to ablate`);
  }

  const replaced = new Map<string, StWriteTensor>();
  const modules: AblatedModule[] = [];
  for (const m of writers) {
    const dl = o.directionLayer ?? m.layer;
    const v = dirs.layers.get(dl);
    if (!v) throw new EmlensError(`${o.direction}: no vector for layer ${dl}, which the adapter's "${m.key}" writes into (pass --direction-layer to use one layer's vector everywhere)`);
    const [D, r] = m.B.shape as [number, number];
    if (v.length !== D) throw new EmlensError(`${o.direction}: the layer ${dl} vector has ${v.length} values, but "${m.key}.lora_B.weight" has ${D} rows (d_model)`);
    let vn = 0;
    for (const x of v) vn += x * x;
    vn = Math.sqrt(vn);
    if (vn === 0) throw new EmlensError(`${o.direction}: the layer ${dl} vector is zero; it has no direction`);
    const rhat = Float64Array.from(v, (x) => x / vn);
    const B = readTensorF32(m.B);
    // c = r̂ᵀB [r]; B' = B − r̂ c.
    const c = new Float64Array(r);
    for (let i = 0; i < D; i++) for (let k = 0; k < r; k++) c[k]! += rhat[i]! * B[i * r + k]!;
    const Bp = new Float64Array(D * r);
    let n0 = 0;
    let n1 = 0;
    for (let i = 0; i < D; i++) {
      for (let k = 0; k < r; k++) {
        const b = B[i * r + k]!;
        const x = b - rhat[i]! * c[k]!;
        Bp[i * r + k] = x;
        n0 += b * b;
        n1 += x * x;
      }
    }
    n0 = Math.sqrt(n0);
    n1 = Math.sqrt(n1);
    if (!(n1 > 1e-6 * n0)) {
      throw new EmlensError(`${plan.weightsFile}: "${m.key}.lora_B.weight" lies entirely along the layer ${dl} direction; ablating it leaves nothing to rescale`);
    }
    const out = Float32Array.from(Bp, (x) => (x * n0) / n1);
    const after = new Float64Array(r);
    for (let i = 0; i < D; i++) for (let k = 0; k < r; k++) after[k]! += rhat[i]! * out[i * r + k]!;
    // Stored as F32 whatever the source dtype: rounding to 16 bits would put back a component
    // along r̂ of ~2^-8 of B's norm.
    replaced.set(m.B.name, { shape: m.B.shape, data: out, dtype: 'F32' });
    modules.push({ key: m.key, layer: m.layer, module: m.module, directionLayer: dl, norm: n0, along: Math.hypot(...c), alongAfter: Math.hypot(...after) });
  }

  const tensors = new Map<string, StWriteTensor>();
  for (const [name, info] of readSafetensorsHeader(plan.weightsFile).tensors) {
    const dtype = info.dtype === 'F16' || info.dtype === 'BF16' ? info.dtype : 'F32';
    tensors.set(name, replaced.get(name) ?? { shape: info.shape, data: readTensorF32(info), dtype });
  }
  const provenance = {
    method: 'B <- B - r r^T B, rescaled to the old Frobenius norm of B, for o_proj and down_proj',
    source_adapter: resolve(o.adapter),
    source_sha256: sha256File(plan.weightsFile),
    direction_file: resolve(o.direction),
    direction_sha256: sha256File(o.direction),
    direction_layer: o.directionLayer ?? 'each module\'s own layer',
    modules: modules.map((m) => m.key),
    emlens_version: VERSION,
  };
  writeSafetensors(join(o.out, ADAPTER_WEIGHTS), tensors, { ...plan.metadata, format: plan.metadata.format ?? 'pt', emlens_ablation: JSON.stringify(provenance) });
  writeFileAtomic(join(o.out, ADAPTER_CONFIG), [readFileSync(join(o.adapter, ADAPTER_CONFIG))]);
  return { out: o.out, modules, copied: tensors.size - replaced.size };
}

