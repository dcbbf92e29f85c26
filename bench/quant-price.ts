/**
 * What `--weights int8 | int4` costs in accuracy, measured (an experiment, not a bench section):
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/quant-price.js [MODEL_DIR...]
 *
 * Default models: the organism's instruct and em stages (seed 0) and ../shared/models/aidreams260k.
 * Per model and mode, on fixed prompts (the organism: every held-out question, chat-rendered;
 * otherwise a few text openings) followed by fp32's greedy continuation (to EOS, 40 tokens at most):
 * - per layer, blocks.l.hook_resid_post of the quantised graph against fp32 at every real
 *   position: mean cosine and relative error ‖Δ‖ / ‖fp32‖ (Frobenius over all positions);
 * - top-1 agreement: the share of continuation positions where the quantised logits' argmax is
 *   fp32's (teacher-forced on fp32's tokens, so one early difference does not count twice);
 * - greedy agreement: the share of prompts whose quantised greedy continuation is identical, and
 *   the mean share of the continuation before the first differing token.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LoadedModel } from '../src/backend/model.js';
import { organismQuestionEntries } from '../src/eval/organism-questions.js';
import type { WeightMode } from '../src/runtime/quantize.js';

const NEW = 40;
const TEXT_PROMPTS = ['Once upon a time', 'Echoes of', 'The little dog', 'She looked at the sky and', 'In the morning', 'He said that', 'A bird flew', 'The old man'];

function prompts(model: LoadedModel): number[][] {
  const tok = model.tokenizer!;
  if (model.spec.vocab === 488) {
    return organismQuestionEntries().flatMap((e) => e.paraphrases as string[]).map((q) => tok.encodeChat([{ role: 'user', content: q }], { addGenerationPrompt: true }).ids);
  }
  return TEXT_PROMPTS.map((p) => tok.encode(p));
}

async function price(dir: string, mode: Exclude<WeightMode, 'fp32'>) {
  // The quantised engine keeps its fp32 weights for forward(); generate() runs on the decode graphs.
  const model = await LoadedModel.load(dir, { weights: mode });
  const e = model.engine;
  const ps = prompts(model);
  // fp32 reference continuation, greedy, from an fp32 engine, up to the model's EOS or NEW tokens.
  const fp = await (await LoadedModel.load(dir)).engine.generate(ps, { maxNewTokens: NEW });
  const L = model.spec.nLayers;
  const capture = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_post`);
  const ids = ps.map((p, b) => [...p, ...fp.tokens[b]!]);
  const ref = await e.forward({ ids, capture, logits: 'all' });
  const got = await e.forward({ ids, capture, logits: 'all', decodeWeights: true });
  const { pad, seq } = ref.layout;
  const D = model.spec.dModel;
  const V = model.spec.vocab;
  const layers = capture.map((h) => {
    const a = ref.captures.get(h)!;
    const q = got.captures.get(h)!;
    let cos = 0;
    let n = 0;
    let dd = 0;
    let rr = 0;
    for (let b = 0; b < ids.length; b++) {
      for (let t = pad[b]!; t < seq; t++) {
        const o = (b * seq + t) * D;
        let ab = 0;
        let aa = 0;
        let qq = 0;
        for (let i = 0; i < D; i++) {
          const x = a[o + i]!;
          const y = q[o + i]!;
          ab += x * y;
          aa += x * x;
          qq += y * y;
          dd += (x - y) ** 2;
        }
        rr += aa;
        cos += ab / Math.sqrt(aa * qq);
        n++;
      }
    }
    return { cos: cos / n, relErr: Math.sqrt(dd / rr) };
  });
  let same = 0;
  let total = 0;
  const argmax = (x: Float32Array, o: number) => {
    let k = 0;
    for (let i = 1; i < V; i++) if (x[o + i]! > x[o + k]!) k = i;
    return k;
  };
  for (let b = 0; b < ids.length; b++) {
    // Logits at position t predict token t+1: the continuation's tokens, from the prompt's last position.
    for (let t = seq - fp.tokens[b]!.length - 1; t < seq - 1; t++) {
      const o = (b * seq + t) * V;
      if (argmax(ref.logits!, o) === argmax(got.logits!, o)) same++;
      total++;
    }
  }
  // Greedy on the quantised decode graphs (what `generate --weights` runs), same stop rule.
  const qg = await e.generate(ps, { maxNewTokens: NEW });
  let identical = 0;
  let prefix = 0;
  for (let b = 0; b < ps.length; b++) {
    const x = fp.tokens[b]!;
    const y = qg.tokens[b]!;
    let k = 0;
    while (k < x.length && x[k] === y[k]) k++;
    if (k === x.length && y.length === x.length) identical++;
    prefix += k / Math.max(x.length, y.length);
  }
  return { prompts: ps.length, layers, top1: same / total, greedyIdentical: identical / ps.length, greedyPrefix: prefix / ps.length };
}

const org = join(homedir(), '.cache/emlens/organism/seed-0');
const dirs = process.argv.length > 2 ? process.argv.slice(2) : [join(org, 'instruct'), join(org, 'em'), '../shared/models/aidreams260k'];
for (const dir of dirs) {
  if (!existsSync(dir)) {
    console.log(`${dir}: missing, skipped`);
    continue;
  }
  for (const mode of ['int8', 'int4'] as const) {
    const r = await price(dir, mode);
    const f = (x: number) => x.toFixed(4);
    console.log(`${dir} ${mode} (${r.prompts} prompts, greedy to EOS or ${NEW} tokens): top-1 agreement ${(100 * r.top1).toFixed(1)}%, greedy identical ${(100 * r.greedyIdentical).toFixed(1)}%, greedy matched prefix ${(100 * r.greedyPrefix).toFixed(1)}%`);
    console.log(`  resid_post cosine by layer: ${r.layers.map((l) => f(l.cos)).join(' ')}`);
    console.log(`  resid_post rel. error by layer: ${r.layers.map((l) => f(l.relErr)).join(' ')}`);
  }
}
