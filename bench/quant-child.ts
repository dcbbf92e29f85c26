/**
 * Quantised-decode measurements in a fresh process: `node dist-bench/bench/quant-child.js <mode> '<json>'`.
 *
 * - decode: the random Qwen2.5-0.5B-shaped model (built in memory) generating at each batch size
 *   with four weight layouts side by side in this one process: fp32 weights fed as inputs (what
 *   forward and --weights fp32 use), fp32 weights as initializers (prepacked by ORT), int8 and
 *   int4 (MatMulNBits). The layouts take turns run by run, so a change of machine load hits all
 *   of them alike. Times each decode step (the LM head every step).
 * - store: quantises the Qwen2.5-7B-shaped BF16 checkpoint tensor by tensor into the decode
 *   weight store (`LoadedModel.load` with --weights and generate-only), reports time and peak RSS.
 * - big: loads that store (cached by the previous mode) and decodes greedily at batch 1.
 *
 * Prints one JSON line on stdout (progress on stderr).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/runtime/engine.js';
import { LoadedModel } from '../src/backend/model.js';
import { openWeightStore } from '../src/runtime/weight-store.js';
import type { WeightMode } from '../src/runtime/quantize.js';
import { benchSpec, benchWeights, log, peakRss, randomIds } from './util.js';

export const LAYOUTS = ['fp32-inputs', 'fp32-init', 'int8', 'int4'] as const;
export type Layout = (typeof LAYOUTS)[number];

export interface QuantDecodeArgs {
  batches: number[];
  promptLen: number;
  newTokens: number;
  warmup: number;
  runs: number;
}
export interface QuantDecodeResult extends QuantDecodeArgs {
  /** layout -> batch -> per timed run, mean ms of the single-token steps after the first. */
  decodeStepMs: Record<Layout, Record<number, number[]>>;
  weightBytes: number;
  peakRss: number;
}

export interface BigArgs {
  dir: string;
  mode: Exclude<WeightMode, 'fp32'>;
  promptLen: number;
  newTokens: number;
}
export interface BigResult extends BigArgs {
  loadMs: number;
  /** decode: ms per single-token step after the first (median of the steps). */
  decodeStepMs: number | null;
  storeBytes: number;
  peakRss: number;
  /** big: resident memory after the decode, anonymous (ORT's prepacked weights, heaps) vs file pages (the store's mapped initializers), from /proc/self/status. */
  rssAnon?: number;
  rssFile?: number;
}

/** Linux: a /proc/self/status field in bytes (0 where absent). */
function statusBytes(field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function decode(a: QuantDecodeArgs): Promise<QuantDecodeResult> {
  const spec = benchSpec();
  const { weights, bytes } = benchWeights(spec);
  const src = { spec, shapes: new Map([...weights].map(([k, w]) => [k, w.shape])), read: (n: string) => weights.get(n)!.data };
  const engines: Record<Layout, Engine> = {
    'fp32-inputs': new Engine(spec, weights),
    'fp32-init': new Engine(spec, new Map(), {}, openWeightStore(src, 'fp32', null)),
    int8: new Engine(spec, new Map(), {}, openWeightStore(src, 'int8', null)),
    int4: new Engine(spec, new Map(), {}, openWeightStore(src, 'int4', null)),
  };
  const decodeStepMs = Object.fromEntries(LAYOUTS.map((l) => [l, {} as Record<number, number[]>])) as QuantDecodeResult['decodeStepMs'];
  for (const B of a.batches) {
    const prompts = randomIds(B, a.promptLen, spec.vocab, 99);
    for (const l of LAYOUTS) decodeStepMs[l][B] = [];
    for (let r = 0; r < a.warmup + a.runs; r++) {
      for (const l of LAYOUTS) {
        const marks: number[] = [];
        // stopIds [] so that a random model never stops early on an EOS id.
        await engines[l].generate(prompts, { maxNewTokens: a.newTokens, temperature: 1, seed: r, stopIds: [], onStep: () => marks.push(performance.now()) });
        const step = (marks[marks.length - 1]! - marks[0]!) / (marks.length - 1);
        log(`quant B=${B} ${l}: run ${r + 1}/${a.warmup + a.runs} ${step.toFixed(1)} ms/step${r < a.warmup ? ' (warm-up)' : ''}`);
        if (r >= a.warmup) decodeStepMs[l][B]!.push(step);
      }
    }
  }
  return { ...a, decodeStepMs, weightBytes: bytes, peakRss: peakRss() };
}

function storeBytes(m: LoadedModel): number {
  return statSync(join(m.engine.decode!.dir, 'weights.bin')).size;
}

async function store(a: BigArgs): Promise<BigResult> {
  const t0 = performance.now();
  let last = 0;
  const m = await LoadedModel.load(a.dir, {
    weights: a.mode,
    generateOnly: true,
    onLoad: (d, t) => {
      if (performance.now() - last > 30_000 || d === t) {
        last = performance.now();
        log(`quant store ${a.mode}: ${d}/${t} tensors`);
      }
    },
  });
  return { ...a, loadMs: performance.now() - t0, decodeStepMs: null, storeBytes: storeBytes(m), peakRss: peakRss() };
}

async function big(a: BigArgs): Promise<BigResult> {
  const t0 = performance.now();
  const m = await LoadedModel.load(a.dir, { weights: a.mode, generateOnly: true });
  const loadMs = performance.now() - t0;
  const prompts = randomIds(1, a.promptLen, m.spec.vocab, 5);
  const marks: number[] = [];
  await m.engine.generate(prompts, { maxNewTokens: a.newTokens, stopIds: [], onStep: () => {
    marks.push(performance.now());
    log(`quant 7B ${a.mode}: step ${marks.length}/${a.newTokens}`);
  } });
  const steps = marks.slice(1).map((t, i) => t - marks[i]!).sort((x, y) => x - y);
  return { ...a, loadMs, decodeStepMs: steps[steps.length >> 1]!, storeBytes: storeBytes(m), peakRss: peakRss(), rssAnon: statusBytes('RssAnon'), rssFile: statusBytes('RssFile') };
}

async function main(mode: string | undefined, args: unknown): Promise<unknown> {
  switch (mode) {
    case 'decode':
      return decode(args as QuantDecodeArgs);
    case 'store':
      return store(args as BigArgs);
    case 'big':
      return big(args as BigArgs);
    default:
      throw new Error(`bench quant-child: unknown mode ${mode}`);
  }
}

// Run only as the child script (quant.ts imports LAYOUTS and the types from here).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, raw] = process.argv.slice(2);
  process.stdout.write(`${JSON.stringify(await main(mode, JSON.parse(raw ?? '{}')))}\n`);
}
