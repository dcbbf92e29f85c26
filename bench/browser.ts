/**
 * Section "browser": greedy decode (batch 1, the KV cache, the LM head every step) in headless
 * Chromium on onnxruntime-web — wasm, and WebGPU where the browser has an adapter (here SwiftShader,
 * a CPU) — beside Node's engine (onnxruntime-node) on the same model files in the same run, with the
 * ratio. Models: the built organism (its instruct stage, read as it is; never built here) and the
 * Qwen2.5-0.5B-shaped random model, written to a temporary folder as a BF16 checkpoint the page
 * fetches by URL (the page converts to fp32, as Node does). The page is cross-origin isolated
 * (COOP/COEP), so wasm runs as many threads as Node's intra-op pool.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { emlensCacheDir } from '../src/cache.js';
import { LoadedModel } from '../src/backend/model.js';
import { Engine } from '../src/runtime/engine.js';
import { expectedTensors } from '../src/model/tensor-names.js';
import { writeSafetensors, type StWriteTensor } from '../src/io/safetensors/write.js';
import { fillGaussianTiled, rng } from '../src/runtime/random.js';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { benchSpec, GiB, log, QWEN25_05B_CONFIG, randomIds, stats, TILE } from './util.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// As test/helpers/browser.ts: offline start-up, and WebGPU exposed (SwiftShader without a GPU).
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--enable-unsafe-webgpu'];
const PROMPT_LEN = 16;
/** A cell that runs longer than this is reported as timed out (WebGPU on SwiftShader is a CPU). */
const CELL_TIMEOUT_MS = 8 * 60_000;

interface Timing {
  /** Per timed run: the whole generate() call, the first step (prefill + 1 token), the mean later step. */
  totalMs: number[];
  prefillMs: number[];
  decodeStepMs: number[];
  tokens: number[];
}

interface Cell {
  model: string;
  runtime: 'node' | 'wasm' | 'webgpu';
  /** Threads: Node's intra-op pool, or ort.env.wasm.numThreads as the page ran it. */
  threads?: number;
  loadMs?: number;
  timing?: Timing;
  /** Why there is no timing. */
  error?: string;
  /** How it was run, when not as the others. */
  note?: string;
}

/** Times `generate` with the step callback: the same arithmetic as the page's (PAGE below). */
async function timeNode(engine: Engine, ids: number[], newTokens: number, warmup: number, runs: number): Promise<Timing> {
  const t: Timing = { totalMs: [], prefillMs: [], decodeStepMs: [], tokens: [] };
  for (let i = 0; i < warmup + runs; i++) {
    const steps: number[] = [];
    const t0 = performance.now();
    const g = await engine.generate([ids], { maxNewTokens: newTokens, temperature: 0, stopIds: [], onStep: () => steps.push(performance.now()) });
    const t1 = performance.now();
    if (i < warmup) continue;
    t.totalMs.push(t1 - t0);
    t.prefillMs.push(steps[0]! - t0);
    t.decodeStepMs.push((steps[steps.length - 1]! - steps[0]!) / (steps.length - 1));
    t.tokens = g.tokens[0]!;
  }
  return t;
}

