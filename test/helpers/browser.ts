/**
 * Opens an HTML report in a real headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser downloads) and says whether it loaded cleanly and drew its plots.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Whether a Chromium binary is there to run (a test fails when not: CI installs it). */
export function haveChromium(): boolean {
  return existsSync(CHROMIUM_PATH);
}

// Without the background-networking switches Chromium tries to reach Google services at start-up,
// which this offline machine refuses.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/**
 * CHROMIUM_ARGS plus WebGPU. Headless Chromium gives navigator.gpu no adapter unless told
 * (--enable-unsafe-webgpu); told, on a machine without a GPU, Dawn offers SwiftShader (software
 * Vulkan, Debian ships libvk_swiftshader.so beside the binary): vendor "google", architecture
 * "swiftshader". navigator.gpu exists only in a secure context: http://127.0.0.1, not data: or
 * file:. (Adding --use-vulkan=swiftshader --use-angle=vulkan --enable-features=Vulkan gave no
 * adapter at all on Chromium 156.)
 */
export const CHROMIUM_WEBGPU_ARGS = [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'];

export interface BrowserCheck {
  /** console.error messages and uncaught page errors, in order. */
  consoleErrors: string[];
  /** Elements carrying data-emlens-figure. */
  figures: number;
  /** Of those, how many hold a Plotly SVG with at least one trace actually drawn. */
  rendered: number;
  /** document.body.dataset.plotsRendered as a number; null when the page never set it. */
  plotsRendered: number | null;
  /** Every request for something other than a file:// or data: URL (each one aborted). */
  blockedRequests: string[];
  /** Per figure id: whether it drew. */
  perFigure: Record<string, boolean>;
  /** The value `probe` returned in the page, when given. */
  probed?: unknown;
  /** A PNG of the page, when asked for. */
  screenshot?: Buffer;
}

export interface CheckOptions {
  /** Take a PNG: 'viewport' or 'full' page. */
  screenshot?: 'viewport' | 'full';
  /** Evaluated in the page after the plots are drawn; its (serialisable) result comes back. */
  probe?: () => unknown;
  /** How long to wait for body[data-plots-rendered] (ms, default 15 000). */
  timeoutMs?: number;
  viewport?: { width: number; height: number };
}

/** Counted in the page: figures, and those whose Plotly SVG has a trace with real geometry. */
function countRendered(): { figures: number; rendered: number; perFigure: Record<string, boolean> } {
  const divs = Array.from(document.querySelectorAll<HTMLElement>('[data-emlens-figure]'));
  const perFigure: Record<string, boolean> = {};
  let rendered = 0;
  for (const div of divs) {
    const svg = div.querySelector('svg.main-svg');
    let drawn = false;
    if (svg) {
      // Traces sit in g.trace groups (lines, fills, bars, error bars as <path>); a heatmap is an
      // <image> in g.hm. Drawn means real geometry: a non-empty path with a non-empty box.
      const marks = Array.from(div.querySelectorAll('.trace path, .hm image')) as SVGGraphicsElement[];
      drawn = marks.some((m) => {
        if (m.tagName === 'image') return (m.getAttribute('href') ?? m.getAttribute('xlink:href') ?? '').startsWith('data:image/');
        if ((m.getAttribute('d') ?? '').length <= 2) return false;
        const b = m.getBBox();
        return b.width > 0 || b.height > 0;
      });
    }
    perFigure[div.dataset.emlensFigure ?? ''] = drawn;
    if (drawn) rendered++;
  }
  return { figures: divs.length, rendered, perFigure };
}

export async function checkReportInBrowser(file: string, opts: CheckOptions = {}): Promise<BrowserCheck> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
  try {
    const context = await browser.newContext({ viewport: opts.viewport ?? { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    const page: Page = await context.newPage();
    const consoleErrors: string[] = [];
    const blockedRequests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      blockedRequests.push(url);
      return route.abort();
    });
    await page.goto(pathToFileURL(resolve(file)).href, { waitUntil: 'load' });
    let plotsRendered: number | null = null;
    try {
      await page.waitForSelector('body[data-plots-rendered]', { state: 'attached', timeout: opts.timeoutMs ?? 15_000 });
      plotsRendered = Number(await page.evaluate(() => document.body.dataset.plotsRendered));
    } catch {
      consoleErrors.push('timed out waiting for body[data-plots-rendered]');
    }
    const counted = await page.evaluate(countRendered);
    const probed = opts.probe ? await page.evaluate(opts.probe) : undefined;
    const screenshot = opts.screenshot ? await page.screenshot({ fullPage: opts.screenshot === 'full', type: 'png' }) : undefined;
    await context.close();
    return { consoleErrors, blockedRequests, plotsRendered, ...counted, ...(opts.probe ? { probed } : {}), ...(screenshot ? { screenshot } : {}) };
  } finally {
    await browser.close();
  }
}
