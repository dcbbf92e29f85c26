/**
 * LoRA at any rank on any of the seven projections of any layers: which modules (the
 * `--modules` / `--layers` flags), PEFT's initialisation, the graph inputs of one forward, and
 * the PEFT adapter folder a run writes (what `--adapter` and Python's PeftModel load).
 *
 * Per target W [out, in]: A [r, in], B [out, r]; the projection becomes W x + s·B·A x with
 * s = α/r, or α/√r with rsLoRA (the same scale src/model/adapter.ts merges with).
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { EmlensError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureDir, writeError } from '../io/paths.js';
import { writeSafetensors, type StWriteTensor } from '../io/safetensors/write.js';
import { IO } from '../arch/decoder.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, LORA_MODULES, loraScale, type LoraModuleName } from '../model/adapter.js';
import type { ModelSpec } from '../model/config.js';
import { expectedTensors } from '../model/weights.js';
import { f32, type OrtTensor } from '../runtime/ort.js';
import { rng } from '../runtime/random.js';

/** `--modules` names: the short names and PEFT's own (q or q_proj). */
const SHORT: Record<string, LoraModuleName> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };

export const ALL_MODULES = 'q,k,v,o,gate,up,down';
const MLP = new Set<LoraModuleName>(['gate_proj', 'up_proj', 'down_proj']);

export interface LoraTarget {
  /** emlens's canonical projection name, e.g. "model.layers.3.mlp.down_proj" (graph input prefix). */
  name: string;
  layer: number;
  module: LoraModuleName;
  out: number;
  in: number;
}

export interface LoraShape {
  rank: number;
  rslora: boolean;
  /** Sorted by layer, then module order (q, k, v, o, gate, up, down); params are [A0, B0, A1, B1, ...]. */
  targets: LoraTarget[];
}

/** "q,k,v,o,gate,up,down" (or q_proj, ...) -> module names in canonical order, no repeats. */
export function parseModules(s: string, flag = '--modules'): LoraModuleName[] {
  const items = s.split(',').map((x) => x.trim());
  const seen = new Set<LoraModuleName>();
  for (const it of items) {
    const m = SHORT[it] ?? ((LORA_MODULES as readonly string[]).includes(it) ? (it as LoraModuleName) : undefined);
    if (!m) throw new EmlensError(`${flag} ${s}: "${it}" is not a projection (one of ${ALL_MODULES}, or ${LORA_MODULES.join(', ')})`);
    if (seen.has(m)) throw new EmlensError(`${flag} ${s}: ${m} is named twice`);
    seen.add(m);
  }
  return LORA_MODULES.filter((m) => seen.has(m));
}

