/**
 * Tiny PEFT LoRA adapter folders for tests, written as PEFT's save_pretrained writes them:
 * adapter_config.json (LoraConfig fields) and adapter_model.safetensors with
 * `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r] (F32), and an
 * independent float64 merge W + s·B·A for checking a loader against.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type StWriteTensor } from '../../src/io/safetensors/index.js';
import { rng } from '../../src/runtime/random.js';
import type { TinyWeights } from './tiny-checkpoints.js';

export interface TinyLora {
  /** Module name as in the base model, e.g. "model.layers.0.self_attn.q_proj". */
  key: string;
  A: Float32Array;
  B: Float32Array;
  r: number;
  inF: number;
  outF: number;
}

/** PEFT's LoraConfig as saved (defaults of peft 0.13-0.17), with `over` applied. */
export function loraConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: 16,
    lora_dropout: 0.0,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: 4,
    rank_pattern: {},
    revision: null,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
    ...over,
  };
}

/** Uniform(-amp, amp) values from the project's seeded generator. */
export function randomValues(n: number, seed: number, amp = 0.3): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * amp);
}

/**
 * Random factors for `keys` (module names under `prefix` + "layers..."), shaped from the base
 * weights; `rank(key)` gives each module's rank.
 */
export function randomLoras(weights: TinyWeights, keys: string[], rank: (key: string) => number, seed = 1): TinyLora[] {
  return keys.map((key, i) => {
    const w = weights.get(`${key}.weight`);
    if (!w) throw new Error(`no base weight ${key}.weight`);
    const [outF, inF] = w.shape as [number, number];
    const r = rank(key);
    return { key, r, inF, outF, A: randomValues(r * inF, seed * 1000 + 2 * i), B: randomValues(outF * r, seed * 1000 + 2 * i + 1) };
  });
}

/** Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors`. */
export function writeTinyAdapter(dir: string, config: Record<string, unknown>, loras: TinyLora[], extra: Record<string, StWriteTensor> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  const tensors = new Map<string, StWriteTensor>();
  for (const l of loras) {
    tensors.set(`base_model.model.${l.key}.lora_A.weight`, { shape: [l.r, l.inF], data: l.A });
    tensors.set(`base_model.model.${l.key}.lora_B.weight`, { shape: [l.outF, l.r], data: l.B });
  }
  for (const [k, t] of Object.entries(extra)) tensors.set(k, t);
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
}

/** W + scale(key)·B·A in float64, rounded to float32 once; other weights as they are. */
export function mergeInF64(weights: TinyWeights, loras: TinyLora[], scale: (l: TinyLora) => number): TinyWeights {
  const out: TinyWeights = new Map(weights);
  for (const l of loras) {
    const name = `${l.key}.weight`;
    const w = weights.get(name)!;
    const s = scale(l);
    const merged = new Float32Array(w.data.length);
    for (let o = 0; o < l.outF; o++) {
      for (let i = 0; i < l.inF; i++) {
        let d = 0;
        for (let k = 0; k < l.r; k++) d += l.B[o * l.r + k]! * l.A[k * l.inF + i]!;
        merged[o * l.inF + i] = w.data[o * l.inF + i]! + s * d;
      }
    }
    out.set(name, { shape: w.shape, data: merged });
  }
  return out;
}

/** A plain checkpoint folder (config.json + model.safetensors) holding `weights`. */
export function writePlainCheckpoint(dir: string, config: Record<string, unknown>, weights: TinyWeights): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), weights, { format: 'pt' });
}

/** The decoder-layer module names of a tiny checkpoint ("<prefix>layers.{l}.{self_attn|mlp}.{m}"). */
export function moduleKeys(weights: TinyWeights, layers: number[], modules: string[]): string[] {
  const keys: string[] = [];
  for (const name of weights.keys()) {
    const m = /^(.*layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+))\.weight$/.exec(name);
    if (m && layers.includes(Number(m[2])) && modules.includes(m[4]!)) keys.push(m[1]!);
  }
  return keys;
}
