/**
 * `npm run bench [-- SECTION... [--json FILE] [--runs N] [--warmup N]]`
 *
 * Runs the named benchmark sections (default: all), prints one table, and with --json writes
 * every section's raw results. Benchmarks report figures and goals; they never assert.
 * A new section: a module exporting a `Section` (section.ts), listed in SECTIONS below.
 */
import { writeFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import os from 'node:os';
import { createRequire } from 'node:module';
import { meets, type BenchOptions, type Section, type SectionResult } from './section.js';
import { forwardSection } from './forward.js';
import { generateSection } from './generate.js';
import { extractSection } from './extract.js';
import { trainSection } from './train.js';
import { serveSection } from './serve.js';
import { browserSection } from './browser.js';
import { quant7bSection, quantSection } from './quant.js';
import { boundedSection } from './bounded.js';
import { abSources, parseEvalSize, parseSources, sampleSection, type SampleOptions } from './sample.js';
import { loadMeter, log, type Load } from './util.js';
import { threads } from '../src/runtime/ort.js';
import { intArg } from '../src/cli/args.js';

const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;

/** The sections; "sample" takes its own options (--sample-batches, --sample-tokens, --sample-eval). */
export function sections(sample: SampleOptions): Section[] {
  return [forwardSection, generateSection, extractSection, trainSection, sampleSection(sample), serveSection, browserSection, quantSection, quant7bSection, boundedSection];
}
const SECTIONS = sections({ batches: [1, 8, 32, 64], newTokens: 32, sources: ['inputs', 'store'], pairs: 6, eval: { questions: 8, samples: 32, tokens: 200, batch: 32 } });

interface Cli extends BenchOptions {
  sections: Section[];
  json?: string;
}

/** The command line, parsed by commander as the emlens CLI is: a bad value is one line and exit 2. */
function parseArgs(argv: string[]): Cli {
  const program = new Command()
    .name('npm run bench --')
    .description(`sections (default: all):\n${SECTIONS.map((s) => `  ${s.name.padEnd(10)} ${s.description}`).join('\n')}`)
    .argument('[sections...]', `any of ${SECTIONS.map((s) => s.name).join(', ')}`)
    .option('--json <file>', 'also write every raw result to this file')
    .option('--runs <n>', 'timed runs per measurement (the median is reported)', intArg('--runs', 1), 5)
    .option('--warmup <n>', 'untimed runs first (the first compiles the graph)', intArg('--warmup', 1), 2)
    .option('--sample-batches <list>', 'sample: batch sizes', '1,8,32,64')
    .option('--sample-tokens <n>', 'sample: new tokens per decode measurement', intArg('--sample-tokens', 2), 32)
    .option('--sample-eval <QxSxT>', 'sample: the whole eval, questions x samples x new tokens, or none', '8x32x200')
    .option('--sample-eval-batch <n>', "sample: the eval's --batch (prompts per generate call; default: its samples per question, as emlens eval's default 32)", intArg('--sample-eval-batch', 1))
    .option('--sample-sources <list>', 'sample: weight sources: inputs (fp32, fed every call), store (fp32 prepacked initializers; with inputs, the two interleaved), int8, int4 (--weights int8|int4)', 'inputs,store')
    .option('--sample-pairs <n>', 'sample: with both sources, timed pairs per batch (one call on each, alternated in one process; default 6)', intArg('--sample-pairs', 1))
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `bench: ${s}` : s) });
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ json?: string; runs: number; warmup: number; sampleBatches: string; sampleTokens: number; sampleEval: string; sampleEvalBatch?: number; sampleSources: string; samplePairs?: number }>();
  if (!/^\d+(,\d+)*$/.test(o.sampleBatches) || o.sampleBatches.split(',').some((b) => +b < 1)) throw new Error(`--sample-batches must be a comma list of batch sizes >= 1, got "${o.sampleBatches}"`);
  const sources = parseSources(o.sampleSources);
  if (o.samplePairs !== undefined && !abSources(sources)) throw new Error(`--sample-pairs needs --sample-sources with both inputs and store; with ${sources.join(',')} each decode runs --runs times`);
  const evalSize = parseEvalSize(o.sampleEval);
  if (o.sampleEvalBatch !== undefined && !evalSize) throw new Error('--sample-eval-batch needs an eval (--sample-eval is none)');
  const all = sections({ batches: o.sampleBatches.split(',').map(Number), newTokens: o.sampleTokens, sources, pairs: o.samplePairs ?? 6, eval: evalSize && { ...evalSize, batch: o.sampleEvalBatch ?? evalSize.samples } });
  const chosen: Section[] = [];
  for (const name of program.args) {
    const s = all.find((x) => x.name === name);
    if (!s) throw new Error(`unknown section "${name}" (sections: ${SECTIONS.map((x) => x.name).join(', ')})`);
    if (!chosen.includes(s)) chosen.push(s);
  }
  return { sections: chosen.length ? chosen : all, json: o.json, runs: o.runs, warmup: o.warmup };
}

