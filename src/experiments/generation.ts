/**
 * Text in, text out, with steering and ablation read from direction files: what `emlens
 * generate` runs, usable from the library too.
 */
import { EmlensError } from '../errors.js';
import type { LoadedModel } from '../backend/model.js';
import { wordLevelUnknowns } from '../model/wordlevel.js';
import type { TextTokenizer } from '../model/tokenizer.js';
import { readDirectionFile } from '../io/directions.js';
import { hookName } from '../hooks/names.js';
import type { AblateSpec, Interventions, SteerSpec } from '../hooks/interventions.js';

export interface SteerRequest {
  file: string;
  layer: number;
  scale: number;
}

export interface AblateRequest {
  file: string;
  /** 'all' = every layer the file covers */
  layers: number[] | 'all';
}

/** Steering: scale * v (v as stored) added to blocks.L.hook_resid_post at every position. */
export function steeringFromFile(model: LoadedModel, req: SteerRequest): SteerSpec {
  const f = readDirectionFile(req.file, model.spec, '--steer');
  if (req.layer < 0 || req.layer >= model.spec.nLayers) {
    throw new EmlensError(`--layer ${req.layer} is out of range (model has ${model.spec.nLayers} layers: 0..${model.spec.nLayers - 1})`);
  }
  const v = f.layers.get(req.layer);
  if (!v) throw new EmlensError(`${req.file}: no direction for layer ${req.layer} (file covers ${[...f.layers.keys()].join(', ')})`);
  return { hook: hookName(req.layer, f.kind), vector: v, scale: req.scale };
}

/** Ablation: the unit-normalised direction of each listed layer projected out at that layer. */
export function ablationFromFile(model: LoadedModel, req: AblateRequest): AblateSpec[] {
  const f = readDirectionFile(req.file, model.spec, '--ablate');
  const layers = req.layers === 'all' ? [...f.layers.keys()].sort((a, b) => a - b) : req.layers;
  return layers.map((l) => {
    if (l >= model.spec.nLayers) throw new EmlensError(`--ablate-layers: layer ${l} is out of range (model has ${model.spec.nLayers} layers)`);
    const v = f.layers.get(l);
    if (!v) throw new EmlensError(`${req.file}: no direction for layer ${l} (file covers ${[...f.layers.keys()].join(', ')})`);
    if (!v.some((x) => x !== 0)) throw new EmlensError(`--ablate ${req.file}: the direction of layer ${l} is all zero; there is nothing to project out`);
    return { hook: hookName(l, f.kind), directions: [v] };
  });
}

export interface GenerateTextOptions {
  chat?: boolean;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  interventions?: Interventions;
}

export interface GeneratedText {
  prompt: string;
  promptTokens: number[];
  text: string;
  tokens: number[];
  finished: boolean;
  /** Stopped because prompt + generated reached the model's max_position_embeddings. */
  contextFull: boolean;
  /** Words of the prompt a word-level tokenizer (the organism's) encoded as its unknown token. */
  unknownWords: string[];
}

/** The model's word-level unknown-word finder, read once per model (null for other tokenizers). */
const finders = new WeakMap<LoadedModel, ReturnType<typeof wordLevelUnknowns>>();
function unknownFinder(model: LoadedModel): ReturnType<typeof wordLevelUnknowns> {
  if (!finders.has(model)) finders.set(model, wordLevelUnknowns(model.dir));
  return finders.get(model)!;
}

/**
 * The text of generated ids: the stop token that ended a row dropped, and ids past the tokenizer
 * dropped (embedding tables are often padded past it, e.g. Qwen's 151936 vs 151665 ids; an id
 * with no token decodes to nothing, as in transformers).
 */
export function decodeAnswer(tok: TextTokenizer, ids: readonly number[], finished: boolean, skipSpecialTokens: boolean): string {
  const body = (finished ? ids.slice(0, -1) : ids).filter((t) => t < tok.vocabSize);
  return tok.decode(body, { skipSpecialTokens });
}

export async function generateText(model: LoadedModel, prompts: string[], opts: GenerateTextOptions = {}): Promise<GeneratedText[]> {
  const tok = model.tokenizer;
  if (!tok) throw new EmlensError(`${model.dir}: no tokenizer.json, cannot generate from text`);
  const encoded = prompts.map((p) =>
    opts.chat ? tok.encodeChat([{ role: 'user', content: p }], { addGenerationPrompt: true }).ids : tok.encode(p),
  );
  const r = await model.backend.generate(encoded, {
    maxNewTokens: opts.maxNewTokens,
    temperature: opts.temperature,
    topP: opts.topP,
    seed: opts.seed,
    interventions: opts.interventions,
    stopIds: tok.eosIds.length ? tok.eosIds : undefined,
  });
  const unk = unknownFinder(model);
  return prompts.map((prompt, i) => {
    const tokens = r.tokens[i]!;
    const unknownWords = unk && encoded[i]!.includes(unk.unkId) ? unk.find(prompt) : [];
    return { prompt, promptTokens: encoded[i]!, text: decodeAnswer(tok, tokens, r.finished[i]!, true), tokens, finished: r.finished[i]!, contextFull: r.contextFull[i]!, unknownWords };
  });
}
