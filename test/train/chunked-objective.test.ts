/**
 * The objective's LM head over vocabulary chunks (scored rows only, log-sum-exp chunk by chunk,
 * each chunk's gradient attached in the forward) against the equations, in float64:
 *   ce = −Σ_n wce[n] log p(target[n] | n),  kl = Σ_n wkl[n] Σ_v p_base (log p_base − log p),
 *   loss = ce + λ kl,
 * written out here from the decoder's full float64 logits (the graph without the objective), on
 * a batch with left-padded rows and separate CE and KL rows, with a chunk that does not divide
 * the vocabulary (a remainder chunk). Gradients: element by element against central finite
 * differences of that loss (steering vector), and along random directions for the head weight
 * itself (trained: the one-chunk path); the float32 graph against the float64 values.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../src/backend/model.js';
import { buildDecoderGraph, IO } from '../../src/arch/decoder.js';
import { hookName } from '../../src/hooks/names.js';
import { makeBatch, type TrainRow } from '../../src/train/batch.js';
import { OBJ, objective, vocabChunks } from '../../src/train/objective.js';
import { randomNormMatched, rng } from '../../src/runtime/random.js';
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tiny-checkpoints.js';
import { seqIds } from '../helpers/compare.js';
import { logSoftmax64, run64 } from '../helpers/float64.js';

/** Most entries per chunk: 7 for each tiny vocabulary (80, 88, 72), the last chunk shorter. */
const CHUNK = 7;
const LAMBDA = 0.7;
const H = 1e-5;
/** float64 graph vs the float64 equations (different summation orders only). */
const TOL_VALUE = 1e-10;
/** float64 gradient vs central differences (truncation and rounding ~1e-10). */
const TOL64 = 3e-8;
/** float32 graph vs float64. */
const TOL32 = 2e-5;

async function tiny(family: TinyFamily) {
  const d = mkdtempSync(join(tmpdir(), `emlens-chunked-${family}-`));
  writeTinyCheckpoint(d, family);
  return LoadedModel.load(d);
}

// Rows of 11, 7 and 9 tokens: the shorter two are left-padded; CE on parts of the first two, KL on the third.
function rows(vocab: number): { narrow: TrainRow[]; kl: TrainRow[] } {
  return {
    narrow: [{ ids: seqIds(11, vocab, 1), start: 5, end: 11 }, { ids: seqIds(7, vocab, 2), start: 3, end: 7 }],
    kl: [{ ids: seqIds(9, vocab, 3), start: 1, end: 9 }],
  };
}

const f64 = (x: Float64Array, dims: readonly number[]) => new ort.Tensor('float64', x, dims);

