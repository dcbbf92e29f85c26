/**
 * The memory-bounded forward (runtime/layerwise.ts) equals the in-memory engine to float32
 * rounding, and the independent float64 reference (test/reference/forward.ts) per row: every
 * family's tiny checkpoint, every hook kind at every layer, left-padded rows of different lengths
 * in 2-row batches, forced to one layer per group, residuals held in memory and spooled to disk.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { HOOK_KINDS, hookName } from '../../src/hooks/names.js';
import { LayerwiseRunner } from '../../src/runtime/layerwise.js';
import { blockWorkBytes } from '../../src/runtime/memory.js';
import { referenceForward } from '../reference/forward.js';
import { TINY_FAMILIES, writeTinyCheckpoint, type TinyOptions } from '../helpers/tiny-checkpoints.js';
import { loraConfig, moduleKeys, randomLoras, writeTinyAdapter } from '../helpers/tiny-adapters.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-lw-'));
const GiB = 2 ** 30;

function allHooks(n: number): string[] {
  const out: string[] = [];
  for (let l = 0; l < n; l++) for (const k of HOOK_KINDS) out.push(hookName(l, k));
  return out;
}

/** Five rows of different lengths, in batches of two (the last alone): every batch left-padded. */
function rowsOf(vocab: number): number[][][] {
  const rows = [11, 4, 9, 13, 6].map((n, i) => seqIds(n, vocab, i + 3));
  return [rows.slice(0, 2), rows.slice(2, 4), rows.slice(4)];
}

/** Runs the bounded runner over all batches; returns per batch: hook -> [B, T, D] and the layout. */
async function bounded(model: LoadedModel, batches: number[][][], capture: string[], o: { layersPerGroup?: number; spool?: boolean; spoolDir?: string } = {}) {
  const runner = new LayerwiseRunner(model.spec, model.bounded!.reader, { ...model.bounded!.runner.o, ...o });
  const plan = runner.plan([batches.map((b) => ({ rows: b.length, seq: Math.max(...b.map((r) => r.length)) }))], capture, 0);
  const got = batches.map(() => ({ caps: new Map<string, Float32Array>(), pad: [] as number[], T: 0 }));
  await runner.run(batches, capture, plan, (b, hook, data, layout) => {
    expect(got[b]!.caps.has(hook), `${hook} delivered twice`).toBe(false);
    got[b]!.caps.set(hook, data);
    got[b]!.pad = layout.pad;
    got[b]!.T = layout.seq;
  }, { spoolDir: o.spoolDir });
  const compiled = runner.compiledGraphs;
  await runner.release();
  return { got, plan, runner, compiled };
}

async function setup(family: (typeof TINY_FAMILIES)[number], opts: TinyOptions = {}) {
  const dir = tmp();
  const { config, weights } = writeTinyCheckpoint(dir, family, opts);
  const mem = await LoadedModel.load(dir);
  const disk = await LoadedModel.openBounded(dir, { maxMemory: 4 * GiB });
  return { dir, config, weights, mem, disk };
}

describe.each(TINY_FAMILIES)('%s: bounded forward, one layer per group, 2-row batches', (family) => {
  it.each([false, true])('equals the in-memory engine and the reference (spooled: %s)', async (spool) => {
    const { dir, config, weights, mem, disk } = await setup(family, family === 'gemma3' ? { dtype: 'BF16', shardBytes: 20_000 } : {});
    const spec = mem.spec;
    const D = spec.dModel;
    const hooks = allHooks(spec.nLayers);
    const batches = rowsOf(spec.vocab);
    const spoolDir = join(dir, 'spool');
    const { got, plan, runner, compiled } = await bounded(disk, batches, hooks, { layersPerGroup: 1, spool, spoolDir });
    expect(plan).toMatchObject({ layers: spec.nLayers, layersPerGroup: 1, groups: spec.nLayers, spool });
    // Each layer read once; one graph per layer kind (sliding / full): with resid_post captured,
    // every group hands its capture on as the next group's input, the last group included.
    expect(runner.layerReads).toBe(spec.nLayers);
    expect(compiled).toBe(new Set(spec.layerTypes).size);
    // ORT's working memory for the widest batch (batch 1: 2 rows x 13), once: graphs run without an arena.
    expect(plan.parts.work).toBe(blockWorkBytes(spec, 2, 13));
    if (spool) expect(readdirSync(spoolDir)).toEqual([]);
    for (const [b, rows] of batches.entries()) {
      const r = await mem.engine.forward({ ids: rows, capture: hooks });
      expect(got[b]!.pad).toEqual(r.layout.pad);
      for (const h of hooks) expect(maxRelErr(got[b]!.caps.get(h)!, r.captures.get(h)!), `${h} batch ${b}`).toBeLessThan(1e-5);
      // Independent reference, row by row, at the row's real positions.
      const T = got[b]!.T;
      for (const [i, ids] of rows.entries()) {
        const ref = referenceForward(config, weights, ids);
        const pad = got[b]!.pad[i]!;
        for (let l = 0; l < spec.nLayers; l++) {
          for (const k of HOOK_KINDS) {
            const cap = got[b]!.caps.get(hookName(l, k))!.subarray((i * T + pad) * D, (i * T + pad + ids.length) * D);
            expect(maxRelErr(cap, ref[k][l]!), `${hookName(l, k)} batch ${b} row ${i}`).toBeLessThan(2e-5);
          }
        }
      }
    }
  });
});