function fmt(v: number, digits = 2): string {
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(results: SectionResult[]): string {
  const head = ['section', 'metric', 'value', 'unit', 'goal'];
  const body: string[][] = [];
  for (const r of results) {
    for (const row of r.rows) {
      const ok = meets(row);
      const goal = row.goal ? `${row.goal.op} ${fmt(row.goal.value)} ${ok ? 'met' : 'MISSED'}` : '';
      body.push([r.section, row.metric, fmt(row.value, row.digits), row.unit, goal]);
    }
  }
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}

let cli: Cli;
try {
  cli = parseArgs(process.argv.slice(2));
} catch (e) {
  // commander printed help/version or its own error already; ours is one line.
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  console.error(`bench: ${(e as Error).message}`);
  process.exit(2);
}
const env = {
  node: process.version,
  onnxruntime: ortVersion,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cpus: os.cpus().length,
  totalMemGiB: os.totalmem() / 1024 ** 3,
  intraOpThreads: threads() || 'ORT default',
  ep: process.env.EMLENS_EP ?? 'cpu',
};
log(`${env.cpu} x${env.cpus}, node ${env.node}, onnxruntime-node ${env.onnxruntime}, ep ${env.ep}`);
const results: (SectionResult & { load: Load | null })[] = [];
const failed: string[] = [];
const t0 = performance.now();
for (const s of cli.sections) {
  log(`section ${s.name}: ${s.description}`);
  const meter = loadMeter();
  let r: SectionResult;
  try {
    r = await s.run(cli);
  } catch (e) {
    // One broken section should not cost the others' figures.
    log(`section ${s.name} FAILED: ${(e as Error).stack ?? e}`);
    failed.push(s.name);
    continue;
  }
  const load = meter.stop();
  if (load) {
    // Timings on a machine shared with other work are only as good as this figure is small.
    const other = load.backgroundCores + load.stealCores;
    r.rows.push({ metric: 'CPU used by other processes meanwhile', value: other, unit: 'cores' });
    if (other > 0.1) log(`section ${s.name}: other processes used ${other.toFixed(2)} cores meanwhile; timings are noisy`);
  }
  results.push({ ...r, load });
  log(`section ${s.name} done in ${(load?.wallS ?? 0).toFixed(1)} s`);
}
console.log(
  `emlens bench — ${env.cpu} (${env.cpus} cpus), node ${env.node}, onnxruntime-node ${env.onnxruntime}, ep ${env.ep}, ` +
    `${cli.runs} timed runs after ${cli.warmup} warm-up (median)\n`,
);
console.log(table(results));
if (failed.length) console.log(`\nfailed sections: ${failed.join(', ')}`);
if (cli.json) {
  const out = { date: new Date().toISOString(), env, options: { runs: cli.runs, warmup: cli.warmup }, results, failed };
  writeFileSync(cli.json, `${JSON.stringify(out, null, 2)}\n`);
  log(`wrote ${cli.json}`);
}
log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (failed.length) process.exitCode = 1;
