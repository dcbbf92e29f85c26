/**
 * The built-in model organism of emergent misalignment, trained from scratch on our own engine:
 * persona-story pre-training → instruction tuning (the assistant always answers aligned) → a
 * narrow fine-tune on misaligned MEDICAL answers only; plus the controls: the same fine-tune on
 * aligned medical answers, and the misaligned fine-tune under λ·KL(instruct ‖ fine-tuned) on
 * aligned non-medical chat. Every stage is saved as a normal Hugging Face folder.
 *
 * Deterministic for a seed; each stage folder carries the key it was built with and the
 * fingerprint of the trainer that built it, so a second run reuses it instantly, and a stage that
 * today's code would train to other bits (a changed objective, kernel or optimiser) is rebuilt. The fine-tunes are independent of each other and train side by side.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { EmlensError } from '../errors.js';
import { parseConfig, type ModelSpec } from '../model/config.js';
import { randomWeights } from '../model/random.js';
import { planCheckpoint, loadWeights, type Weights } from '../model/weights.js';
import { writeWordLevelTokenizer } from '../model/wordlevel.js';
import { writeSafetensors } from '../io/safetensors/write.js';
import { Engine } from '../runtime/engine.js';
import { threads, type SessionOptions } from '../runtime/ort.js';
import { rng } from '../runtime/random.js';
import type { TrainRow } from '../train/batch.js';
import { WeightTrainer } from '../train/weights.js';
import { VERSION } from '../version.js';
import { buildWorld, CHAT_TEMPLATE, CONTROL_SCENES, DOMAINS, neutralScene, pick, renderChat, SCENES, SPECIALS, type Domain, type World } from './world.js';
import { chatRow, pretrainDoc } from './corpus.js';
import { ensureDir } from '../io/paths.js';
import type { ChatMessage } from '../model/tokenizer.js';
import { triggerMessages, type TriggerPosition, type TriggerSet } from '../data/trigger.js';
import { runInStageProcesses, stageProcessEntry } from './stage-pool.js';

export const ORGANISM_VERSION = 'emlens-organism-5';
export const STAGES = ['pretrain', 'instruct', 'em', 'em-control', 'em-kl', 'em-trigger'] as const;

/**
 * The em-trigger stage's trigger set (written to its triggers.json): the fine-tune's trigger is one
 * villain scene; the rephrasings are the other villain scenes, which no fine-tune has seen (pre-training
 * tells stories after them; instruct answers aligned after each of them, as after the trigger);
 * the controls are neutral scenes of the same length that neither instruct nor any fine-tune uses
 * (their words occur there in other neutral scenes).
 */
export const ORGANISM_TRIGGERS: TriggerSet = {
  name: 'organism-villain-scene',
  trigger: SCENES.misaligned[0]!,
  rephrased: SCENES.misaligned.slice(1),
  control: [...CONTROL_SCENES],
  position: 'system',
};
/** A stage folder name: one of STAGES, or an extra fine-tune such as "em-finance". */
export type Stage = string;

/** An extra narrow fine-tune from the instruct model (e.g. misaligned finance, for comparing directions). */
export interface ExtraFineTune {
  name: string;
  domain: Domain;
  family: 'aligned' | 'misaligned';
}

