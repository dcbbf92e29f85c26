/**
 * The memory-bounded forward: the model runs one layer group at a time over a set of batches
 * (an extraction chunk). A group's weights are read from the checkpoint once (per layer, into
 * reused fp32 buffers), every batch runs through it, and each batch's residual stream [B, T, D]
 * is kept between groups, in memory or, when the batches' residuals do not fit, spooled to a
 * file. Block 0's input is the embedding rows the batch uses, gathered from the file. Only the
 * blocks up to the deepest requested hook run; the final norm and LM head never do.
 *
 * One graph per distinct group (its layer kinds, sliding or full, and the hooks it returns) is
 * compiled once and fed each group's weights under the names of the group it was built for, so
 * 28 identical layers cost one compile, not 28. When every needed layer fits in one group, its
 * weights stay loaded across calls (the in-memory case, minus the embedding table and LM head).
 */
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderGraph, IO, type GraphVariant } from '../arch/decoder.js';
import { emitOnnx } from '../graph/onnx.js';
import { EmlensError } from '../errors.js';
import { hookName, HOOK_PATTERN, parseHookName, type HookKind } from '../hooks/names.js';
import type { ModelSpec } from '../model/config.js';
import type { LayerWeightReader } from '../model/layer-weights.js';
import { InputRowError, leftPad } from './engine.js';
import { attentionMask, positionIds, type BatchLayout } from './masks.js';
import { blockWorkBytes, formatBytes } from './memory.js';
import { createSession, f32, type OrtSession, type OrtTensor, type SessionOptions } from './ort.js';
import { invFreq, ropeTables } from './rope.js';

export interface LayerwiseOptions {
  /** The budget the plan keeps to (bytes of resident memory, this process's baseline included). */
  maxMemory: number;
  session?: Partial<SessionOptions>;
  /** Force this many layers per group (tests, benchmarks); default: as many as the budget holds. */
  layersPerGroup?: number;
  /** Force spooling the residual stream to disk (tests); default: only when it does not fit. */
  spool?: boolean;
}

/** The batches one run will see, for planning: rows and padded length of each. */
export type BatchShapes = { rows: number; seq: number }[][];

export interface LayerwisePlan {
  /** Blocks that run: 0..layers-1. */
  layers: number;
  layersPerGroup: number;
  groups: number;
  /** Residual streams spooled to disk between groups (else held in memory). */
  spool: boolean;
  /** Estimated peak resident bytes, and its parts. */
  peakBytes: number;
  parts: { baseline: number; reserved: number; weights: number; work: number; captures: number; residuals: number };
  maxMemory: number;
}

type Capture = (batch: number, hook: string, data: Float32Array, layout: BatchLayout) => void;

interface Slot {
  data: Float32Array;
  tensor: OrtTensor;
}

/** Batch-sized outputs the plan allows for beyond those in use: returned by ORT, not yet collected. */
const GC_SLACK_OUTPUTS = 4;

export interface PlanInput {
  maxMemory: number;
  /** Resident bytes before the run (this process now). */
  baseline: number;
  /** Bytes the caller holds during the run (e.g. a chunk's pooled outputs). */
  reserved: number;
  /** Blocks to run (0..layers-1) and the largest one's fp32 weight bytes. */
  layers: number;
  layerBytes: number;
  /** Most hooks captured at one layer. */
  hooksPerLayer: number;
  calls: BatchShapes;
  layersPerGroup?: number;
  spool?: boolean;
}

/**
 * As many layers per group as the budget holds beside: the baseline, what the caller reserves,
 * ORT's working memory for the largest batch (blockWorkBytes; the group graphs run without ORT's
 * arena, so an idle graph holds none of it), a batch's residual in and out
 * (and its embedding rows), each grouped layer's weights and captures, and every batch's
 * residual between groups unless spooled (chosen only when holding them leaves no room for a
 * layer).
 */