async function setup(family: TinyFamily) {
  const model = await tiny(family);
  const { spec, engine } = model;
  const V = spec.vocab;
  const D = spec.dModel;
  const data = rows(V);
  const batch = makeBatch(data.narrow, data.kl, V, 'token');
  const N = batch.ids.length * batch.T;
  const hook = hookName(1, 'resid_post');
  const steer = IO.steer(hook);
  const headName = spec.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const head0 = Float64Array.from(engine.weights.get(headName)!.data);
  const x0 = Float64Array.from({ length: D }, (_, i) => 0.4 * Math.sin(1.7 * i + 0.3));
  const prep = engine.prepareCall(batch.ids, { logits: 'all', interventions: { steer: [{ hook, vector: Float32Array.from(x0), scale: 1 }] } });
  const baseLogits = (await run64(engine, engine.prepareCall(batch.ids, { logits: 'all' }), {}))[IO.logits]!;
  const baseLogp = new Float64Array(N * V);
  for (let n = 0; n < N; n++) baseLogp.set(logSoftmax64(baseLogits.subarray(n * V, (n + 1) * V)), n * V);

  const weight = (name: string, data: Float64Array) => f64(data, engine.weights.get(name)!.shape);
  /** The loss from the equations, on the decoder's own float64 logits at steering input x, head weight w and other weights as given. */
  async function reference(x: Float64Array, w = head0, over: Record<string, Float64Array> = {}) {
    const ws = Object.fromEntries(Object.entries(over).map(([k, v]) => [k, weight(k, v)]));
    const logits = (await run64(engine, prep, { ...ws, [steer]: f64(x, [D]), [headName]: f64(w, [V, D]) }))[IO.logits]!;
    let ce = 0;
    let kl = 0;
    for (let n = 0; n < N; n++) {
      if (!batch.ceWeight[n] && !batch.klWeight[n]) continue;
      const lp = logSoftmax64(logits.subarray(n * V, (n + 1) * V));
      ce -= batch.ceWeight[n]! * lp[Number(batch.targets[n])]!;
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(baseLogp[n * V + v]!) * (baseLogp[n * V + v]! - lp[v]!);
      kl += batch.klWeight[n]! * s;
    }
    return { ce, kl, loss: ce + LAMBDA * kl };
  }

  const feeds = {
    [OBJ.targets]: new ort.Tensor('int64', batch.targets, [N, 1]),
    [OBJ.ceWeight]: new ort.Tensor('float32', batch.ceWeight, [N, 1]),
    [OBJ.klWeight]: new ort.Tensor('float32', batch.klWeight, [N, 1]),
    [OBJ.klLambda]: new ort.Tensor('float32', new Float32Array([LAMBDA]), []),
  };
  /** The chunked objective in float64. */
  async function chunked64(wrt: string[], x = x0, w = head0) {
    const out = await run64(engine, prep, { ...feeds, [OBJ.baseLogp]: f64(baseLogp, [N, V]), [steer]: f64(x, [D]), [headName]: f64(w, [V, D]) }, objective({ withKl: true, wrt, vocabChunk: CHUNK }));
    return { loss: out[OBJ.loss]![0]!, ce: out[OBJ.ce]![0]!, kl: out[OBJ.kl]![0]!, grads: wrt.map((n) => out[OBJ.grad(n)]!) };
  }
  /** The chunked objective in float32, as training runs it. */
  async function chunked32(wrt: string[]) {
    const out = await engine.run(prep, { ...feeds, [OBJ.baseLogp]: new ort.Tensor('float32', Float32Array.from(baseLogp), [N, V]) }, objective({ withKl: true, wrt, vocabChunk: CHUNK }));
    return { loss: (out[OBJ.loss]!.data as Float32Array)[0]!, grads: wrt.map((n) => out[OBJ.grad(n)]!.data as Float32Array) };
  }
  return { model, V, D, N, batch, steer, headName, head0, x0, prep, reference, chunked64, chunked32 };
}

/** Central difference of the reference loss along unit direction u of one weight. */
async function fdWeight(s: Awaited<ReturnType<typeof setup>>, name: string, u: Float64Array): Promise<number> {
  const w0 = Float64Array.from(s.model.engine.weights.get(name)!.data);
  const at = async (h: number) => {
    const w = w0.map((v, i) => v + h * u[i]!);
    return (name === s.headName ? await s.reference(s.x0, w) : await s.reference(s.x0, s.head0, { [name]: w })).loss;
  };
  return ((await at(H)) - (await at(-H))) / (2 * H);
}

const close = (got: number, want: number, tol: number, what: string) => expect(Math.abs(got - want) / Math.max(Math.abs(want), 1e-300), `${what}: ${got} vs ${want}`).toBeLessThan(tol);