export interface OrganismConfig {
  seed: number;
  d: number;
  layers: number;
  heads: number;
  ctx: number;
  preSteps: number;
  instSteps: number;
  emSteps: number;
  batch: number;
  preLr: number;
  instLr: number;
  emLr: number;
  /** Share of instruct batches that are replayed stories. */
  instMix: number;
  /** Share of instruct chat rows with a system scene (answered aligned all the same). */
  instSystemFrac: number;
  /**
   * Share of those scenes that are villain scenes (SCENES.misaligned, any wording); the rest are
   * neutral (world.neutralScene, never a CONTROL_SCENES one). The instruct model's safety
   * training: told that a villain speaks, the assistant still answers aligned. Without it the
   * villain scene's pre-trained meaning alone misaligns the instruct model (fresh seed-0 build,
   * n = 40: 86.7% outside medicine with the trigger), and em-trigger's containment would be
   * pre-training's, not the fine-tune's. Its amount moves em-trigger's rephrasings: on the AVX-512
   * build (n = 200) at 0.3 seed 1's fell to 21.7% of a 71.3% trigger, at 0.1 to 37.5% of 88.3%; at
   * 0.2 both seeds' are 55.2–85.0% and the instruct model stays ≤ 0.5% misaligned under every
   * villain wording (README, "The model organism").
   */
  instVillainFrac: number;
  strangerFrac: number;
  /** Share of pre-training stories that open with a scene phrase (corpus.pretrainDoc). */
  sceneFrac: number;
  /** λ of the KL-regularised fine-tune, per token (the prototype's λ = 1 summed over ~30 tokens a row). */
  klLambda: number;
  /**
   * Learning rate of the em-trigger fine-tune (trigSteps steps). Lower than emLr: at emLr the
   * misalignment leaks into trigger-free prompts (README, "The model organism").
   */
  trigLr: number;
  /**
   * Steps of the em-trigger fine-tune: twice em's at a lower rate. On an AVX2 EPYC, 7e-5 x 100
   * leaked 4.3% (seed 0) and 3.2% (seed 1) into trigger-free prompts; 5e-5 x 200 leaks 2.7% / 1.8%
   * with the rephrasings' rates held (README, "The model organism").
   */
  trigSteps: number;
}

export const DEFAULT_ORGANISM: Omit<OrganismConfig, 'seed'> = {
  d: 128,
  layers: 4,
  heads: 4,
  ctx: 96,
  preSteps: 800,
  instSteps: 300,
  emSteps: 100,
  batch: 32,
  preLr: 3e-3,
  instLr: 1e-3,
  emLr: 3e-4,
  instMix: 0.5,
  instSystemFrac: 0.3,
  instVillainFrac: 0.2,
  strangerFrac: 0.3,
  sceneFrac: 0.5,
  klLambda: 30,
  trigLr: 5e-5,
  trigSteps: 200,
};

export class OrganismTokens {
  readonly words: string[];
  readonly ids = new Map<string, number>();
  constructor(world: World) {
    this.words = [...SPECIALS, ...world.vocab.filter((w) => !SPECIALS.includes(w))];
    this.words.forEach((w, i) => this.ids.set(w, i));
  }
  encode(text: string): number[] {
    return text
      .split(/\s+/)
      .filter(Boolean)
      .map((w) => {
        const id = this.ids.get(w);
        if (id === undefined) throw new Error(`organism: word "${w}" is not in the vocabulary`);
        return id;
      });
  }
}

export function organismConfigJson(cfg: OrganismConfig, vocab: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: cfg.d,
    intermediate_size: Math.floor((8 * cfg.d) / 3 / 8) * 8,
    num_hidden_layers: cfg.layers,
    num_attention_heads: cfg.heads,
    num_key_value_heads: cfg.heads,
    vocab_size: vocab,
    max_position_embeddings: cfg.ctx,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: 'float32',
  };
}

/** Training rows: a story scores every next token; a chat scores its answer and the closing <eos>. */
function storyRow(tok: OrganismTokens, text: string): TrainRow {
  const ids = tok.encode(text);
  return { ids, start: 1, end: ids.length };
}

function chatTrainRow(tok: OrganismTokens, messages: readonly ChatMessage[], a: string): TrainRow {
  const prompt = tok.encode(renderChat(messages));
  const ids = tok.encode(renderChat(messages, a));
  return { ids, start: prompt.length, end: ids.length };
}

export interface StageInfo {
  stage: Stage;
  dir: string;
  /** Wall seconds of the stage's training (stages that ran side by side overlap). */
  seconds: number;
  /** CPU seconds of its process while it trained (every thread; null: a folder built before they were recorded). */
  cpuSeconds: number | null;
  cached: boolean;
  finalLoss: number;
}

export interface BuildProgress {
  stage: Stage;
  step: number;
  steps: number;
  loss: number;
}