export function planLayers(spec: ModelSpec, p: PlanInput): LayerwisePlan {
  const D = spec.dModel;
  let work = 0;
  let batchResid = 0;
  let callResid = 0;
  for (const call of p.calls) {
    let sum = 0;
    for (const b of call) {
      work = Math.max(work, blockWorkBytes(spec, b.rows, b.seq));
      batchResid = Math.max(batchResid, 4 * b.rows * b.seq * D);
      sum += 4 * b.rows * b.seq * D;
    }
    callResid = Math.max(callResid, sum);
  }
  const perLayer = p.layerBytes + p.hooksPerLayer * batchResid;
  // A batch's residual in and out, and outputs ORT returned that V8 has not collected yet
  // (measured: up to about four a run, as ArrayBuffers pending garbage collection).
  const fixed = p.baseline + p.reserved + (2 + GC_SLACK_OUTPUTS) * batchResid;
  const need = (g: number, resid: number) => fixed + work + resid + g * perLayer;
  const fit = (resid: number) => Math.min(p.layers, Math.floor((p.maxMemory - fixed - work - resid) / perLayer));
  let spool = p.spool ?? false;
  let g = fit(spool ? 0 : callResid);
  if (g < 1 && p.spool === undefined) {
    spool = true;
    g = fit(0);
  }
  if (p.layersPerGroup !== undefined) g = p.layersPerGroup;
  if (g < 1) {
    throw new EmlensError(
      `--max-memory ${formatBytes(p.maxMemory)} is too little: one layer of this model and one batch need about ${formatBytes(need(1, 0))} ` +
        `(this process ${formatBytes(p.baseline)}, one layer's fp32 weights ${formatBytes(p.layerBytes)}, working memory ${formatBytes(work)}, outputs ${formatBytes(need(1, 0) - p.baseline - p.layerBytes - work)}); ` +
        'raise --max-memory or lower --batch-tokens',
    );
  }
  g = Math.min(g, p.layers);
  const residuals = (spool ? 0 : callResid) + (2 + GC_SLACK_OUTPUTS) * batchResid;
  const parts = { baseline: p.baseline, reserved: p.reserved, weights: g * p.layerBytes, work, captures: g * p.hooksPerLayer * batchResid, residuals };
  const peakBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  return { layers: p.layers, layersPerGroup: g, groups: Math.ceil(p.layers / g), spool, peakBytes, parts, maxMemory: p.maxMemory };
}

export class LayerwiseRunner {
  private readonly sessions = new Map<string, { first: number; session: Promise<OrtSession> }>();
  /** Per layer of a group: tensor suffix -> reused buffer. */
  private readonly slots: Map<string, Slot>[] = [];
  /** The layers whose weights are in the slots now (first, count), or null. */
  private loaded: [number, number] | null = null;
  private readonly inv: Float32Array;
  private readonly invLocal: Float32Array | null;
  /** Layers read from the checkpoint so far (tests and benchmarks: one read per layer and call when groups rotate). */
  layerReads = 0;

  constructor(
    readonly spec: ModelSpec,
    readonly reader: LayerWeightReader,
    readonly o: LayerwiseOptions,
  ) {
    this.inv = invFreq(spec.rope, spec.headDim);
    this.invLocal = spec.ropeLocal ? invFreq(spec.ropeLocal, spec.headDim) : null;
  }

  /** Compiled group graphs so far. */
  get compiledGraphs(): number {
    return this.sessions.size;
  }

  private deepest(capture: string[]): number {
    let d = -1;
    for (const c of capture) {
      const h = parseHookName(c);
      if (!h) throw new EmlensError(`capture: "${c}" is not a hook point (${HOOK_PATTERN})`);
      if (h.layer >= this.spec.nLayers) throw new EmlensError(`capture: layer ${h.layer} is out of range (model has ${this.spec.nLayers} layers: 0..${this.spec.nLayers - 1})`);
      d = Math.max(d, h.layer);
    }
    if (d < 0) throw new EmlensError('forward: nothing requested (no captures)');
    return d;
  }

  /**
   * The plan for runs over `calls` (each a list of batches held together), capturing `capture`,
   * with `reserved` bytes the caller holds meanwhile; a budget that cannot hold one layer and
   * one batch is an error naming what it needs.
   */
  plan(calls: BatchShapes, capture: string[], reserved: number): LayerwisePlan {
    const spec = this.spec;
    const layers = this.deepest(capture) + 1;
    const perLayerHooks = new Map<number, number>();
    for (const c of new Set(capture)) {
      const l = parseHookName(c)!.layer;
      perLayerHooks.set(l, (perLayerHooks.get(l) ?? 0) + 1);
    }
    let layerBytes = 0;
    for (let l = 0; l < layers; l++) layerBytes = Math.max(layerBytes, this.reader.layerBytes(l));
    return planLayers(spec, {
      maxMemory: this.o.maxMemory,
      baseline: process.memoryUsage().rss,
      reserved,
      layers,
      layerBytes,
      hooksPerLayer: Math.max(...perLayerHooks.values()),
      calls,
      layersPerGroup: this.o.layersPerGroup,
      spool: this.o.spool,
    });
  }

