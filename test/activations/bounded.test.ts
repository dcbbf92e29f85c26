/**
 * Memory-bounded extraction (LoadedModel.openBounded): the same files as the in-memory path to
 * float32 rounding, one layer per group with spooled residuals included; resume after a real
 * SIGKILL of a layer-by-layer run; and `extract --max-memory` on the command line (a budget too
 * small, a conflicting --backend, a bad size: one line each, nothing written).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { extractActivations } from '../../src/activations/extract.js';
import { openActivations } from '../../src/activations/read.js';
import { readJsonl } from '../../src/data/rows.js';
import { HOOK_KINDS, type HookKind } from '../../src/hooks/names.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';
import { maxRelErr } from '../helpers/compare.js';
import { killAfterChunks } from '../helpers/kill-resume.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-bx-'));
const GiB = 2 ** 30;

describe('bounded extraction equals in-memory extraction', () => {
  it.each<[TinyFamily, HookKind, boolean]>([
    ['gemma3_text', 'resid_post', false],
    ['qwen2', 'resid_mid', true],
    ['llama', 'attn_out', false],
    ['gemma2', 'mlp_out', true],
  ])('%s, %s, one layer per group (spooled: %s)', async (family, hook, spool) => {
    const dir = tmp();
    writeTinyCheckpoint(dir, family, { dtype: 'BF16' });
    addTokenizer(dir);
    const data = writeChatDataset(dir, 'chat.jsonl', 19, 5);
    const ds = readJsonl(data);
    const mem = await LoadedModel.load(dir);
    const disk = await LoadedModel.openBounded(dir, { maxMemory: 4 * GiB, layersPerGroup: 1, spool });
    const plans: unknown[] = [];
    const common = { layers: 'all' as const, hook, batchTokens: 40, chunkRows: 7, dataset: { file: data, sha256: ds.sha256, selection: {} } };
    const a = await extractActivations(mem, ds.rows, { ...common, outDir: join(dir, 'mem') });
    const b = await extractActivations(disk, ds.rows, { ...common, outDir: join(dir, 'disk'), onPlan: (p) => plans.push(p) });
    expect(plans).toHaveLength(1);
    expect(plans[0]).toMatchObject({ layersPerGroup: 1, groups: mem.spec.nLayers, spool });
    expect({ ...b, created: 0 }).toEqual({ ...a, created: 0, files: a.files, model: a.model, dataset: a.dataset });
    const x = openActivations(join(dir, 'mem'));
    const y = openActivations(join(dir, 'disk'));
    for (const l of a.layers) expect(maxRelErr(y.layer(l), x.layer(l)), `layer ${l}`).toBeLessThan(1e-5);
    expect(readFileSync(join(dir, 'disk', 'rows.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'mem', 'rows.jsonl'), 'utf8'));
    expect(existsSync(join(dir, 'disk', '.partial'))).toBe(false);
  });

  it('chosen layers stop the forward at the deepest; every hook kind', async () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'qwen3', { layers: 4 });
    addTokenizer(dir);
    const data = writeChatDataset(dir, 'chat.jsonl', 9, 2);
    const ds = readJsonl(data);
    const mem = await LoadedModel.load(dir);
    const disk = await LoadedModel.openBounded(dir, { maxMemory: 4 * GiB, layersPerGroup: 1 });
    for (const hook of HOOK_KINDS) {
      const common = { layers: [0, 2], hook, batchTokens: 30, dataset: { file: data, sha256: ds.sha256, selection: {} } };
      let layers = 0;
      await extractActivations(mem, ds.rows, { ...common, outDir: join(dir, `mem-${hook}`) });
      await extractActivations(disk, ds.rows, { ...common, outDir: join(dir, `disk-${hook}`), onPlan: (p) => (layers = p.layers) });
      expect(layers).toBe(3);
      for (const l of [0, 2]) expect(maxRelErr(openActivations(join(dir, `disk-${hook}`)).layer(l), openActivations(join(dir, `mem-${hook}`)).layer(l)), `${hook} ${l}`).toBeLessThan(1e-5);
    }
  });
});

describe('bounded resume', () => {
  it('kill -9 of a layer-by-layer extraction, then resume: identical output, finished chunks kept', async () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'llama', { layers: 4 });
    addTokenizer(dir);
    const data = writeChatDataset(dir, 'big.jsonl', 400, 11);
    // A driver on the built library: one layer per group, so every chunk runs 4 groups.
    const driver = join(dir, 'driver.mjs');
    writeFileSync(
      driver,
      `import { LoadedModel, extractActivations, readJsonl } from ${JSON.stringify(join(ROOT, 'dist/index.js'))};
const [out, resume] = process.argv.slice(2);
const ds = readJsonl(${JSON.stringify(data)});
const model = await LoadedModel.openBounded(${JSON.stringify(dir)}, { maxMemory: 4 * 2 ** 30, layersPerGroup: 1 });
const meta = await extractActivations(model, ds.rows, { outDir: out, layers: 'all', hook: 'resid_post', chunkRows: 4, batchTokens: 8, resume: resume === 'resume', dataset: { file: ${JSON.stringify(data)}, sha256: ds.sha256, selection: {} } });
console.log('resumed', meta.resumedRows);
`,
    );
    const full = spawnSync(process.execPath, [driver, join(dir, 'full')], { encoding: 'utf8' });
    expect(full.status, full.stderr).toBe(0);

    const out = join(dir, 'killed');
    const { chunks: before } = await killAfterChunks([driver, out], out, { minChunks: 5, timeoutMs: 60_000 });
    const partial = join(out, '.partial');
    expect(before).toBeGreaterThanOrEqual(5);
    expect(before).toBeLessThan(100);
    expect(existsSync(join(out, 'meta.json'))).toBe(false);

    const resumed = spawnSync(process.execPath, [driver, out, 'resume'], { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout.trim()).toBe(`resumed ${before * 4}`);
    expect(readFileSync(join(out, 'activations.safetensors')).equals(readFileSync(join(dir, 'full', 'activations.safetensors')))).toBe(true);
    expect(existsSync(partial)).toBe(false);
  });
});

describe('extract --max-memory on the command line', () => {
  const setup = () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'qwen2');
    addTokenizer(dir);
    const data = writeChatDataset(dir, 'chat.jsonl', 6, 1);
    return { dir, data, args: ['extract', '--model', dir, '--data', data, '--out', join(dir, 'acts')] };
  };

  it('a budget too small: one line naming the flag and what one layer needs, exit 1, nothing written', () => {
    const { dir, args } = setup();
    const r = spawnSync(process.execPath, [BIN, ...args, '--max-memory', '20MB'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^emlens: --max-memory 19\.1 MiB is too little: one layer of this model and one batch need about /);
    expect(existsSync(join(dir, 'acts'))).toBe(false);
  });

  it('with room: says the plan, and writes what the in-memory path writes', async () => {
    const { dir, data, args } = setup();
    const r = spawnSync(process.execPath, [BIN, ...args, '--max-memory', '2GiB', '--chunk-rows', '4'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/emlens: blocks 0-2 in memory at once, residuals in memory; peak about .* of --max-memory 2\.00 GiB/);
    const ds = readJsonl(data);
    const mem = await LoadedModel.load(dir);
    await extractActivations(mem, ds.rows, { outDir: join(dir, 'ref'), layers: 'all', hook: 'resid_post', chunkRows: 4, dataset: { file: data, sha256: ds.sha256, selection: {} } });
    for (const l of [0, 1, 2]) expect(maxRelErr(openActivations(join(dir, 'acts')).layer(l), openActivations(join(dir, 'ref')).layer(l))).toBeLessThan(1e-5);
  });

  it('--backend with --max-memory is an error; a size without a unit is one line, exit 2', () => {
    const { args } = setup();
    const r = spawnSync(process.execPath, [BIN, ...args, '--max-memory', '2GiB', '--backend', 'http://127.0.0.1:9'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('emlens: --max-memory and --backend both given; a --backend server holds the model in its own memory');
    const s = spawnSync(process.execPath, [BIN, ...args, '--max-memory', 'lots'], { encoding: 'utf8' });
    expect(s.status).toBe(2);
    expect(s.stderr.trim().split('\n')).toHaveLength(1);
    expect(s.stderr).toMatch(/--max-memory must be a size such as 512KiB, 64MiB or 2GiB, got "lots"/);
  });
});