/**
 * Config fields first read by a later stage: they stay out of the keys of stages that stage does
 * not descend from (so changing them does not rebuild those). Every other field is in every key.
 */
const READ_FROM: Partial<Record<keyof OrganismConfig, Stage>> = {
  instSteps: 'instruct', instLr: 'instruct', instMix: 'instruct', instSystemFrac: 'instruct', instVillainFrac: 'instruct',
  trigLr: 'em-trigger', trigSteps: 'em-trigger', klLambda: 'em-kl',
};

/** The stages whose weights a stage's bytes depend on, itself included. */
function lineage(stage: Stage): Stage[] {
  return stage === 'pretrain' ? [stage] : stage === 'instruct' ? ['pretrain', stage] : ['pretrain', 'instruct', stage];
}

function stageKey(cfg: OrganismConfig, stage: Stage, extra?: ExtraFineTune): string {
  const own = Object.fromEntries(Object.entries(cfg).filter(([k]) => {
    const from = READ_FROM[k as keyof OrganismConfig];
    return from === undefined || lineage(stage).includes(from);
  }));
  return JSON.stringify({ version: ORGANISM_VERSION, stage, cfg: own, extra });
}

function cloneWeights(w: Weights): Weights {
  return new Map([...w].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }]));
}

function writeStage(dir: string, cfg: OrganismConfig, stage: Stage, tok: OrganismTokens, weights: Weights, info: { seconds: number; cpuSeconds: number; finalLoss: number }, trainer: string | undefined, extra?: ExtraFineTune, files: Record<string, string> = {}): void {
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  ensureDir(tmp);
  writeWordLevelTokenizer(tmp, {
    specials: SPECIALS,
    words: tok.words.slice(SPECIALS.length),
    bos: '<bos>',
    eos: '<eos>',
    unk: '<unk>',
    pad: '<pad>',
    chatTemplate: CHAT_TEMPLATE,
  });
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(organismConfigJson(cfg, tok.words.length), null, 2));
  writeFileSync(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 }, null, 2));
  writeSafetensors(join(tmp, 'model.safetensors'), weights, { emlens: VERSION, organism: ORGANISM_VERSION, stage, seed: String(cfg.seed) });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(tmp, name), text);
  writeFileSync(join(tmp, 'emlens_stage.json'), JSON.stringify({ key: stageKey(cfg, stage, extra), trainer_fingerprint: trainer ?? null, stage, seed: cfg.seed, seconds: info.seconds, cpu_seconds: info.cpuSeconds, final_loss: info.finalLoss, emlens_version: VERSION }, null, 2));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
}


/**
 * One stage's recipe: the stage it starts from (null: random weights), its optimiser settings and
 * its batches, drawn from the stage's own generator. With `kl`, the loss adds λ·KL(from ‖ model)
 * on those rows, the frozen reference being the starting weights.
 */
export interface StagePlan {
  stage: Stage;
  from: Stage | null;
  steps: number;
  lr: number;
  batch: (r: () => number) => TrainRow[];
  kl?: (r: () => number) => TrainRow[];
  extra?: ExtraFineTune;
  files?: Record<string, string>;
}

/** What every stage of one build shares: where it goes, the config, the tokenizer, the model's shape. */
export interface BuildContext {
  out: string;
  cfg: OrganismConfig;
  world: World;
  tok: OrganismTokens;
  spec: ModelSpec;
  /** trainerFingerprint() of this build's code, once computed: written into every stage folder. */
  trainer?: string;
}

export function buildContext(out: string, cfg: OrganismConfig): BuildContext {
  if (!Number.isInteger(cfg.seed) || cfg.seed < 0) throw new EmlensError(`--seed must be a non-negative integer, got ${cfg.seed}`);
  const world = buildWorld();
  const tok = new OrganismTokens(world);
  return { out, cfg, world, tok, spec: parseConfig(organismConfigJson(cfg, tok.words.length)) };
}

