/**
 * `emlens export --triton`: the repository's model.onnx, loaded from its folder by plain
 * onnxruntime-node (as Triton's onnxruntime backend loads it: the file, its external data, no
 * emlens host code), gives what the emlens engine gives — per-token and pooled captures, the last
 * token's logits, token log-probs, steering and ablation — for left- and right-padded rows, on a
 * llama, a qwen2 (biases) and a gemma3 (sliding windows, local rope) checkpoint.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import { LoadedModel } from '../../src/backend/model.js';
import { exportTriton, PAGE } from '../../src/export/triton.js';
import { cli, errorLines } from '../eval-commands/cli.js';
import { logSoftmax64 } from '../helpers/float64.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';

let dir: string;
const envCache = process.env.EMLENS_CACHE;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'emlens-triton-'));
  process.env.EMLENS_CACHE = join(dir, 'cache');
});
afterAll(() => {
  if (envCache === undefined) delete process.env.EMLENS_CACHE;
  else process.env.EMLENS_CACHE = envCache;
  rmSync(dir, { recursive: true, force: true });
});

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 2e-4) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return m < tol ? true : m;
};

describe('export --triton', () => {
  for (const family of ['llama', 'qwen2', 'gemma3_text'] as TinyFamily[]) {
    it(`${family}: the exported graph on plain ORT equals the engine (captures, pooling, logits, log-probs, steer, ablate)`, async () => {
      const ckpt = join(dir, family);
      writeTinyCheckpoint(ckpt, family);
      const model = await LoadedModel.load(ckpt);
      const ex = exportTriton(model, join(dir, `repo-${family}`), 'tiny');
      const sess = await ort.InferenceSession.create(ex.onnx);
      const { nLayers: L, dModel: D, vocab: V } = model.spec;
      const rows = [[5, 9, 2, 7, 3, 11, 4], [8, 1, 6], [10, 12, 13, 2, 2]];
      const T = 9;
      // Row 0 left-padded, row 1 right-padded, row 2 in the middle.
      const starts = [T - 7, 0, 2];
      const ids = new BigInt64Array(3 * T);
      const mask = new BigInt64Array(3 * T);
      const pool = new Float32Array(3 * T);
      rows.forEach((r, b) => r.forEach((id, j) => {
        ids[b * T + starts[b]! + j] = BigInt(id);
        mask[b * T + starts[b]! + j] = 1n;
        pool[b * T + starts[b]! + j] = (j + 1) / 10;
      }));
      const steer = new Float32Array(L * D);
      const ablate = new Float32Array(L * D);
      for (let k = 0; k < D; k++) {
        steer[1 * D + k] = Math.sin(k) * 0.7;
        ablate[0 * D + k] = Math.cos(3 * k) * 5;
      }
      const hooks = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_post`);
      const feeds = (withIv: boolean) => ({
        input_ids: new ort.Tensor('int64', ids, [3, T]),
        attention_mask: new ort.Tensor('int64', mask, [3, T]),
        pool: new ort.Tensor('float32', pool, [3, T]),
        steer: new ort.Tensor('float32', withIv ? steer : new Float32Array(L * D), [L, D]),
        ablate: new ort.Tensor('float32', withIv ? ablate : new Float32Array(L * D), [L, D]),
      });
      for (const withIv of [false, true]) {
        const out = await sess.run(feeds(withIv));
        const unit = ablate.slice(0, D).map((x, _i, a) => x / Math.hypot(...a));
        const iv = withIv
          ? { steer: [{ hook: hooks[1]!, vector: steer.slice(D, 2 * D), scale: 1 }], ablate: [{ hook: hooks[0]!, directions: [unit] }] }
          : {};
        for (let b = 0; b < 3; b++) {
          const r = rows[b]!;
          const n = r.length;
          const f = await model.engine.forward({ ids: [r], capture: hooks, logits: 'all', interventions: iv });
          for (const h of hooks) {
            const per = out[h]!.data as Float32Array;
            expect(out[h]!.dims).toEqual([3, T, D]);
            const want = f.captures.get(h)!;
            expect(close(per.subarray((b * T + starts[b]!) * D, (b * T + starts[b]! + n) * D), want), `${h} row ${b} iv ${withIv}`).toBe(true);
            const pooled = new Float64Array(D);
            for (let j = 0; j < n; j++) for (let k = 0; k < D; k++) pooled[k] += pool[b * T + starts[b]! + j]! * want[j * D + k]!;
            expect(close((out[`pooled.${h}`]!.data as Float32Array).subarray(b * D, (b + 1) * D), pooled), `pooled ${h} row ${b}`).toBe(true);
          }
          expect(close((out.logits!.data as Float32Array).subarray(b * V, (b + 1) * V), f.logits!.subarray((n - 1) * V, n * V)), `logits row ${b}`).toBe(true);
          const tl = out.token_logprobs!.data as Float32Array;
          const want = new Float64Array(T);
          for (let j = 1; j < n; j++) want[starts[b]! + j] = logSoftmax64(f.logits!.subarray((j - 1) * V, j * V))[r[j]!]!;
          expect(close(tl.subarray(b * T, (b + 1) * T), want), `token_logprobs row ${b}`).toBe(true);
        }
      }
      // Steering changes the outputs (the inputs are wired, not dropped).
      const a = await sess.run(feeds(false));
      const c = await sess.run(feeds(true));
      expect(close(a.logits!.data as Float32Array, c.logits!.data as Float32Array, 1e-3)).not.toBe(true);
    }, 120_000);
  }

  it('writes a repository Triton loads: config.pbtxt, model.onnx with page-aligned external weights', async () => {
    const ckpt = join(dir, 'llama');
    const r = await cli(['export', '--triton', join(dir, 'repo-cli'), ckpt, '--name', 'em-model']);
    expect(r.status, r.stderr).toBe(0);
    const m = join(dir, 'repo-cli', 'em-model');
    const cfg = readFileSync(join(m, 'config.pbtxt'), 'utf8');
    expect(cfg).toMatch(/^name: "em-model"$/m);
    expect(cfg).toMatch(/^platform: "onnxruntime_onnx"$/m);
    expect(cfg).toMatch(/^max_batch_size: 0$/m);
    for (const n of ['input_ids', 'attention_mask', 'steer', 'ablate', 'pool', 'logits', 'token_logprobs', 'pooled.blocks.0.hook_resid_post']) expect(cfg).toContain(`name: "${n}"`);
    // Every weight is external, at a page-aligned offset inside the data file.
    const proto = onnxProto.onnx.ModelProto.decode(readFileSync(join(m, '1', 'model.onnx')));
    const ext = proto.graph!.initializer!.filter((t) => t.dataLocation === onnxProto.onnx.TensorProto.DataLocation.EXTERNAL);
    const model = await LoadedModel.load(ckpt);
    expect(ext.map((t) => t.name).sort()).toEqual([...model.engine.weights.keys()].sort());
    const size = statSync(join(m, '1', 'model.onnx.data')).size;
    for (const t of ext) {
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
      expect(kv.location).toBe('model.onnx.data');
      expect(Number(kv.offset) % PAGE).toBe(0);
      expect(Number(kv.offset) + Number(kv.length)).toBeLessThanOrEqual(size);
    }
    expect(proto.graph!.input!.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'steer', 'ablate', 'pool']);
    expect(statSync(join(m, '1', 'model.onnx')).size).toBeLessThan(1 << 20);
    // An existing model folder is not overwritten.
    const again = await cli(['export', '--triton', join(dir, 'repo-cli'), ckpt, '--name', 'em-model']);
    expect(again.status).toBe(1);
    expect(errorLines(again.stderr)[0]).toMatch(/em-model exists/);
  }, 120_000);
});