const PAGE = `
import * as m from '/site/emlens.mjs';
const q = new URLSearchParams(location.search);
m.ort.env.wasm.wasmPaths = '/site/ort/';
m.ort.env.wasm.numThreads = Number(q.get('threads'));
window.benchInfo = async () => {
  let adapter = null;
  if ('gpu' in navigator) {
    const a = await navigator.gpu.requestAdapter();
    if (a) adapter = (a.info?.vendor || '?') + '/' + (a.info?.architecture || '?');
  }
  return { crossOriginIsolated: self.crossOriginIsolated, threads: m.ort.env.wasm.numThreads, adapter, hasGpu: 'gpu' in navigator };
};
window.bench = async (model, ep, ids, newTokens, warmup, runs) => {
  const l0 = performance.now();
  const loaded = await m.loadModelFromUrl('/models/' + model, { executionProviders: [ep] });
  const loadMs = performance.now() - l0;
  const t = { totalMs: [], prefillMs: [], decodeStepMs: [], tokens: [] };
  for (let i = 0; i < warmup + runs; i++) {
    const steps = [];
    const t0 = performance.now();
    const g = await loaded.engine.generate([ids], { maxNewTokens: newTokens, temperature: 0, stopIds: [], onStep: () => steps.push(performance.now()) });
    const t1 = performance.now();
    if (i < warmup) continue;
    t.totalMs.push(t1 - t0);
    t.prefillMs.push(steps[0] - t0);
    t.decodeStepMs.push((steps[steps.length - 1] - steps[0]) / (steps.length - 1));
    t.tokens = g.tokens[0];
  }
  return { loadMs, timing: t, threads: m.ort.env.wasm.numThreads };
};
`;

const TYPES: Record<string, string> = { '.mjs': 'text/javascript', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html' };

/** Serves `/site/...` (the bundle and the page) and `/models/NAME/...` (model folders), cross-origin isolated. */
async function serve(site: string, models: Record<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const m = /^\/(site|models\/([^/]+))(\/.*)$/.exec(path);
    const base = m ? (m[1] === 'site' ? site : models[m[2]!]) : undefined;
    const p = base ? normalize(join(base, m![3]!)) : '';
    if (!base || !p.startsWith(resolve(base) + sep) || !existsSync(p) || !statSync(p).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(p)] ?? 'application/octet-stream', 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    createReadStream(p).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The 0.5B-shaped model as a BF16 checkpoint (about 1 GB): N(0, 0.02²) tiled, norms 1, Qwen2's q/k/v biases. */
function write05b(dir: string): { params: number } {
  const spec = benchSpec();
  const { required, optional } = expectedTensors(spec);
  const tensors: [string, number[]][] = [...required];
  for (const [name, shape] of optional) if (/(q|k|v)_proj\.bias$/.test(name)) tensors.push([name, shape]);
  const random = rng(5);
  const out = new Map<string, StWriteTensor>();
  let params = 0;
  for (const [name, shape] of tensors) {
    const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else fillGaussianTiled(data, random, 0.02, TILE);
    out.set(name, { shape, data, dtype: 'BF16' });
    params += data.length;
  }
  writeSafetensors(join(dir, 'model.safetensors'), out, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(QWEN25_05B_CONFIG, null, 2));
  return { params };
}

/** MemAvailable from /proc/meminfo, in bytes (Infinity off Linux). */
function memAvailable(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : Infinity;
  } catch {
    return Infinity;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, j) => (timer = setTimeout(() => j(new Error(`${what}: still running after ${ms / 60_000} min, stopped`)), ms)))]).finally(() => clearTimeout(timer!));
}

interface Plan {
  model: string;
  dir: string;
  newTokens: number;
  warmup: number;
  runs: number;
  /** Browser memory this model needs, roughly (the ArrayBuffer, fp32 tensors, wasm's copy of the feeds). */
  needBytes: number;
  /** A shorter run on WebGPU; skipSwiftShader: why it is not run on SwiftShader's adapter (a CPU). */
  webgpu?: { newTokens: number; warmup: number; runs: number; skipSwiftShader?: string };
}

