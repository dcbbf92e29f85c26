/**
 * `emlens playground`: a page to chat with a model in the browser, steer it with a direction
 * (a slider per layer), ablate it, and see every token's projection on the direction (a heat
 * strip under the text, a layer × token heatmap). The page is the emlens browser bundle on
 * onnxruntime-web (dist-web/, `npm run build`), the model folder beside it; it is written as a
 * standalone folder, or served on 127.0.0.1.
 */
import { cpSync, createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmlensError } from '../errors.js';
import { readDirectionFile } from '../io/directions.js';
import { loadSpec } from '../model/config.js';

/** The model files the page fetches (the weights must be one model.safetensors). */
const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja', 'chat_template.json'];

export interface PlaygroundOptions {
  model: string;
  /** A direction file (safetensors) for the sliders, optional. */
  direction?: string;
  /** The layer the page starts on. */
  layer?: number;
}

/** dist-web/ of this installation (built by `npm run build`). */
export function webBundleDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '../../dist-web');
}

/** Writes the page, the bundle, the runtime and the model into `out` (atomically: a sibling, then renamed). */
export function writePlayground(out: string, o: PlaygroundOptions): void {
  const web = webBundleDir();
  if (!existsSync(join(web, 'emlens.mjs')) || !existsSync(join(web, 'playground', 'app.js'))) throw new EmlensError(`${web} has no browser bundle; run npm run build`);
  if (!existsSync(join(o.model, 'config.json'))) throw new EmlensError(`${o.model}: not a model folder (no config.json)`);
  if (!existsSync(join(o.model, 'model.safetensors'))) throw new EmlensError(`${o.model}: the playground loads one model.safetensors; this folder has none (sharded checkpoints are not supported in the page yet)`);
  if (!existsSync(join(o.model, 'tokenizer.json'))) throw new EmlensError(`${o.model}: no tokenizer.json; the playground needs text in and out`);
  const spec = loadSpec(o.model);
  let kind: string | undefined;
  if (o.direction !== undefined) {
    const d = readDirectionFile(o.direction, spec, '--direction');
    if (d.format !== 'safetensors') throw new EmlensError(`--direction ${o.direction}: the page reads safetensors direction files (convert with emlens directions --format safetensors)`);
    kind = d.kind;
    if (o.layer !== undefined && !d.layers.has(o.layer)) throw new EmlensError(`--layer ${o.layer}: ${o.direction} has no direction there (it covers ${[...d.layers.keys()].join(', ')})`);
  } else if (o.layer !== undefined) throw new EmlensError('--layer needs --direction');
  if (existsSync(out) && readdirSync(out).length > 0) throw new EmlensError(`${out} exists and is not empty`);
  const tmp = `${out.replace(/[\\/]+$/, '')}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'model'), { recursive: true });
  try {
    for (const f of readdirSync(join(web, 'playground'))) cpSync(join(web, 'playground', f), join(tmp, f));
    cpSync(join(web, 'emlens.mjs'), join(tmp, 'emlens.mjs'));
    cpSync(join(web, 'ort'), join(tmp, 'ort'), { recursive: true });
    cpSync(createRequire(import.meta.url).resolve('plotly.js-dist-min'), join(tmp, 'plotly.min.js'));
    for (const f of MODEL_FILES) if (existsSync(join(o.model, f))) cpSync(join(o.model, f), join(tmp, 'model', f));
    if (o.direction !== undefined) cpSync(o.direction, join(tmp, 'direction.safetensors'));
    writeFileSync(join(tmp, 'playground.json'), JSON.stringify({ model: resolve(o.model), direction: o.direction ? resolve(o.direction) : null, kind: kind ?? null, layer: o.layer ?? null }, null, 2));
    if (existsSync(out)) rmSync(out, { recursive: true });
    mkdirSync(dirname(resolve(out)), { recursive: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.map': 'application/json', '.jinja': 'text/plain' };

/** Serves a playground folder (read-only, nothing outside it). */
export async function servePlayground(dir: string, host: string, port: number): Promise<{ server: Server; url: string }> {
  const root = resolve(dir);
  const server = createServer((req, res) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const p = normalize(join(root, path === '/' ? 'index.html' : path));
    if ((p !== root && !p.startsWith(root + sep)) || !existsSync(p) || !statSync(p).isFile() || req.method !== 'GET') {
      res.writeHead(404).end();
      return;
    }
    // Cross-origin isolated (COOP + COEP), so the page gets SharedArrayBuffer and wasm threads.
    res.writeHead(200, { 'content-type': TYPES[extname(p)] ?? 'application/octet-stream', 'cache-control': 'no-cache', 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    createReadStream(p).pipe(res);
  });
  await new Promise<void>((r, j) => {
    server.once('error', j);
    server.listen(port, host, () => r());
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/` };
}
