/**
 * Section "serve": a bounded load test of `emlens serve` (a real child process on 127.0.0.1) on a
 * random organism-shaped checkpoint: CLIENTS concurrent clients send a fixed count of KServe v2
 * binary infer requests, in two rounds (pooled last-layer captures of B × T random ids). Reports throughput,
 * p50 / p99 latency, the server's throughput against the same forward run in this process (HTTP
 * and queue overhead), and whether the server's memory stays flat over the run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../src/io/safetensors/index.js';
import { Engine } from '../src/runtime/engine.js';
import type { BenchOptions, Row, Section, SectionResult } from './section.js';
import { benchWeights, log, MiB, ORGANISM_CONFIG, organismSpec, randomIds } from './util.js';

const CLIENTS = 8;
/** Per client per round; two rounds. */
const REQUESTS_PER_CLIENT = 25;
const B = 4;
const T = 64;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export async function benchServe(opts: BenchOptions) {
  const spec = organismSpec();
  const dir = mkdtempSync(join(tmpdir(), 'emlens-bench-serve-'));
  const { weights } = benchWeights(spec, 3);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(ORGANISM_CONFIG));
  writeSafetensors(join(dir, 'model.safetensors'), new Map([...weights].map(([k, w]) => [k, { shape: w.shape, dtype: 'F32' as const, data: w.data }])));
  const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
  const proc = spawn(process.execPath, [bin, 'serve', dir, '--no-auth', '--port', '0', '--queue', String(CLIENTS * 2), '--name', 'bench'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      proc.stderr!.on('data', (c) => {
        err += c;
        const m = /serving "bench" at (http:\/\/[^ ]+) /.exec(err);
        if (m) resolve(m[1]!);
      });
      proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
    const L = spec.nLayers;
    const body = (seed: number) => {
      const ids = randomIds(B, T, spec.vocab, seed).flat();
      const idBuf = Buffer.alloc(ids.length * 8);
      ids.forEach((v, i) => idBuf.writeBigInt64LE(BigInt(v), i * 8));
      const pool = Buffer.from(new Float32Array(B * T).fill(1 / T).buffer);
      const head = Buffer.from(
        JSON.stringify({
          inputs: [
            { name: 'input_ids', datatype: 'INT64', shape: [B, T], parameters: { binary_data_size: idBuf.length } },
            { name: 'pool', datatype: 'FP32', shape: [B, T], parameters: { binary_data_size: pool.length } },
          ],
          outputs: [{ name: `pooled.blocks.${L - 1}.hook_resid_post`, parameters: { binary_data: true } }],
        }),
      );
      return { head: head.length, data: Buffer.concat([head, idBuf, pool]) };
    };
    const send = async (seed: number): Promise<number> => {
      const b = body(seed);
      const t0 = performance.now();
      const r = await fetch(`${url}/v2/models/bench/infer`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(b.head) }, body: b.data });
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`serve bench: HTTP ${r.status}`);
      return performance.now() - t0;
    };
    for (let i = 0; i < opts.warmup * CLIENTS; i++) await send(i);
    log(`serve: ${CLIENTS} clients x ${REQUESTS_PER_CLIENT} requests of ${B} x ${T} tokens, twice`);
    const latencies: number[] = [];
    const round = async (r: number) => {
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          for (let k = 0; k < REQUESTS_PER_CLIENT; k++) latencies.push(await send(1000 + ((r * CLIENTS + c) * REQUESTS_PER_CLIENT + k)));
        }),
      );
      return (performance.now() - t0) / 1000;
    };
    // Memory is flat when a second round of the same load leaves the server no bigger than the
    // first did (the first round lets the heap and ORT's arena grow to their working size).
    const firstS = await round(0);
    const rssBefore = rssOf(proc.pid!);
    const wallS = firstS + (await round(1));
    const rssAfter = rssOf(proc.pid!);
    // The same forward in this process, back to back: what the server could do with no HTTP.
    const engine = new Engine(spec, weights);
    const ids = randomIds(B, T, spec.vocab, 1);
    const capture = [`blocks.${L - 1}.hook_resid_post`];
    for (let i = 0; i < opts.warmup; i++) await engine.forward({ ids, capture });
    const n = Math.max(20, opts.runs * 4);
    const l0 = performance.now();
    for (let i = 0; i < n; i++) await engine.forward({ ids, capture });
    const localRps = n / ((performance.now() - l0) / 1000);
    const requests = 2 * CLIENTS * REQUESTS_PER_CLIENT;
    return { requests, wallS, rps: requests / wallS, tokensPerS: (requests * B * T) / wallS, p50: percentile(latencies, 50), p99: percentile(latencies, 99), localRps, rssBefore, rssAfter };
  } finally {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

export const serveSection: Section = {
  name: 'serve',
  description: `load test of emlens serve: ${CLIENTS} clients, KServe v2 binary infer on the organism shape`,
  async run(opts: BenchOptions): Promise<SectionResult> {
    const r = await benchServe(opts);
    const rows: Row[] = [
      { metric: 'requests/s', value: r.rps, unit: 'req/s' },
      { metric: 'tokens/s', value: r.tokensPerS, unit: 'tok/s', digits: 0 },
      { metric: 'latency p50', value: r.p50, unit: 'ms', digits: 1 },
      { metric: 'latency p99', value: r.p99, unit: 'ms', digits: 1 },
      { metric: 'server / in-process forward throughput', value: r.rps / r.localRps, unit: 'ratio', goal: { op: '>=', value: 0.8 } },
      { metric: 'server RSS after round 2 / after round 1', value: r.rssAfter / r.rssBefore, unit: 'ratio', goal: { op: '<=', value: 1.1 } },
      { metric: 'server RSS after the load', value: r.rssAfter / MiB, unit: 'MiB', digits: 0 },
    ];
    return { section: 'serve', rows, data: r };
  },
};