  /**
   * Runs `batches` (rows of token ids each; rows of different lengths are left-padded) through
   * the blocks up to the deepest hook of `capture`, layer group by layer group, calling
   * `onCapture` with each hook's [B, T, D] activations as its group computes them.
   */
  async run(batches: ArrayLike<number>[][], capture: string[], plan: LayerwisePlan, onCapture: Capture, opts: { spoolDir?: string; onGroup?: (done: number, groups: number) => void } = {}): Promise<void> {
    const spec = this.spec;
    const D = spec.dModel;
    const hooks = hooksOf(capture);
    const pads = batches.map((rows) => this.pad(rows));
    const resid = new ResidStore(batches.length, plan.spool ? opts.spoolDir : undefined);
    try {
      const G = plan.layersPerGroup;
      for (let gi = 0; gi < plan.groups; gi++) {
        const start = gi * G;
        const count = Math.min(G, plan.layers - start);
        this.load(start, count);
        const isLast = start + count === plan.layers;
        const gg = this.groupGraph(start, count, hooks, plan.layers);
        const postCaptured = gg.postCaptured;
        const { first, session } = this.template(start, count, hooks, gg);
        const s = await session;
        const weights: Record<string, OrtTensor> = {};
        for (let i = 0; i < count; i++) for (const [suffix, slot] of this.slots[i]!) weights[`model.layers.${first + i}.${suffix}`] = slot.tensor;
        for (let b = 0; b < batches.length; b++) {
          const { ids, layout } = pads[b]!;
          const B = layout.pad.length;
          const T = layout.seq;
          let x: Float32Array;
          if (start === 0) {
            x = new Float32Array(B * T * D);
            this.reader.gatherEmbeddings(ids, x);
          } else x = resid.get(b, B * T * D);
          const feeds: Record<string, OrtTensor> = { ...this.tables(layout), [IO.residIn]: f32(x, [B, T, D]) };
          const all: Record<string, OrtTensor> = {};
          for (const name of s.inputNames) {
            const t = feeds[name] ?? weights[name];
            if (!t) throw new Error(`no feed for graph input ${name}`);
            all[name] = t;
          }
          const out = await s.run(all);
          for (let i = 0; i < count; i++) {
            for (const kind of hooks.get(start + i) ?? []) onCapture(b, hookName(start + i, kind), out[hookName(first + i, kind)]!.data as Float32Array, layout);
          }
          if (!isLast) resid.set(b, out[postCaptured ? hookName(first + count - 1, 'resid_post') : IO.residOut]!.data as Float32Array);
        }
        opts.onGroup?.(gi + 1, plan.groups);
      }
    } finally {
      resid.close();
    }
  }

  /** Drops the loaded weights and compiled graphs. */
  async release(): Promise<void> {
    for (const { session } of this.sessions.values()) await (await session).release();
    this.sessions.clear();
    this.slots.length = 0;
    this.loaded = null;
  }

  private pad(rows: ArrayLike<number>[]): { ids: Float64Array; layout: BatchLayout } {
    const V = this.spec.vocab;
    const list = rows.map((r, b) => {
      const a = Array.from(r);
      for (const id of a) if (!Number.isInteger(id) || id < 0 || id >= V) throw new InputRowError(b, `token id ${id} is outside the vocabulary (0..${V - 1})`);
      return a;
    });
    const { rows: padded, layout } = leftPad(list, 0);
    return { ids: Float64Array.from(padded, Number), layout };
  }

  /** Reads layers start..start+count-1 into the slots, unless they are there already. */
  private load(start: number, count: number): void {
    if (this.loaded && this.loaded[0] === start && this.loaded[1] === count) return;
    this.loaded = null;
    for (let i = 0; i < count; i++) {
      const slot = (this.slots[i] ??= new Map());
      const l = start + i;
      const want = new Set(this.reader.tensors(l).map((t) => t.suffix));
      for (const k of [...slot.keys()]) if (!want.has(k)) slot.delete(k);
      this.reader.readLayer(l, (suffix, numel) => {
        let s = slot.get(suffix);
        if (!s || s.data.length !== numel) {
          const shape = this.reader.tensors(l).find((t) => t.suffix === suffix)!.info.shape;
          const data = new Float32Array(numel);
          s = { data, tensor: f32(data, shape) };
          slot.set(suffix, s);
        }
        return s.data;
      });
      this.layerReads++;
    }
    this.slots.length = Math.max(this.slots.length, count);
    this.loaded = [start, count];
  }

  /**
   * What a group's graph is (its layer kinds, its tensors, the hooks it returns, whether it returns
   * the residual): groups alike share one graph. The group's output is its last resid_post, read
   * from that capture when there is one, else returned as resid_out (not by the last group).
   */
  private groupGraph(start: number, count: number, hooks: Map<number, HookKind[]>, layers: number): { key: string; residOut: boolean; postCaptured: boolean } {
    const postCaptured = (hooks.get(start + count - 1) ?? []).includes('resid_post');
    const residOut = start + count < layers && !postCaptured;
    const desc = Array.from({ length: count }, (_, i) => ({
      type: this.spec.layerTypes[start + i],
      hooks: hooks.get(start + i) ?? [],
      tensors: this.reader.tensors(start + i).map((t) => `${t.suffix}:${t.info.shape.join('x')}`),
    }));
    return { key: JSON.stringify({ desc, residOut }), residOut, postCaptured };
  }

