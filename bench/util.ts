/**
 * Shared pieces of the benchmarks: the benchmark model's config, random weights built in memory,
 * timing statistics, FLOP counts, and running a measurement in a fresh child process (so that
 * the parent's memory does not pollute peak-RSS figures).
 */
import { spawn } from 'node:child_process';
import { DEFAULT_ORGANISM, organismConfigJson } from '../src/organism/build.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseConfig, type ModelSpec } from '../src/model/config.js';
import type { Weights } from '../src/model/weights.js';
import { randomWeights } from '../src/model/random.js';
import { rng } from '../src/runtime/random.js';

/** A Qwen2.5-0.5B-shaped config (config.json as transformers writes it). */
export const QWEN25_05B_CONFIG = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: 32768,
  max_window_layers: 21,
  bos_token_id: 151643,
  eos_token_id: 151643,
  torch_dtype: 'bfloat16',
};

export function benchSpec(): ModelSpec {
  return parseConfig(QWEN25_05B_CONFIG, 'bench config.json');
}

/** The built-in model organism's shape: its default config and vocabulary size (453 words). */
export const ORGANISM_CONFIG = organismConfigJson({ ...DEFAULT_ORGANISM, seed: 0 }, 453);

export function organismSpec(): ModelSpec {
  return parseConfig(ORGANISM_CONFIG, 'bench organism config.json');
}

/** Length of the Gaussian block random tensors repeat: a prime, so repeats align with no tensor dimension. */
export const TILE = 65521;

/** The model's own random weights (model/random.ts), tiled for speed, and their size in bytes. */
export function benchWeights(spec: ModelSpec, seed = 0): { weights: Weights; bytes: number } {
  const weights = randomWeights(spec, seed, { withBiases: true, tile: TILE });
  let bytes = 0;
  for (const w of weights.values()) bytes += w.data.byteLength;
  return { weights, bytes };
}

/** Deterministic token ids in [0, vocab). */
export function randomIds(rows: number, len: number, vocab: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: rows }, () => Array.from({ length: len }, () => Math.floor(r() * vocab)));
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** Runs `fn` `warmup` times untimed, then `runs` times timed; returns milliseconds per run. */
export async function timeRuns(fn: () => Promise<unknown>, warmup: number, runs: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

/** One projection of a block: y[tokens, out] = x[tokens, in] · W[out, in]ᵀ, `count` per layer. */
export interface Projection {
  name: string;
  in: number;
  out: number;
  /** How many projections of this shape one layer runs. */
  count: number;
}

/** The block's linear layers, grouped by shape. */
export function projections(spec: ModelSpec): Projection[] {
  const D = spec.dModel;
  const q = spec.nHeads * spec.headDim;
  const kv = spec.nKvHeads * spec.headDim;
  const list: Projection[] = [
    { name: 'q_proj', in: D, out: q, count: 1 },
    { name: 'o_proj', in: q, out: D, count: 1 },
    { name: 'k_proj,v_proj', in: D, out: kv, count: 2 },
    { name: 'gate_proj,up_proj', in: D, out: spec.ffn, count: 2 },
    { name: 'down_proj', in: spec.ffn, out: D, count: 1 },
  ];
  // Merge equal shapes (q_proj and o_proj are both D x D when nHeads * headDim = D).
  const merged: Projection[] = [];
  for (const p of list) {
    const same = merged.find((m) => m.in === p.in && m.out === p.out);
    if (same) {
      same.name += `,${p.name}`;
      same.count += p.count;
    } else merged.push({ ...p });
  }
  return merged;
}

/** Matmul FLOPs of a `layers`-deep forward over `batch` rows of `seq` tokens (no LM head). */
export function forwardFlops(spec: ModelSpec, batch: number, seq: number, layers = spec.nLayers): { linear: number; attention: number; total: number } {
  const tokens = batch * seq;
  const linearParams = projections(spec).reduce((s, p) => s + p.count * p.in * p.out, 0);
  const linear = 2 * tokens * linearParams * layers;
  // QKᵀ and PV over the full [T, S] square the graph computes (masked entries included):
  // each 2 * H * T * S * hd per row.
  const attention = 2 * 2 * batch * spec.nHeads * seq * seq * spec.headDim * layers;
  return { linear, attention, total: linear + attention };
}

/**
 * Runs `dist-bench/bench/<script> <mode> <json args>` (default child.js) in a fresh node, with `env`
 * added to this process's environment; returns its last stdout line as JSON.
 */
export function runChild<T>(mode: string, args: object, opts: { script?: string; env?: Record<string, string> } = {}): Promise<T> {
  const script = fileURLToPath(new URL(`./${opts.script ?? 'child.js'}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, mode, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    let out = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => (out += d));
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`bench child ${mode} exited with ${signal ?? code}`));
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        reject(new Error(`bench child ${mode} printed no JSON result: ${line.slice(0, 200)}`));
      }
    });
  });
}

/** Peak resident set size of this process so far, in bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** Progress lines go to stderr, so stdout stays the table (or a child's JSON). */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** CPU seconds from /proc: the whole machine's busy and steal time, and this process's own (children it waited for included). */
function cpuSeconds(): { busy: number; steal: number; own: number } | null {
  try {
    const hz = 100; // USER_HZ on Linux
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = cpu as [number, number, number, number, number, number, number, number];
    // /proc/self/stat: the command name may hold spaces; fields after ')' start at field 3.
    const self = readFileSync('/proc/self/stat', 'utf8');
    const f = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    const own = f[11]! + f[12]! + f[13]! + f[14]!; // utime stime cutime cstime
    return { busy: (user + nice + system + irq + softirq) / hz, steal: (steal ?? 0) / hz, own: own / hz };
  } catch {
    return null;
  }
}

export interface Load {
  wallS: number;
  /** Average cores busy with other processes while the section ran (a noisy-machine warning). */
  backgroundCores: number;
  /** Average cores stolen by the hypervisor. */
  stealCores: number;
}

/** Measures how busy the rest of the machine was between start and stop (null off Linux). */
export function loadMeter(): { stop(): Load | null } {
  const t0 = performance.now();
  const a = cpuSeconds();
  return {
    stop() {
      const b = cpuSeconds();
      if (!a || !b) return null;
      const wallS = (performance.now() - t0) / 1000;
      return {
        wallS,
        backgroundCores: Math.max(0, b.busy - a.busy - (b.own - a.own)) / wallS,
        stealCores: (b.steal - a.steal) / wallS,
      };
    },
  };
}

/**
 * A child script's entry (runChild's other end): `node child.js MODE 'JSON'` runs modes[MODE] on
 * the parsed arguments and prints its result as one JSON line.
 */
export async function childMain(name: string, modes: Record<string, (args: never) => unknown>): Promise<void> {
  const [mode, raw] = process.argv.slice(2);
  const run = modes[mode ?? ''];
  if (!run) throw new Error(`bench ${name}: unknown mode ${mode}`);
  process.stdout.write(`${JSON.stringify(await run(JSON.parse(raw ?? '{}') as never))}\n`);
}