export async function benchBrowser(opts: BenchOptions): Promise<{ cells: Cell[]; info: unknown; notes: string[] }> {
  const notes: string[] = [];
  const cells: Cell[] = [];
  const work = mkdtempSync(join(tmpdir(), 'emlens-bench-browser-'));
  let browser: Browser | undefined;
  let server: Server | undefined;
  try {
    const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-web.mjs'), join(work, 'site')], { encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`build-web failed: ${b.stderr}`);
    writeFileSync(join(work, 'site', 'index.html'), '<!doctype html><meta charset="utf-8"><title>emlens bench</title><script type="module" src="/site/page.mjs"></script>');
    writeFileSync(join(work, 'site', 'page.mjs'), PAGE);

    const plans: Plan[] = [];
    const organism = join(emlensCacheDir(), 'organism', 'seed-0', 'instruct');
    if (existsSync(join(organism, 'model.safetensors'))) plans.push({ model: 'organism', dir: organism, newTokens: 32, warmup: opts.warmup, runs: opts.runs, needBytes: 0 });
    else notes.push(`organism: ${organism} is not built (emlens organism build); not measured`);
    const q = join(work, 'qwen2.5-0.5b-shaped-bf16');
    rmSync(q, { recursive: true, force: true });
    mkdirSync(q);
    log('browser: writing the Qwen2.5-0.5B-shaped random checkpoint as BF16');
    const { params } = write05b(q);
    // Fewer tokens and runs: on wasm every step copies the ~2 GB of fp32 weights, fed as inputs, into wasm memory.
    // On a real GPU: one run of 4 tokens, no warm-up. On SwiftShader neither 3 runs of 8 tokens (in
    // 10 min) nor 1 run of 4 (in 8 min) finished, on 2 busy cores (2026-12-01), so it is not run.
    plans.push({
      model: 'qwen0.5b',
      dir: q,
      newTokens: 8,
      warmup: 1,
      runs: Math.min(opts.runs, 2),
      needBytes: params * 4 * 3,
      webgpu: { newTokens: 4, warmup: 0, runs: 1, skipSwiftShader: 'not run on SwiftShader (a CPU): 4 tokens did not finish in 8 min when tried' },
    });

    const threads = os.cpus().length;
    ({ server } = await serve(join(work, 'site'), Object.fromEntries(plans.map((p) => [p.model, p.dir]))));
    const url = (server.address() as AddressInfo).port;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    const info = await (async () => {
      const page = await browser!.newPage();
      await page.goto(`http://127.0.0.1:${url}/site/index.html?threads=${threads}`);
      await page.waitForFunction(() => (window as unknown as { benchInfo?: unknown }).benchInfo !== undefined);
      const r = await page.evaluate(() => (window as unknown as { benchInfo: () => Promise<unknown> }).benchInfo());
      await page.close();
      return r as { crossOriginIsolated: boolean; threads: number; adapter: string | null; hasGpu: boolean };
    })();
    log(`browser: Chromium ${browser.version()}, crossOriginIsolated ${info.crossOriginIsolated}, wasm threads ${info.threads}, WebGPU adapter ${info.adapter ?? 'none'}`);
    const eps: ('wasm' | 'webgpu')[] = info.adapter ? ['wasm', 'webgpu'] : ['wasm'];
    if (!info.adapter) notes.push(`WebGPU: no adapter (navigator.gpu ${info.hasGpu ? 'present, requestAdapter() null' : 'absent'})`);

    for (const p of plans) {
      let engine: Engine | null = (await LoadedModel.load(p.dir, { session: { intraOpThreads: threads } })).engine;
      const ids = randomIds(1, PROMPT_LEN, engine.spec.vocab, 3)[0]!;
      log(`browser: ${p.model} on Node (onnxruntime-node, ${threads} threads), ${p.newTokens} new tokens`);
      const nodeCell: Cell = { model: p.model, runtime: 'node', threads };
      try {
        nodeCell.timing = await timeNode(engine, ids, p.newTokens, p.warmup, p.runs);
      } catch (e) {
        nodeCell.error = (e as Error).message;
      }
      engine = null; // its fp32 weights, before the browser takes its own
      cells.push(nodeCell);
      for (const ep of eps) {
        const run = (ep === 'webgpu' && p.webgpu) || p;
        const cell: Cell = { model: p.model, runtime: ep, ...(run !== p ? { note: `${run.runs} run of ${run.newTokens} tokens, ${run.warmup} warm-up` } : {}) };
        cells.push(cell);
        if (ep === 'webgpu' && p.webgpu?.skipSwiftShader && info.adapter?.endsWith('/swiftshader')) {
          cell.error = p.webgpu.skipSwiftShader;
          continue;
        }
        const avail = memAvailable();
        if (avail < p.needBytes) {
          cell.error = `not run: needs about ${(p.needBytes / GiB).toFixed(1)} GiB, the machine has ${(avail / GiB).toFixed(1)} GiB available`;
          continue;
        }
        log(`browser: ${p.model} on ${ep}, ${run.newTokens} new tokens`);
        // A fresh page per cell: wasm memory only grows, and one cell should not inherit another's.
        const page = await browser.newPage();
        try {
          await page.goto(`http://127.0.0.1:${url}/site/index.html?threads=${threads}`);
          await page.waitForFunction(() => (window as unknown as { bench?: unknown }).bench !== undefined);
          const r = (await withTimeout(
            page.evaluate(([model, ep, ids, n, w, k]) => (window as unknown as { bench: (...a: unknown[]) => Promise<unknown> }).bench(model, ep, ids, n, w, k), [p.model, ep, ids, run.newTokens, run.warmup, run.runs] as const),
            CELL_TIMEOUT_MS,
            `${p.model} on ${ep}`,
          )) as { loadMs: number; timing: Timing; threads: number };
          cell.loadMs = r.loadMs;
          cell.timing = r.timing;
          if (ep === 'wasm') cell.threads = r.threads;
          if (nodeCell.timing && r.timing.tokens.join() !== nodeCell.timing.tokens.slice(0, run.newTokens).join()) notes.push(`${p.model} on ${ep}: greedy tokens differ from Node's (${r.timing.tokens.join(' ')} vs ${nodeCell.timing.tokens.join(' ')})`);
        } catch (e) {
          cell.error = (e as Error).message.split('\n')[0]!.slice(0, 300);
          log(`browser: ${p.model} on ${ep} FAILED: ${cell.error}`);
        } finally {
          await page.close().catch(() => {});
        }
      }
    }
    return { cells, info, notes };
  } finally {
    await browser?.close();
    server?.close();
    rmSync(work, { recursive: true, force: true });
  }
}