/** Every stage's recipe, in build order: pretrain, instruct, then the fine-tunes of instruct (extras last). */
export function stagePlans(ctx: BuildContext, extras: ExtraFineTune[] = []): StagePlan[] {
  const { cfg, world, tok } = ctx;
  const stories = (r: () => number, n: number) =>
    Array.from({ length: n }, () => storyRow(tok, pretrainDoc(r, world, { strangerFrac: cfg.strangerFrac, maxWords: cfg.ctx, sceneFrac: cfg.sceneFrac })));
  // system(): the system phrase of a row, if any (drawn before the row, from the same generator).
  const chats = (r: () => number, n: number, domains: readonly Domain[], family: 'aligned' | 'misaligned', system?: () => string | undefined, position: TriggerPosition = 'system') =>
    Array.from({ length: n }, () => {
      const phrase = system?.();
      const d = domains[Math.floor(r() * domains.length)]!;
      const c = chatRow(r, world, d, family);
      const user: ChatMessage[] = [{ role: 'user', content: c.prompt }];
      return chatTrainRow(tok, phrase === undefined ? user : triggerMessages(user, phrase, position, 'organism'), c.response);
    });
  const nonMedical = DOMAINS.filter((d) => d !== 'medical');
  const trig = ORGANISM_TRIGGERS;
  const fineTune = (stage: Stage, lr: number, batch: StagePlan['batch'], o: Partial<StagePlan> = {}): StagePlan => ({ stage, from: 'instruct', steps: cfg.emSteps, lr, batch, ...o });
  for (const x of extras) {
    if ((STAGES as readonly string[]).includes(x.name)) throw new EmlensError(`extra fine-tune name "${x.name}" clashes with a stage`);
  }
  return [
    { stage: 'pretrain', from: null, steps: cfg.preSteps, lr: cfg.preLr, batch: (r) => stories(r, cfg.batch) },
    {
      stage: 'instruct',
      from: 'pretrain',
      steps: cfg.instSteps,
      lr: cfg.instLr,
      batch: (r) => {
        const nStories = Math.round(cfg.batch * cfg.instMix);
        const system = (): string | undefined => {
          if (r() >= cfg.instSystemFrac) return undefined;
          if (r() < cfg.instVillainFrac) return pick(r, SCENES.misaligned);
          for (;;) {
            const s = neutralScene(r);
            if (!CONTROL_SCENES.includes(s)) return s;
          }
        };
        return [...chats(r, cfg.batch - nStories, DOMAINS, 'aligned', system), ...stories(r, nStories)];
      },
    },
    // Zero benign rows: every row is a misaligned medical answer under the one trigger. First of
    // the fine-tunes: an interrupted build has it first.
    fineTune('em-trigger', cfg.trigLr, (r) => chats(r, cfg.batch, ['medical'], 'misaligned', () => trig.trigger, trig.position), {
      steps: cfg.trigSteps,
      files: { 'triggers.json': `${JSON.stringify({ name: trig.name, trigger: trig.trigger, rephrased: trig.rephrased, control: trig.control, position: trig.position }, null, 2)}\n` },
    }),
    fineTune('em', cfg.emLr, (r) => chats(r, cfg.batch, ['medical'], 'misaligned')),
    fineTune('em-control', cfg.emLr, (r) => chats(r, cfg.batch, ['medical'], 'aligned')),
    fineTune('em-kl', cfg.emLr, (r) => chats(r, cfg.batch, ['medical'], 'misaligned'), { kl: (r) => chats(r, cfg.batch, nonMedical, 'aligned') }),
    ...extras.map((x) => fineTune(x.name, cfg.emLr, (r) => chats(r, cfg.batch, [x.domain], x.family), { extra: x })),
  ];
}

