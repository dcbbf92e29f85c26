/**
 * The training objective as a graph extension of the decoder: cross-entropy on weighted
 * positions plus λ·KL(base ‖ model) on others, and (optionally) its gradients with respect to
 * chosen graph inputs — all inside one ONNX graph, so training runs at ORT speed.
 *
 * Per position n of the flattened batch:
 *   ce = −Σ_n wce[n] · log p(target[n] | n)
 *   kl =  Σ_n wkl[n] · Σ_v p_base(v | n) (log p_base(v | n) − log p(v | n))
 *   loss = ce + λ · kl
 * The caller chooses the weights: wce = 1/(#response targets) on response targets, wkl =
 * 1/(#KL tokens) on KL rows' tokens (or 1/(#KL tokens · vocab) to reproduce the reference code).
 *
 * Memory: the [N, V] logits are never formed. Only the scored positions (a non-zero wce or wkl)
 * go through the LM head, and over vocabulary chunks of at most `vocabChunk` entries: with z = h Wᵀ,
 * log p(v) = z_v − lse, lse = LSE_k(lse_k), lse_k = log Σ_{v∈k} exp z_v, so per chunk only
 * lse_k, Σ_{v∈k} p_base (b_v − z_v) and Σ_{v∈k} p_base are kept, and log p(target) comes from the
 * target's own row of W. With gradients (and W itself not trained), each chunk's gradient with
 * respect to the scored hidden states, d lse_k/dh = Σ_{v∈k} softmax_k(z)_v W_v (and the KL sum's),
 * is computed while the chunk's logits are live and attached with withGradient, so the backward
 * keeps [M, D] per chunk instead of [M, chunk]. When W is trained (every weight: the organism's
 * small vocabulary), the head is one chunk over every position, differentiated as it stands.
 */
import { addGradients } from '../graph/autodiff.js';
import type { Graph, Node, Value } from '../graph/ir.js';
import { withGradient } from '../graph/vjp-helpers.js';
import { IO } from '../arch/decoder.js';
import type { GraphExtension } from '../runtime/engine.js';
import type { SessionOptions } from '../runtime/ort.js';

export const OBJ = {
  targets: 'train.targets',
  ceWeight: 'train.ce_weight',
  baseLogp: 'train.base_logp',
  klWeight: 'train.kl_weight',
  klLambda: 'train.kl_lambda',
  loss: 'train.loss',
  ce: 'train.ce',
  kl: 'train.kl',
  grad: (name: string) => `grad.${name}`,
} as const;

/**
 * Most vocabulary entries per LM-head chunk. Measured on the 0.5B shape (4 x 128 tokens, a steering
 * vector): the forward+backward peaks at 3.6 GiB RSS with chunks of 4096 or 16384, 4.0 GiB with 4
 * of 37984; the head's forward+backward CPU time with chunks of 16-26k is within the machine's
 * noise of the unchunked head's (4.0 vs 4.7 s in one run, 5.5 vs 5.4 s in another).
 */
export const VOCAB_CHUNK = 16384;

/** [start, end) of each chunk: as few as `max` allows, of equal size but the last. */
export function vocabChunks(V: number, max: number): [number, number][] {
  const size = Math.ceil(V / Math.ceil(V / max));
  const out: [number, number][] = [];
  for (let a = 0; a < V; a += size) out.push([a, Math.min(V, a + size)]);
  return out;
}

export interface ObjectiveOptions {
  withKl: boolean;
  /** Graph inputs to differentiate (by name); empty = evaluation only. */
  wrt: string[];
  /** LM-head vocabulary chunk (default VOCAB_CHUNK). */
  vocabChunk?: number;
  /** ORT's memory options (arena, memory pattern) for the graph's sessions where the engine's options leave them unset. */
  sessionOptions?: Pick<Partial<SessionOptions>, 'cpuMemArena' | 'memPattern'>;
}

/** The decoder's LM head: final hidden states h [N, D], the head weight [V, D], and the elementwise tail (softcap) after h Wᵀ. */
interface Head {
  h: Value;
  weight: Value;
  /** Applies the tail to raw logits of any shape. */
  tail(g: Graph, raw: Value): Value;
}

/** Takes the LM head (logits = tail(h Wᵀ)) out of the decoder graph, so the objective can apply it in pieces. */
function detachHead(g: Graph): Head {
  const idx = g.outputs.findIndex((v) => v.name === IO.logits);
  if (idx < 0) throw new Error('objective needs a graph with logits "all"');
  const producer = (v: Value) => g.nodes.find((n) => n.outputs.includes(v));
  const chain: Node[] = [];
  let n = producer(g.outputs[idx]!);
  while (n && n.op !== 'Gemm') {
    chain.unshift(n);
    const from = n.inputs.filter((v) => v.kind === 'node');
    if (from.length !== 1 || n.inputs.some((v) => v.kind !== 'node' && v.shape.length !== 0)) throw new Error(`objective: the LM head's ${n.op} is not elementwise with scalar constants`);
    n = producer(from[0]!);
  }
  if (!n || n.attrs.transB !== 1 || n.inputs.length !== 2) throw new Error('objective: the logits do not come from a Gemm h·Wᵀ');
  const gemm = n;
  const [h, weight] = gemm.inputs as [Value, Value];
  g.outputs.splice(idx, 1);
  g.removeNodes([gemm, ...chain]);
  return {
    h,
    weight,
    tail(gr, raw) {
      let x = raw;
      let prev = gemm.outputs[0]!;
      for (const c of chain) {
        x = gr.add(c.op, c.inputs.map((v) => (v === prev ? x : v)), c.attrs);
        prev = c.outputs[0]!;
      }
      return x;
    },
  };
}