/** "all" | "3" | "0-3,7" -> sorted layer numbers, each in range, no repeats. */
export function parseLayers(s: string, nLayers: number, flag = '--layers'): number[] {
  const range = `the model has ${nLayers} layers: 0..${nLayers - 1}`;
  if (s.trim() === 'all') return Array.from({ length: nLayers }, (_, i) => i);
  const out = new Set<number>();
  for (const part of s.split(',').map((x) => x.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new EmlensError(`${flag} ${s}: "${part}" is not a layer or a range L-L (or give "all")`);
    const [a, b] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (b < a) throw new EmlensError(`${flag} ${s}: the range ${part} runs backwards`);
    for (let l = a; l <= b; l++) {
      if (l >= nLayers) throw new EmlensError(`${flag} ${s}: layer ${l} is out of range (${range})`);
      if (out.has(l)) throw new EmlensError(`${flag} ${s}: layer ${l} is named twice`);
      out.add(l);
    }
  }
  return [...out].sort((x, y) => x - y);
}

export function loraTargets(spec: ModelSpec, modules: readonly LoraModuleName[], layers: readonly number[]): LoraTarget[] {
  if (modules.length === 0 || layers.length === 0) throw new EmlensError('a LoRA needs at least one module and one layer');
  const shapes = expectedTensors(spec).required;
  const order = [...new Set(modules)].sort((a, b) => LORA_MODULES.indexOf(a) - LORA_MODULES.indexOf(b));
  const out: LoraTarget[] = [];
  for (const layer of [...new Set(layers)].sort((a, b) => a - b)) {
    if (!Number.isInteger(layer) || layer < 0 || layer >= spec.nLayers) throw new EmlensError(`layer ${layer} is out of range (the model has ${spec.nLayers} layers: 0..${spec.nLayers - 1})`);
    for (const module of order) {
      const name = `model.layers.${layer}.${MLP.has(module) ? 'mlp' : 'self_attn'}.${module}`;
      const [o, i] = shapes.get(`${name}.weight`)!;
      out.push({ name, layer, module, out: o!, in: i! });
    }
  }
  return out;
}

/**
 * PEFT's init: A ~ kaiming_uniform(a = √5) = U(−1/√in, 1/√in), B = 0 (training starts at the base
 * model). One generator, drawn target after target, A row-major.
 */
export function initLoraParams(shape: LoraShape, seed: number): Float32Array[] {
  const r = rng(seed ^ 0x5eed);
  return shape.targets.flatMap((t) => {
    const bound = 1 / Math.sqrt(t.in);
    const A = Float32Array.from({ length: shape.rank * t.in }, () => (2 * r() - 1) * bound);
    return [A, new Float32Array(t.out * shape.rank)];
  });
}

/** Graph inputs of the adapter: lora variant, A/B/scale feeds (scale·factor), and the names to differentiate. */
export function loraCall(shape: LoraShape, alpha: number, params: Float32Array[], factor = 1): { lora: [string, number][]; feeds: Record<string, OrtTensor>; wrt: string[] } {
  const s = loraScale(alpha, shape.rank, shape.rslora) * factor;
  const feeds: Record<string, OrtTensor> = {};
  const wrt: string[] = [];
  shape.targets.forEach((t, k) => {
    feeds[IO.loraA(t.name)] = f32(params[2 * k]!, [shape.rank, t.in]);
    feeds[IO.loraB(t.name)] = f32(params[2 * k + 1]!, [t.out, shape.rank]);
    feeds[IO.loraScale(t.name)] = f32(new Float32Array([s]), [1]);
    wrt.push(IO.loraA(t.name), IO.loraB(t.name));
  });
  return { lora: shape.targets.map((t) => [t.name, shape.rank]), feeds, wrt };
}

/** √(Σ_targets ‖B·A‖²_F), without the scale (float64). */
export function loraNorm(shape: LoraShape, params: Float32Array[]): number {
  const r = shape.rank;
  let sum = 0;
  shape.targets.forEach((t, k) => {
    const A = params[2 * k]!;
    const B = params[2 * k + 1]!;
    // ‖BA‖² = tr(Aᵀ Bᵀ B A) = Σ_{jk} (BᵀB)_{jk} (A Aᵀ)_{jk}: r×r Gram matrices, not the out×in product.
    for (let j = 0; j < r; j++) {
      for (let l = 0; l < r; l++) {
        let bb = 0;
        for (let o = 0; o < t.out; o++) bb += B[o * r + j]! * B[o * r + l]!;
        if (bb === 0) continue;
        let aa = 0;
        for (let i = 0; i < t.in; i++) aa += A[j * t.in + i]! * A[l * t.in + i]!;
        sum += bb * aa;
      }
    }
  });
  return Math.sqrt(sum);
}

/**
 * The module-name prefix of the transformers model PEFT wraps ("model." for text models; a
 * multimodal Gemma 3 checkpoint's own, e.g. "language_model.model."), from the checkpoint's names.
 */
export function peftModulePrefix(spec: ModelSpec, fileNames: Iterable<string> = []): string {
  if (spec.weightPrefixes[0] === 'model.') return 'model.';
  for (const n of fileNames) {
    for (const p of spec.weightPrefixes) if (n.startsWith(`${p}layers.`)) return p;
  }
  return spec.weightPrefixes[0]!;
}

export interface PeftFolder {
  shape: LoraShape;
  alpha: number;
  params: Float32Array[];
  /** Module-name prefix (peftModulePrefix). */
  prefix: string;
  baseModel: string;
  metadata: Record<string, string>;
}

/** The adapter_config.json PeftModel.save_pretrained writes for this adapter (fields PEFT reads). */
export function peftConfig(f: PeftFolder): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: f.baseModel,
    r: f.shape.rank,
    lora_alpha: f.alpha,
    use_rslora: f.shape.rslora,
    target_modules: LORA_MODULES.filter((m) => f.shape.targets.some((t) => t.module === m)),
    layers_to_transform: [...new Set(f.shape.targets.map((t) => t.layer))],
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    lora_dropout: 0,
    fan_in_fan_out: false,
    bias: 'none',
    use_dora: false,
    init_lora_weights: true,
    modules_to_save: null,
    inference_mode: true,
  };
}

export function peftTensors(f: PeftFolder): Map<string, StWriteTensor> {
  const m = new Map<string, StWriteTensor>();
  f.shape.targets.forEach((t, k) => {
    const key = `base_model.model.${f.prefix}${t.name.slice('model.'.length)}`;
    m.set(`${key}.lora_A.weight`, { shape: [f.shape.rank, t.in], data: f.params[2 * k]! });
    m.set(`${key}.lora_B.weight`, { shape: [t.out, f.shape.rank], data: f.params[2 * k + 1]! });
  });
  return m;
}

/** An existing `dir` may be replaced only if it is an adapter folder (never a folder of other files). */
export function checkPeftOut(dir: string): void {
  if (existsSync(dir) && !existsSync(join(dir, ADAPTER_CONFIG))) {
    throw new EmlensError(`${dir}: exists and is not an adapter folder; emlens replaces only an adapter folder with --overwrite`);
  }
}

/**
 * Writes a PEFT folder as a whole or not at all: everything goes into a temporary sibling that
 * replaces `dir` by rename. `extra` files (the loss history, the report) are written into it too.
 */
export function writePeftFolder(dir: string, f: PeftFolder, extra: (tmp: string) => void = () => {}): void {
  checkPeftOut(dir);
  ensureDir(dirname(dir));
  const tmp = join(dirname(dir), `.${basename(dir)}.${process.pid}.tmp`);
  const old = join(dirname(dir), `.${basename(dir)}.${process.pid}.old`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp);
    writeFileAtomic(join(tmp, ADAPTER_CONFIG), [`${JSON.stringify(peftConfig(f), null, 2)}\n`]);
    writeSafetensors(join(tmp, ADAPTER_WEIGHTS), peftTensors(f), f.metadata);
    extra(tmp);
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw writeError(dir, e);
  }
}