export const browserSection: Section = {
  name: 'browser',
  description: 'greedy decode tokens/s in headless Chromium (onnxruntime-web: wasm, WebGPU where present) beside Node, organism and 0.5B-shaped',
  async run(opts: BenchOptions): Promise<SectionResult> {
    const r = await benchBrowser(opts);
    const rows: Row[] = [];
    const decodeTps = (c: Cell) => (c.timing ? 1000 / stats(c.timing.decodeStepMs).median : NaN);
    for (const c of r.cells) {
      const label = `${c.model} ${c.runtime}${c.threads !== undefined ? ` (${c.threads} thread${c.threads === 1 ? '' : 's'})` : ''}${c.note ? ` (${c.note})` : ''}`;
      if (!c.timing) {
        log(`browser: ${label}: ${c.error}`);
        rows.push({ metric: `${label}: ${c.error}`, value: NaN, unit: '' });
        continue;
      }
      rows.push({ metric: `${label} decode`, value: decodeTps(c), unit: 'tokens/s', digits: 1 });
      rows.push({ metric: `${label} first step (prefill ${PROMPT_LEN} + 1)`, value: stats(c.timing.prefillMs).median, unit: 'ms', digits: 0 });
      if (c.runtime !== 'node') {
        const node = r.cells.find((n) => n.model === c.model && n.runtime === 'node');
        if (node?.timing) rows.push({ metric: `${c.model} ${c.runtime} / node decode`, value: decodeTps(c) / decodeTps(node), unit: 'x', digits: 3 });
        if (c.loadMs !== undefined) rows.push({ metric: `${c.model} ${c.runtime} page load (fetch + convert)`, value: c.loadMs, unit: 'ms', digits: 0 });
      }
    }
    for (const n of r.notes) log(`browser: ${n}`);
    return { section: 'browser', rows, data: r };
  },
};
