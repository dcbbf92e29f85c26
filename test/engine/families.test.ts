/**
 * The engine against an independent float64 reference written from the Hugging Face modeling
 * equations (test/reference/forward.ts), for every family with every feature switched on:
 * logits and every hook point (attn_out and mlp_out included), one sequence and a left-padded
 * batch; and the residual equations resid_mid = resid_pre + attn_out, resid_post = resid_mid +
 * mlp_out on the engine's own captures.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { HOOK_KINDS, hookName, type HookKind } from '../../src/hooks/names.js';
import { referenceForward } from '../reference/forward.js';
import { TINY_FAMILIES, writeTinyCheckpoint, type TinyFamily, type TinyOptions } from '../helpers/tiny-checkpoints.js';
import { maxRelErr, seqIds } from '../helpers/compare.js';

async function setup(family: TinyFamily, opts: TinyOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), `emlens-${family}-`));
  const { config, weights } = writeTinyCheckpoint(dir, family, opts);
  const model = await LoadedModel.load(dir);
  return { config, weights, model };
}

function allHooks(n: number): string[] {
  const out: string[] = [];
  for (let l = 0; l < n; l++) for (const k of HOOK_KINDS) out.push(hookName(l, k));
  return out;
}

describe.each(TINY_FAMILIES)('%s forward equals the reference', (family) => {
  it('logits and every hook point, single sequence and left-padded batch', async () => {
    const { config, weights, model } = await setup(family);
    const spec = model.spec;
    const V = spec.vocab;
    const D = spec.dModel;
    const long = seqIds(14, V, 1);
    const short = seqIds(9, V, 2);
    const hooks = allHooks(spec.nLayers);
    const r = await model.engine.forward({ ids: [long, short], capture: hooks, logits: 'all' });
    const T = r.layout.seq;
    expect(T).toBe(14);
    for (const [b, ids] of [long, short].entries()) {
      const ref = referenceForward(config, weights, ids);
      const pad = r.layout.pad[b]!;
      const n = ids.length;
      const logits = r.logits!.subarray((b * T + pad) * V, (b * T + pad + n) * V);
      expect(maxRelErr(logits, ref.logits)).toBeLessThan(2e-5);
      for (let l = 0; l < spec.nLayers; l++) {
        for (const k of HOOK_KINDS) {
          const got = r.captures.get(hookName(l, k))!.subarray((b * T + pad) * D, (b * T + pad + n) * D);
          expect(maxRelErr(got, ref[k][l]!), `${hookName(l, k)} row ${b}`).toBeLessThan(2e-5);
        }
      }
    }
    // The sub-block outputs are exactly what is added to the residual stream.
    const cap = (l: number, k: HookKind) => r.captures.get(hookName(l, k))!;
    for (let l = 0; l < spec.nLayers; l++) {
      const pre = cap(l, 'resid_pre');
      const attn = cap(l, 'attn_out');
      const mid = cap(l, 'resid_mid');
      const mlp = cap(l, 'mlp_out');
      const post = cap(l, 'resid_post');
      expect(maxRelErr(pre.map((x, i) => x + attn[i]!), mid), `layer ${l}: resid_pre + attn_out`).toBeLessThan(1e-6);
      expect(maxRelErr(mid.map((x, i) => x + mlp[i]!), post), `layer ${l}: resid_mid + mlp_out`).toBeLessThan(1e-6);
      expect(maxRelErr(attn, new Float32Array(attn.length)), `layer ${l}: attn_out is not zero`).toBeGreaterThan(1e-3);
      expect(maxRelErr(mlp, new Float32Array(mlp.length)), `layer ${l}: mlp_out is not zero`).toBeGreaterThan(1e-3);
    }
  });
});

describe('checkpoint formats', () => {
  it.each(['BF16', 'F16'] as const)('%s weights are computed in fp32 and match the reference on the rounded weights', async (dtype) => {
    const { config, weights, model } = await setup('qwen2', { dtype });
    const ids = seqIds(11, model.spec.vocab, 3);
    const r = await model.engine.forward({ ids: [ids], logits: 'all' });
    expect(maxRelErr(r.logits!, referenceForward(config, weights, ids).logits)).toBeLessThan(2e-5);
  });

  it('sharded checkpoints load like single files', async () => {
    const { config, weights, model } = await setup('llama', { shardBytes: 20_000 });
    expect(model.plan.index.files.length).toBeGreaterThan(1);
    const ids = seqIds(10, model.spec.vocab, 4);
    const r = await model.engine.forward({ ids: [ids], logits: 'all' });
    expect(maxRelErr(r.logits!, referenceForward(config, weights, ids).logits)).toBeLessThan(2e-5);
  });
});
