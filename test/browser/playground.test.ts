/**
 * `emlens playground` as a real process, its page in headless Chromium (WebGPU on SwiftShader's
 * adapter; a browser without an adapter gets wasm, threaded, and says so): the answer equals
 * Node's greedy generation, plain, steered by the slider and with the ablation toggle; the heat
 * strip's projections equal resid_post · r̂ computed here; the heatmap draws; bad flags are one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { writeDirectionFile } from '../../src/io/directions.js';
import { BIN, cli, errorLines } from '../eval-commands/cli.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH, CHROMIUM_WEBGPU_ARGS } from '../helpers/browser.js';

const MODEL = resolve(__dirname, '../../../shared/models/aidreams260k');
let dir: string;
let proc: ChildProcess;
let browser: Browser;
let page: Page;
let url: string;
let model: LoadedModel;
const dirs = new Map<number, Float32Array>();
const LAYER = 2;
const errors: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-playground-'));
  model = await LoadedModel.load(MODEL);
  for (let l = 0; l < model.spec.nLayers; l++) dirs.set(l, Float32Array.from({ length: model.spec.dModel }, (_, i) => Math.sin(i * (l + 1)) * 0.8));
  writeDirectionFile(join(dir, 'dir.safetensors'), dirs, {});
  url = await new Promise<string>((res, rej) => {
    proc = spawn(process.execPath, [BIN, 'playground', MODEL, '--direction', join(dir, 'dir.safetensors'), '--layer', String(LAYER), '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (c) => {
      err += c;
      const m = /at (http:\/\/\S+) /.exec(err);
      if (m) res(m[1]!);
    });
    proc.on('exit', (c) => rej(new Error(`playground exited ${c}: ${err}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_WEBGPU_ARGS });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 90_000 });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  proc?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function run(scale: number, ablate: boolean): Promise<{ text: string; tokens: number[]; proj: number[] }> {
  const before = Number((await page.getAttribute('#out', 'data-done')) ?? 0);
  await page.fill('#prompt', 'Once upon a time');
  await page.fill('#max', '12');
  await page.evaluate(([s, a]) => {
    const r = document.getElementById('scale') as HTMLInputElement;
    r.value = String(s);
    r.dispatchEvent(new Event('input'));
    (document.getElementById('ablate') as HTMLInputElement).checked = a as boolean;
  }, [scale, ablate] as const);
  await page.click('#go');
  await page.waitForFunction((n) => Number(document.getElementById('out')!.dataset.done ?? 0) > n, before, { timeout: 60_000 });
  return page.evaluate(() => {
    const out = document.getElementById('out')!;
    return { text: out.dataset.text!, tokens: JSON.parse(out.dataset.tokens!), proj: [...out.querySelectorAll('.tok')].map((s) => Number((s as HTMLElement).dataset.proj)) };
  });
}

describe('emlens playground', () => {
  it('runs on WebGPU where the browser has an adapter and says so', async () => {
    expect(await page.getAttribute('body', 'data-ep')).toBe('webgpu');
    const ep = await page.textContent('#ep');
    console.log(`playground: ${ep}`);
    expect(ep).toMatch(/^onnxruntime-web on webgpu \(adapter google\/swiftshader\)$/);
    // ?ep= decides; another value is an error on the page.
    const p = await browser.newPage();
    try {
      await p.goto(`${url}?ep=wasm`);
      await p.waitForSelector('body[data-ready="1"]', { timeout: 90_000 });
      expect(await p.textContent('#ep')).toMatch(/^onnxruntime-web on wasm \(asked for by \?ep=wasm, \d+ threads?\)$/);
      await p.goto(`${url}?ep=cuda`);
      await p.waitForSelector('body[data-error]', { timeout: 90_000 });
      expect(await p.getAttribute('body', 'data-error')).toBe('?ep=cuda: use ep=wasm or ep=webgpu');
    } finally {
      await p.close();
    }
  }, 120_000);

  it('falls back to wasm without an adapter, threaded (the server sends COOP/COEP), and says so', async () => {
    const plain = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    try {
      const p = await plain.newPage();
      await p.goto(url);
      await p.waitForSelector('body[data-ready="1"]', { timeout: 90_000 });
      expect(await p.getAttribute('body', 'data-ep')).toBe('wasm');
      const ep = await p.textContent('#ep');
      console.log(`playground without --enable-unsafe-webgpu: ${ep}`);
      expect(await p.evaluate(() => self.crossOriginIsolated)).toBe(true);
      const cores = await p.evaluate(() => navigator.hardwareConcurrency);
      const n = Math.min(4, cores);
      expect(ep).toBe(`onnxruntime-web on wasm (no WebGPU adapter, ${n} thread${n === 1 ? '' : 's'})`);
    } finally {
      await plain.close();
    }
  }, 120_000);

  it('shows the answer Node generates, plain, steered and ablated, with the projections of each token', async () => {
    const tok = model.tokenizer!;
    const ids = tok.encode('Once upon a time');
    const unit = (v: Float32Array) => v.map((x) => x / Math.hypot(...v));
    const cases = [
      { scale: 0, ablate: false, iv: {} },
      { scale: 4, ablate: false, iv: { steer: [{ hook: `blocks.${LAYER}.hook_resid_post`, vector: dirs.get(LAYER)!, scale: 4 }] } },
      { scale: 0, ablate: true, iv: { ablate: [...dirs].map(([l, d]) => ({ hook: `blocks.${l}.hook_resid_post`, directions: [unit(d)] })) } },
    ];
    const texts: string[] = [];
    for (const c of cases) {
      const r = await run(c.scale, c.ablate);
      const g = await model.engine.generate([ids], { maxNewTokens: 12, temperature: 0, stopIds: tok.eosIds, interventions: c.iv });
      const gen = g.tokens[0]!.filter((t) => !tok.eosIds.includes(t));
      expect(r.tokens).toEqual(gen);
      expect(r.text).toBe(tok.decode(gen, { skipSpecialTokens: true }));
      // The heat strip: resid_post at the page's layer, on the unit direction, for each answer token.
      const all = [...ids, ...gen];
      const f = await model.engine.forward({ ids: [all], capture: [`blocks.${LAYER}.hook_resid_post`], interventions: c.iv });
      const h = f.captures.get(`blocks.${LAYER}.hook_resid_post`)!;
      const u = unit(dirs.get(LAYER)!);
      const D = model.spec.dModel;
      const want = gen.map((_, i) => {
        let s = 0;
        for (let k = 0; k < D; k++) s += h[(ids.length + i) * D + k]! * u[k]!;
        return s;
      });
      expect(r.proj).toHaveLength(want.length);
      r.proj.forEach((p, i) => expect(Math.abs(p - want[i]!)).toBeLessThan(1e-3 * Math.max(1, Math.abs(want[i]!))));
      texts.push(r.text);
    }
    expect(new Set(texts).size).toBeGreaterThan(1);
    // The layer x token heatmap drew a trace.
    expect(await page.locator('#heatmap .main-svg').count()).toBeGreaterThan(0);
    expect(await page.textContent('#status')).toMatch(/tokens in \d+ ms/);
    const png = await page.screenshot();
    expect(png.length).toBeGreaterThan(20_000);
    expect(errors).toEqual([]);
  }, 180_000);

  it('refuses bad input with one line', async () => {
    const cases: [string[], RegExp][] = [
      [['playground', join(dir, 'nope')], /not a model folder/],
      [['playground', MODEL, '--layer', '1'], /--layer needs --direction/],
      [['playground', MODEL, '--direction', join(dir, 'dir.safetensors'), '--layer', '9'], /--layer 9/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli([...args, '--out', join(dir, 'site-out')]);
      expect(r.status).toBe(1);
      const lines = errorLines(r.stderr);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(msg);
    }
    const ok = await cli(['playground', MODEL, '--out', join(dir, 'standalone')]);
    expect(ok.status, ok.stderr).toBe(0);
  }, 60_000);
});