describe('bounded forward: groups, residency, hooks', () => {
  it('stops at the deepest hook; groups of 2 with a short last one; weights stay loaded when every layer fits', async () => {
    const { mem, disk } = await setup('llama', { layers: 5 });
    const batches = rowsOf(mem.spec.vocab);
    const capture = [hookName(1, 'mlp_out'), hookName(3, 'resid_pre'), hookName(2, 'attn_out')];
    const { got, plan, runner } = await bounded(disk, batches, capture, { layersPerGroup: 2 });
    expect(plan).toMatchObject({ layers: 4, groups: 2 });
    expect(runner.layerReads).toBe(4);
    for (const [b, rows] of batches.entries()) {
      const r = await mem.engine.forward({ ids: rows, capture });
      expect([...got[b]!.caps.keys()].sort()).toEqual([...capture].sort());
      for (const h of capture) expect(maxRelErr(got[b]!.caps.get(h)!, r.captures.get(h)!)).toBeLessThan(1e-5);
    }
    // A budget that holds every layer: one group, read once, however many calls.
    const all = new LayerwiseRunner(disk.spec, disk.bounded!.reader, { maxMemory: 4 * GiB });
    const p = all.plan([[{ rows: 2, seq: 13 }]], capture, 0);
    expect(p).toMatchObject({ layers: 4, groups: 1, layersPerGroup: 4, spool: false });
    for (let i = 0; i < 3; i++) await all.run(batches, capture, p, () => {});
    expect(all.layerReads).toBe(4);
    await all.release();
  });

  it('a budget below one layer and one batch is one error naming --max-memory and what it needs', async () => {
    const { disk } = await setup('qwen2');
    const runner = new LayerwiseRunner(disk.spec, disk.bounded!.reader, { maxMemory: 64 * 2 ** 20 });
    expect(() => runner.plan([[{ rows: 2, seq: 13 }]], [hookName(0, 'resid_post')], 0)).toThrow(/^--max-memory 64\.0 MiB is too little: one layer of this model and one batch need about .*raise --max-memory or lower --batch-tokens$/);
  });

  it('a merged LoRA adapter: bounded equals the in-memory merge', async () => {
    const dir = tmp();
    const { weights } = writeTinyCheckpoint(dir, 'qwen2');
    const ad = join(dir, 'adapter');
    writeTinyAdapter(ad, loraConfig({ r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'], layers_to_transform: [0, 2] }), randomLoras(weights, moduleKeys(weights, [0, 2], ['q_proj', 'down_proj']), () => 2));
    const mem = await LoadedModel.load(dir, { adapter: ad });
    const disk = await LoadedModel.openBounded(dir, { adapter: ad, maxMemory: 4 * GiB });
    const plain = await LoadedModel.load(dir);
    const hooks = allHooks(mem.spec.nLayers);
    const batches = rowsOf(mem.spec.vocab);
    const { got } = await bounded(disk, batches, hooks, { layersPerGroup: 1 });
    for (const [b, rows] of batches.entries()) {
      const r = await mem.engine.forward({ ids: rows, capture: hooks });
      for (const h of hooks) expect(maxRelErr(got[b]!.caps.get(h)!, r.captures.get(h)!), h).toBeLessThan(1e-5);
      // ...and the adapter does change the result (else the comparison proves nothing).
      const base = await plain.engine.forward({ ids: rows, capture: [hookName(2, 'resid_post')] });
      expect(maxRelErr(got[b]!.caps.get(hookName(2, 'resid_post'))!, base.captures.get(hookName(2, 'resid_post'))!)).toBeGreaterThan(1e-3);
    }
  });
});
