/**
 * A measurement run in a fresh process: `node dist-bench/bench/child.js <mode> '<json args>'`.
 * Builds the benchmark model's random weights in memory, warms up, runs the timed loop and
 * prints one JSON line on stdout (progress goes to stderr). Peak RSS is this process's alone.
 */
import { Engine } from '../src/runtime/engine.js';
import { hookName } from '../src/hooks/names.js';
import { benchSpec, log, peakRss, randomIds, benchWeights, stats, timeRuns, type Stats, childMain } from './util.js';

export interface MemoryFigures {
  /** Bytes of fp32 weight data. */
  weightBytes: number;
  /** RSS before the weights were built (node + onnxruntime loaded). */
  rssBaseline: number;
  /** RSS once the weights were built and the engine constructed. */
  rssWeights: number;
  /** RSS after the timed loop. */
  rssEnd: number;
  /** Peak RSS of the whole process (resourceUsage().maxRSS). */
  peakRss: number;
}

export interface ForwardChildArgs {
  batch: number;
  seq: number;
  warmup: number;
  runs: number;
  /** 'all': every blocks.L.hook_resid_post; 'last': only the last layer's. */
  capture: 'all' | 'last';
}

export interface ForwardChildResult extends MemoryFigures {
  batch: number;
  seq: number;
  capture: 'all' | 'last';
  buildWeightsMs: number;
  /** The first call: compiles the graph variant, then runs it. */
  firstCallMs: number;
  timesMs: number[];
  stats: Stats;
}

export interface GenerateChildArgs {
  promptLen: number;
  newTokens: number;
  warmup: number;
  runs: number;
}

export interface GenerateChildResult extends MemoryFigures {
  promptLen: number;
  newTokens: number;
  firstCallMs: number;
  /** Per run: whole generate() call. */
  totalMs: number[];
  /** Per run: the first step (prefill of the prompt + first token). */
  prefillMs: number[];
  /** Per run: mean time of the remaining single-token steps. */
  decodeStepMs: number[];
}

function rss(): number {
  return process.memoryUsage().rss;
}

async function forward(a: ForwardChildArgs): Promise<ForwardChildResult> {
  const spec = benchSpec();
  const rssBaseline = rss();
  const t0 = performance.now();
  const { weights, bytes } = benchWeights(spec);
  const buildWeightsMs = performance.now() - t0;
  const engine = new Engine(spec, weights);
  const rssWeights = rss();
  log(`forward B=${a.batch} T=${a.seq}: weights ${(bytes / 2 ** 30).toFixed(2)} GiB built in ${(buildWeightsMs / 1000).toFixed(1)} s`);
  const ids = randomIds(a.batch, a.seq, spec.vocab, a.batch);
  const capture =
    a.capture === 'all' ? Array.from({ length: spec.nLayers }, (_, l) => hookName(l, 'resid_post')) : [hookName(spec.nLayers - 1, 'resid_post')];
  const call = () => engine.forward({ ids, capture, logits: 'none' });
  const t1 = performance.now();
  const first = await call();
  const firstCallMs = performance.now() - t1;
  if (first.captures.size !== capture.length) throw new Error(`expected ${capture.length} captures, got ${first.captures.size}`);
  const timesMs = await timeRuns(call, Math.max(0, a.warmup - 1), a.runs);
  return {
    ...a,
    buildWeightsMs,
    firstCallMs,
    timesMs,
    stats: stats(timesMs),
    weightBytes: bytes,
    rssBaseline,
    rssWeights,
    rssEnd: rss(),
    peakRss: peakRss(),
  };
}

async function generate(a: GenerateChildArgs): Promise<GenerateChildResult> {
  const spec = benchSpec();
  const rssBaseline = rss();
  const { weights, bytes } = benchWeights(spec);
  const engine = new Engine(spec, weights);
  const rssWeights = rss();
  const [prompt] = randomIds(1, a.promptLen, spec.vocab, 99);
  // stopIds [] so that a random model never stops early on an EOS id.
  const t1 = performance.now();
  await engine.generate([prompt!], { maxNewTokens: 2, stopIds: [] });
  const firstCallMs = performance.now() - t1;
  const totalMs: number[] = [];
  const prefillMs: number[] = [];
  const decodeStepMs: number[] = [];
  for (let r = 0; r < a.warmup - 1 + a.runs; r++) {
    const marks: number[] = [];
    const t0 = performance.now();
    const res = await engine.generate([prompt!], { maxNewTokens: a.newTokens, stopIds: [], onStep: () => marks.push(performance.now()) });
    const t = performance.now() - t0;
    if (res.tokens[0]!.length !== a.newTokens) throw new Error(`generated ${res.tokens[0]!.length} tokens, asked for ${a.newTokens}`);
    if (r < a.warmup - 1) continue;
    totalMs.push(t);
    prefillMs.push(marks[0]! - t0);
    decodeStepMs.push((marks[marks.length - 1]! - marks[0]!) / (marks.length - 1));
  }
  return {
    ...a,
    firstCallMs,
    totalMs,
    prefillMs,
    decodeStepMs,
    weightBytes: bytes,
    rssBaseline,
    rssWeights,
    rssEnd: rss(),
    peakRss: peakRss(),
  };
}

await childMain('child', {
  forward: (a: ForwardChildArgs) => forward(a),
  generate: (a: GenerateChildArgs) => generate(a),
});