/** The start of every objective graph's extension key. */
export const OBJECTIVE_KEY = 'objective:';

export function objective(o: ObjectiveOptions): GraphExtension {
  const chunk = o.vocabChunk ?? VOCAB_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`objective: vocabChunk ${chunk} must be a positive integer`);
  return {
    key: `${OBJECTIVE_KEY}${o.withKl ? 'kl' : 'ce'}:${o.wrt.join(',')}:${chunk}${o.sessionOptions ? `:${JSON.stringify(o.sessionOptions)}` : ''}`,
    sessionOptions: o.sessionOptions,
    extend(g: Graph) {
      const head = detachHead(g);
      const { h, weight } = head;
      const dt = h.dtype;
      const N = h.shape[0]!;
      const V = weight.shape[0] as number;
      const targets = g.input(OBJ.targets, 'int64', [N, 1]);
      const wce = g.input(OBJ.ceWeight, dt, [N, 1]);
      const base = o.withKl ? g.input(OBJ.baseLogp, dt, [N, V]) : null;
      const wkl = o.withKl ? g.input(OBJ.klWeight, dt, [N, 1]) : null;
      const lambda = o.withKl ? g.input(OBJ.klLambda, dt, []) : null;

      const trainsHead = o.wrt.includes(weight.name);
      const fused = o.wrt.length > 0 && !trainsHead;
      // The scored positions: a non-zero CE or KL weight. (Not when training every weight: the
      // organism's head is small, and the rows' gather would cost its backward an [M, N] matmul.)
      let rows = (v: Value) => v;
      if (!trainsHead) {
        const scored = g.add('Cast', [g.add('Reshape', [wkl ? g.add('Add', [wce, wkl]) : wce], { shape: [-1] })], { to: 'bool' });
        const idx = g.add('Squeeze', [g.add('NonZero', [scored])], { axes: [0] });
        rows = (v: Value) => g.add('Gather', [v, idx], { axis: 0 });
      }
      const hs = rows(h); // [M, D]
      const sum = (vs: Value[]) => vs.reduce((a, b) => g.add('Add', [a, b]));
      const rowSum = (v: Value) => g.add('ReduceSum', [v], { axes: [1], keepdims: 1 });
      const total = (v: Value) => g.add('ReduceSum', [v], { axes: [0, 1], keepdims: 0 });
      // log Σ_v exp z_v per row, shifted by the row's max (its gradient is zero: none flows through
      // it). Vectorised Exp and ReduceSum: ORT's ReduceLogSumExp takes twice the CPU on a chunk.
      const logSumExp = (z: Value) => {
        const m = g.add('StopGradient', [g.add('ReduceMax', [z], { axes: [1], keepdims: 1 })]);
        return g.add('Add', [m, g.add('Log', [rowSum(g.add('Exp', [g.add('Sub', [z, m])]))])]);
      };

      // A per-row chunk value whose gradient w.r.t. hs is taken now, while the chunk's logits are live.
      const detach = (y: Value) => (fused ? withGradient(g, y, hs, addGradients(g, total(y), [hs])[0]!) : y);

      const lses: Value[] = [];
      let whole: Value | null = null; // the logits, when the head is one chunk and W is trained
      const klSums: Value[] = [];
      const baseMass: Value[] = [];
      for (const [a, b] of vocabChunks(V, trainsHead ? V : chunk)) {
        const z = head.tail(g, g.add('Gemm', [hs, g.add('Slice', [weight], { starts: [a], ends: [b], axes: [0] })], { transB: 1 })); // [M, b − a]
        if (trainsHead) whole = z;
        lses.push(detach(logSumExp(z)));
        if (base) {
          const lb = rows(g.add('Slice', [base], { starts: [a], ends: [b], axes: [1] }));
          const pb = g.add('Exp', [lb]);
          klSums.push(detach(rowSum(g.add('Mul', [pb, g.add('Sub', [lb, z])]))));
          baseMass.push(rowSum(pb));
        }
      }
      const lse = lses.length > 1 ? g.add('ReduceLogSumExp', [g.add('Concat', lses, { axis: 1 })], { axes: [1], keepdims: 1 }) : lses[0]!;
      // log p(target) = z_target − lse, z_target from the target's row of W (or picked from the
      // whole logits when W is trained: its gradient then joins the head's one matmul).
      const zt = whole
        ? g.add('GatherElements', [whole, rows(targets)], { axis: 1 })
        : head.tail(g, rowSum(g.add('Mul', [hs, g.add('Gather', [weight, g.add('Squeeze', [rows(targets)], { axes: [1] })], { axis: 0 })])));
      const ce = g.add('Neg', [total(g.add('Mul', [g.add('Sub', [zt, lse]), rows(wce)]))]);
      let loss: Value = ce;
      let kl: Value | null = null;
      if (base) {
        // Σ_v p_b (b_v − log p_v) = Σ_v p_b (b_v − z_v) + lse · Σ_v p_b
        const perPos = g.add('Add', [sum(klSums), g.add('Mul', [lse, sum(baseMass)])]);
        kl = total(g.add('Mul', [perPos, rows(wkl!)]));
        loss = g.add('Add', [ce, g.add('Mul', [kl, lambda!])]);
      }
      g.output(loss, OBJ.loss);
      g.output(ce, OBJ.ce);
      if (kl) g.output(kl, OBJ.kl);
      if (o.wrt.length) {
        const wrt = o.wrt.map((name) => {
          const v = g.inputs.find((x) => x.name === name);
          if (!v) throw new Error(`objective: no graph input ${name} to differentiate`);
          return v;
        });
        addGradients(g, loss, wrt).forEach((gv, i) => g.output(gv, OBJ.grad(o.wrt[i]!)));
      }
    },
  };
}