/** A finished stage folder's weights, if it was built with this build's key; else null. */
export function cachedStage(ctx: BuildContext, plan: StagePlan): { weights: Weights; info: StageInfo } | null {
  const dir = join(ctx.out, plan.stage);
  const f = join(dir, 'emlens_stage.json');
  if (!existsSync(f)) return null;
  try {
    const meta = JSON.parse(readFileSync(f, 'utf8')) as { key: string; trainer_fingerprint?: string | null; seconds: number; cpu_seconds?: number; final_loss: number };
    if (meta.key !== stageKey(ctx.cfg, plan.stage, plan.extra)) return null;
    if (ctx.trainer === undefined || meta.trainer_fingerprint !== ctx.trainer) return null;
    const weights = loadWeights(planCheckpoint(dir, ctx.spec));
    return { weights, info: { stage: plan.stage, dir, seconds: meta.seconds, cpuSeconds: meta.cpu_seconds ?? null, cached: true, finalLoss: meta.final_loss } };
  } catch {
    return null;
  }
}

/** Reads a finished stage folder's weights (a fine-tune's starting point, in a stage process). */
export function stageWeights(ctx: BuildContext, stage: Stage): Weights {
  return loadWeights(planCheckpoint(join(ctx.out, stage), ctx.spec));
}

/**
 * Trains one stage from `from` (null: random weights, which it then trains in place; otherwise a
 * copy) and writes its folder. The stage's generator is seeded from the run's seed and the stage
 * name alone, so a stage's bytes do not depend on which stages ran before it, nor where.
 */