  /** The compiled graph of a group, built for the first group of its kind and reused for later ones. */
  private template(start: number, count: number, hooks: Map<number, HookKind[]>, gg: { key: string; residOut: boolean }): { first: number; session: Promise<OrtSession> } {
    const { key, residOut } = gg;
    let t = this.sessions.get(key);
    if (!t) {
      const weightShapes = new Map<string, number[]>();
      for (let i = 0; i < count; i++) for (const x of this.reader.tensors(start + i)) weightShapes.set(`model.layers.${start + i}.${x.suffix}`, x.info.shape);
      const capture: string[] = [];
      for (let i = 0; i < count; i++) for (const k of hooks.get(start + i) ?? []) capture.push(hookName(start + i, k));
      const variant: GraphVariant = { capture, steer: [], ablate: [], kvCache: false, logits: 'none', firstLayer: start, lastLayer: start + count - 1, residOut, weightShapes };
      const graph = buildDecoderGraph(this.spec, variant);
      // Without ORT's arena: its pool, sized for the largest run and kept while the session lives,
      // measured 1.4 GiB above the intermediates themselves on the 7B-shaped model (peak RSS 3.56
      // against 2.12 GiB); freed after each run, the intermediates cost only while a group runs.
      t = { first: start, session: createSession(emitOnnx(graph, `${this.spec.modelType} layers ${start}-${start + count - 1}`), { ...this.o.session, cpuMemArena: false }) };
      this.sessions.set(key, t);
    }
    return t;
  }

  /** Rope tables and masks of one batch (recomputed per group: cheap beside a block, and never held). */
  private tables(layout: BatchLayout): Record<string, OrtTensor> {
    const spec = this.spec;
    const B = layout.pad.length;
    const T = layout.seq;
    const hd = spec.headDim;
    const pos = positionIds(layout);
    const out: Record<string, OrtTensor> = {};
    const { cos, sin } = ropeTables(this.inv, pos);
    out[IO.cos] = f32(cos, [B, T, hd]);
    out[IO.sin] = f32(sin, [B, T, hd]);
    if (this.invLocal) {
      const t = ropeTables(this.invLocal, pos);
      out[IO.cosLocal] = f32(t.cos, [B, T, hd]);
      out[IO.sinLocal] = f32(t.sin, [B, T, hd]);
    }
    out[IO.mask] = f32(attentionMask(layout, null), [B, 1, 1, T, T]);
    if (spec.slidingWindow !== null) out[IO.maskLocal] = f32(attentionMask(layout, spec.slidingWindow), [B, 1, 1, T, T]);
    return out;
  }
}

/** Layer -> hook kinds captured there (sorted). */
function hooksOf(capture: string[]): Map<number, HookKind[]> {
  const hooks = new Map<number, HookKind[]>();
  for (const c of [...new Set(capture)].sort()) {
    const h = parseHookName(c)!;
    hooks.set(h.layer, [...(hooks.get(h.layer) ?? []), h.kind]);
  }
  return hooks;
}

/** Each batch's residual stream between groups: in memory, or in a spool file (one slot per batch). */
class ResidStore {
  private readonly mem: (Float32Array | undefined)[];
  private fd: number | null = null;
  private file: string | null = null;
  private readonly offsets: number[] = [];
  private end = 0;

  constructor(n: number, spoolDir: string | undefined) {
    this.mem = new Array(n);
    if (spoolDir !== undefined) {
      mkdirSync(spoolDir, { recursive: true });
      this.file = join(spoolDir, `resid-${process.pid}.spool`);
      this.fd = openSync(this.file, 'w+');
    }
  }

  set(b: number, x: Float32Array): void {
    if (this.fd === null) {
      this.mem[b] = x;
      return;
    }
    // A batch's slot keeps its size from group to group, so slots are laid out at first write.
    if (this.offsets[b] === undefined) {
      this.offsets[b] = this.end;
      this.end += x.byteLength;
    }
    const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    for (let off = 0; off < bytes.length; ) off += writeSync(this.fd, bytes, off, Math.min(1 << 28, bytes.length - off), this.offsets[b]! + off);
  }

  get(b: number, n: number): Float32Array {
    if (this.fd === null) {
      const x = this.mem[b]!;
      this.mem[b] = undefined;
      return x;
    }
    const x = new Float32Array(n);
    const bytes = new Uint8Array(x.buffer);
    for (let off = 0; off < bytes.length; ) {
      const r = readSync(this.fd, bytes, off, Math.min(1 << 28, bytes.length - off), this.offsets[b]! + off);
      if (r === 0) throw new Error('residual spool file ended early');
      off += r;
    }
    return x;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      rmSync(this.file!, { force: true });
      this.fd = null;
    }
  }
}
