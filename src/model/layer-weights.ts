/**
 * Weights read one decoder layer at a time, for the memory-bounded forward (runtime/layerwise.ts):
 * each tensor's byte range is read from its safetensors file with positioned reads and converted
 * to fp32 into a buffer the caller reuses (Node has no mmap; nothing else of the file is read),
 * and a merged LoRA adapter is applied to that layer only. The embedding table is gathered row by
 * row, for the tokens a batch uses, never materialised.
 */
import { EmlensError } from '../errors.js';
import type { StTensorInfo } from '../io/safetensors/header.js';
import { readTensorF32, readTensorRowsF32 } from '../io/safetensors/read.js';
import { mergeAdapter, type AdapterPlan } from './adapter.js';
import type { ModelSpec } from './config.js';
import type { Weights } from './tensor-names.js';
import type { CheckpointPlan } from './weights.js';

const EMBED = 'model.embed_tokens.weight';

/** One tensor of a layer: its name without the `model.layers.{l}.` prefix. */
export interface LayerTensor {
  suffix: string;
  info: StTensorInfo;
  numel: number;
}

export class LayerWeightReader {
  private readonly layers: LayerTensor[][];

  constructor(
    readonly spec: ModelSpec,
    readonly plan: CheckpointPlan,
    readonly adapter: AdapterPlan | null = null,
  ) {
    this.layers = Array.from({ length: spec.nLayers }, () => []);
    for (const [name, info] of plan.tensors) {
      const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
      if (!m) continue;
      this.layers[Number(m[1])]!.push({ suffix: m[2]!, info, numel: info.shape.reduce((a, b) => a * b, 1) });
    }
    for (const l of this.layers) l.sort((a, b) => (a.suffix < b.suffix ? -1 : 1));
  }

  /** Layer l's tensors (those the checkpoint has), sorted by name. */
  tensors(l: number): readonly LayerTensor[] {
    return this.layers[l]!;
  }

  /** Bytes layer l's weights take as fp32. */
  layerBytes(l: number): number {
    return this.layers[l]!.reduce((s, t) => s + 4 * t.numel, 0);
  }

  /**
   * Reads layer l into the buffers `into(suffix, numel)` gives (each exactly that long), every
   * value checked finite, then adds the adapter's B·A to this layer's adapted projections.
   */
  readLayer(l: number, into: (suffix: string, numel: number) => Float32Array): void {
    const bufs = new Map<string, Float32Array>();
    for (const t of this.layers[l]!) bufs.set(t.suffix, readTensorF32(t.info, { finite: true, into: into(t.suffix, t.numel) }));
    const mods = this.adapter?.modules.filter((m) => m.layer === l) ?? [];
    if (mods.length === 0) return;
    const p = `model.layers.${l}.`;
    const w: Weights = new Map();
    for (const t of this.layers[l]!) w.set(p + t.suffix, { shape: t.info.shape, data: bufs.get(t.suffix)! });
    mergeAdapter(w, { ...this.adapter!, modules: mods });
    for (const [name, v] of w) if (v.data !== bufs.get(name.slice(p.length))) bufs.get(name.slice(p.length))!.set(v.data);
  }

  /**
   * out[i·D..] = embedding row ids[i], times the family's embedding scale rounded as the graph
   * rounds it (fp32 product of fp32 values), so the result equals the in-memory graph's Gather+Mul.
   */
  gatherEmbeddings(ids: ArrayLike<number>, out: Float32Array): void {
    const info = this.plan.tensors.get(EMBED);
    if (!info) throw new EmlensError(`${this.plan.index.files[0]}: no ${EMBED}`);
    readTensorRowsF32(info, ids, out, { finite: true });
    const s = this.spec.embedScale;
    if (s !== null) {
      const f = Math.fround(s);
      for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i]! * f);
    }
  }
}