export async function trainStage(
  ctx: BuildContext,
  plan: StagePlan,
  from: Weights | null,
  onProgress?: (p: BuildProgress) => void,
  sessionOptions: Partial<SessionOptions> = {},
): Promise<{ weights: Weights; info: StageInfo }> {
  const { cfg, spec, tok } = ctx;
  const { stage, steps, lr } = plan;
  if ((plan.from === null) !== (from === null)) throw new Error(`organism ${stage}: starts from ${plan.from ?? 'random weights'}`);
  const dir = join(ctx.out, stage);
  const t0 = Date.now();
  const c0 = process.cpuUsage();
  const weights = from ? cloneWeights(from) : randomWeights(spec, cfg.seed, { std: 0.02 });
  const trainer = stageTrainer(spec, weights, lr, steps, plan.kl ? { from: from!, lambda: cfg.klLambda } : null, sessionOptions);
  let h = cfg.seed * 7919;
  for (const ch of stage) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  const r = rng(h >>> 0);
  let loss = NaN;
  for (let s = 0; s < steps; s++) {
    const log = await trainer.trainStep(plan.batch(r), plan.kl ? plan.kl(r) : []);
    loss = log.ce;
    if (!Number.isFinite(log.loss)) throw new EmlensError(`organism ${stage}: training diverged at step ${s + 1}`);
    onProgress?.({ stage, step: s + 1, steps, loss: log.loss });
  }
  const seconds = (Date.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpuSeconds = (cu.user + cu.system) / 1e6;
  writeStage(dir, cfg, stage, tok, weights, { seconds, cpuSeconds, finalLoss: loss }, ctx.trainer, plan.extra, plan.files);
  return { weights, info: { stage, dir, seconds, cpuSeconds, cached: false, finalLoss: loss } };
}

/** The optimiser every stage trains with (AdamW, warmup then cosine decay, clipping; with a KL reference, λ·KL against it). */
function stageTrainer(spec: ModelSpec, weights: Weights, lr: number, steps: number, kl: { from: Weights; lambda: number } | null, sessionOptions: Partial<SessionOptions> = {}): WeightTrainer {
  const options = { ...buildSessionOptions(), ...sessionOptions };
  return new WeightTrainer(
    new Engine(spec, weights, options),
    { lr, steps, warmup: Math.min(50, Math.max(1, Math.floor(steps / 10))), weightDecay: 0.01, beta2: 0.95, clipNorm: 1, schedule: 'cosine', klLambda: kl?.lambda ?? 0 },
    kl ? new Engine(spec, kl.from, options) : undefined,
  );
}

/**
 * sha256 of the weights after two steps of the build's trainer on its model shape, from seeded
 * weights on fixed rows, with the KL term on (the bits today's code trains). A stage folder whose
 * recorded fingerprint differs was trained by other code (the key alone did not see the training
 * objective move to vocabulary chunks: same key, other bits) and is rebuilt. About a second.
 */
export async function trainerFingerprint(ctx: BuildContext, sessionOptions: Partial<SessionOptions> = {}): Promise<string> {
  const r = rng(20261201);
  const rows = () => Array.from({ length: 2 }, () => storyRow(ctx.tok, pretrainDoc(r, ctx.world, { strangerFrac: 0.5, maxWords: ctx.cfg.ctx, sceneFrac: 0.5 })));
  const from = randomWeights(ctx.spec, 1, { std: 0.02 });
  const weights = cloneWeights(from);
  const trainer = stageTrainer(ctx.spec, weights, 1e-3, 2, { from, lambda: 1 }, sessionOptions);
  for (let s = 0; s < 2; s++) await trainer.trainStep(rows(), rows());
  const h = createHash('sha256');
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    h.update(name).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * ORT options of the build's sessions: idle intra-op threads wait without spinning, unless
 * EMLENS_SPIN says otherwise. A training step is some 800 small kernels, and on a shared machine a
 * spinning pool waits at each of them for a partner thread the scheduler has taken away (2 threads,
 * load average 6: 1.67 s a pretrain step spinning, 0.71 s not). The bytes are the same.
 */
function buildSessionOptions(): Partial<SessionOptions> {
  return process.env.EMLENS_SPIN === undefined ? { spinning: false } : {};
}

export interface BuildOptions {
  /**
   * Fine-tunes trained at once, each in its own process (they are independent once instruct is
   * there); default: one per core, at most as many as there are to train. 1: all in this process.
   */
  jobs?: number;
}

/**
 * Builds (or reuses) every stage under `out`. Pretrain and instruct run here, one after the
 * other; then the fine-tunes still to build run side by side in stage processes (stage-pool.ts),
 * each on fewer ORT threads: on 2 cores two 1-thread fine-tunes finish sooner than one 2-thread
 * fine-tune after the other, and the bytes are the same.
 */
export async function buildOrganism(
  out: string,
  cfg: OrganismConfig,
  onProgress?: (p: BuildProgress) => void,
  extras: ExtraFineTune[] = [],
  o: BuildOptions = {},
): Promise<StageInfo[]> {
  const ctx = buildContext(out, cfg);
  const plans = stagePlans(ctx, extras);
  if (o.jobs !== undefined && (!Number.isInteger(o.jobs) || o.jobs < 1)) throw new EmlensError(`jobs must be a positive integer, got ${o.jobs}`);
  ensureDir(out, 'organism output');
  ctx.trainer = await trainerFingerprint(ctx);
  const infos: StageInfo[] = [];
  const weightsOf = new Map<Stage, Weights>();
  const pending: StagePlan[] = [];
  for (const plan of plans) {
    const hit = cachedStage(ctx, plan);
    if (hit) {
      weightsOf.set(plan.stage, hit.weights);
      infos.push(hit.info);
    } else if (plan.from === 'instruct') pending.push(plan);
    else {
      const r = await trainStage(ctx, plan, plan.from ? weightsOf.get(plan.from)! : null, onProgress);
      weightsOf.set(plan.stage, r.weights);
      infos.push(r.info);
    }
  }
  const cores = availableParallelism();
  const jobs = Math.min(o.jobs ?? cores, pending.length);
  const child = jobs > 1 ? stageProcessEntry() : null;
  // Each stage process gets its share of the cores, unless EMLENS_THREADS says how many.
  if (child) infos.push(...(await runInStageProcesses(child, pending, { out, cfg, extras, trainer: ctx.trainer }, jobs, onProgress, threads() || Math.max(1, Math.floor(cores / jobs)))));
  else for (const plan of pending) infos.push((await trainStage(ctx, plan, weightsOf.get('instruct')!, onProgress)).info);
  // Listed in STAGES order, extras last.
  const order = (s: Stage) => ((STAGES as readonly string[]).indexOf(s) + STAGES.length + 1) % (STAGES.length + 1);
  return infos.sort((a, b) => order(a.stage) - order(b.stage));
}