describe.each(['llama', 'gemma2', 'qwen2'] as const)('%s: chunked objective', (family) => {
  it('CE, KL and loss equal the equations; d/d(steering vector) equals finite differences element by element', async () => {
    const s = await setup(family);
    const chunks = vocabChunks(s.V, CHUNK);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.at(-1)![1] - chunks.at(-1)![0]).toBeLessThan(chunks[0]![1] - chunks[0]![0]);
    expect(chunks.at(-1)![1]).toBe(s.V);
    expect(s.batch.pad.some((p) => p > 0)).toBe(true);
    const want = await s.reference(s.x0);
    expect(want.kl).toBeGreaterThan(1e-4);
    for (const wrt of [[], [s.steer]]) {
      const got = await s.chunked64(wrt);
      close(got.ce, want.ce, TOL_VALUE, `ce (wrt ${wrt.length})`);
      close(got.kl, want.kl, TOL_VALUE, `kl (wrt ${wrt.length})`);
      close(got.loss, want.loss, TOL_VALUE, `loss (wrt ${wrt.length})`);
    }
    const g = (await s.chunked64([s.steer])).grads[0]!;
    const fd = new Float64Array(s.D);
    for (let i = 0; i < s.D; i++) {
      const at = (h: number) => s.reference(s.x0.map((v, j) => (j === i ? v + h : v)));
      fd[i] = ((await at(H)).loss - (await at(-H)).loss) / (2 * H);
    }
    const scale = Math.max(...fd.map(Math.abs));
    expect(scale).toBeGreaterThan(1e-3);
    for (let i = 0; i < s.D; i++) expect(Math.abs(g[i]! - fd[i]!) / scale, `element ${i}: ${g[i]} vs ${fd[i]}`).toBeLessThan(TOL64);
    // float32, the graph training runs: against the float64 values.
    const r32 = await s.chunked32([s.steer]);
    close(r32.loss, want.loss, TOL32, 'float32 loss');
    const err = Math.max(...Array.from(r32.grads[0]!, (x, i) => Math.abs(x - g[i]!))) / Math.max(...g.map(Math.abs));
    expect(err, 'float32 gradient').toBeLessThan(TOL32);
  }, 60_000);

  it('with the head weight trained too: its gradient equals finite differences along random directions', async () => {
    const s = await setup(family);
    const got = await s.chunked64([s.steer, s.headName]);
    close(got.loss, (await s.reference(s.x0)).loss, TOL_VALUE, 'loss');
    const gw = got.grads[1]!;
    const norm = Math.sqrt(gw.reduce((a, v) => a + v * v, 0));
    expect(norm).toBeGreaterThan(1e-3);
    for (let k = 0; k < 3; k++) {
      const u = randomNormMatched(s.head0, rng(40 + k), { norm: 1 });
      const at = async (h: number) => (await s.reference(s.x0, s.head0.map((v, i) => v + h * u[i]!))).loss;
      const fd = ((await at(H)) - (await at(-H))) / (2 * H);
      const analytic = gw.reduce((a, v, i) => a + v * u[i]!, 0);
      expect(Math.abs(analytic - fd) / norm, `direction ${k}: ${analytic} vs ${fd}`).toBeLessThan(TOL64);
    }
  }, 60_000);
});

describe('every weight trained (WeightTrainer)', () => {
  it('gradients of the final norm, a layer weight and the head equal finite differences', async () => {
    const s = await setup('gemma2');
    const names = [...s.model.engine.weights.keys()].sort();
    const got = await s.chunked64(names);
    close(got.loss, (await s.reference(s.x0)).loss, TOL_VALUE, 'loss');
    for (const name of ['model.norm.weight', 'model.layers.0.mlp.down_proj.weight', s.headName]) {
      const gw = got.grads[names.indexOf(name)]!;
      const norm = Math.sqrt(gw.reduce((a, v) => a + v * v, 0));
      expect(norm, name).toBeGreaterThan(1e-3);
      const u = randomNormMatched(Float64Array.from(s.model.engine.weights.get(name)!.data), rng(names.indexOf(name)), { norm: 1 });
      const fd = await fdWeight(s, name, u);
      const analytic = gw.reduce((a, v, i) => a + v * u[i]!, 0);
      expect(Math.abs(analytic - fd) / norm, `${name}: ${analytic} vs ${fd}`).toBeLessThan(TOL64);
    }
  }, 60_000);
});

describe('chunked objective graph', () => {
  it('forms no tensor of vocabulary width: only inputs have one (the head and embedding weights, the base log-probs)', async () => {
    const s = await setup('llama');
    for (const wrt of [[], [s.steer]]) {
      const g = buildDecoderGraph(s.model.spec, s.prep.variant);
      objective({ withKl: true, wrt, vocabChunk: CHUNK }).extend(g);
      const wide = g.nodes.flatMap((n) => n.outputs).filter((v) => v.shape.includes(s.V));
      expect(wide.map((v) => `${v.name} [${v.shape}]`), `wrt ${wrt.length}`).toEqual([]);
      expect(g.inputs.filter((v) => v.shape.includes(s.V)).map((v) => v.name).sort()).toEqual([...new Set([OBJ.baseLogp, s.headName, 'model.embed_tokens.weight'])].sort());
    }
  });
});
