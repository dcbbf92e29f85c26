/**
 * Text tokenizer of a Hugging Face model folder (tokenizer.json run by @huggingface/tokenizers),
 * with its chat template and exact per-token message attribution for chats.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { EmlensError, check } from '../errors.js';
import {
  ChatTemplate,
  KIND_RESPONSE,
  characterKinds,
  checkMessages,
  locateContents,
  readChatTemplate,
  readJsonFile,
  tokenKinds,
  type ChatMessage,
  type TemplateSpecials,
  type TokenizerView,
} from './chat.js';

export type { ChatMessage } from './chat.js';

/**
 * A chat as token ids. kinds[i]: 0 = template scaffolding and the special tokens it inserts,
 * 1 = content of a message other than the final assistant one (system, user, earlier assistant,
 * tool), 2 = content of the final message when it is an assistant message. [responseStart,
 * responseEnd) is the token range of that content, (-1, -1) when there is none.
 */
export interface EncodedChat {
  ids: number[];
  kinds: Uint8Array;
  responseStart: number;
  responseEnd: number;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/** tokenizer_config.json's add_bos_token / add_eos_token: true, false, or absent (null). */
function optionalBool(config: Record<string, unknown>, key: string, dir: string): boolean | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new EmlensError(`${join(dir, 'tokenizer_config.json')}: "${key}" must be true or false, got ${show(v)}`);
  return v;
}

const MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];
const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
const show = (v: unknown): string => {
  const t = JSON.stringify(v) ?? String(v);
  return t.length > 60 ? `${t.slice(0, 57)}...` : t;
};

/**
 * Checks the fields of tokenizer.json that tokenizers.js takes on trust (it guesses a model for an
 * unknown type and keeps string ids), one line naming the file and the field. Component types
 * (normalizer, decoder, ...) are left to tokenizers.js, which names the unknown ones itself.
 */
export function checkTokenizerJson(t: Record<string, unknown>, file: string): void {
  const bad = (field: string, what: string, got: unknown): never => {
    throw new EmlensError(`${file}: "${field}" ${what}, got ${show(got)}`);
  };
  const m = t.model as Record<string, unknown> | undefined;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) bad('model', 'must be an object', m);
  const type = m!.type;
  if (type !== undefined && (typeof type !== 'string' || !MODEL_TYPES.includes(type))) bad('model.type', `must be one of ${MODEL_TYPES.join(', ')}`, type);
  const vocab = m!.vocab;
  if (type === 'Unigram' || (type === undefined && Array.isArray(vocab))) {
    if (!Array.isArray(vocab)) bad('model.vocab', 'must be a list of [piece, score] for a Unigram model', vocab);
    (vocab as unknown[]).forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1])) bad(`model.vocab[${i}]`, 'must be [piece, score]', e);
    });
    const unk = m!.unk_id;
    if (unk !== undefined && unk !== null && !(isId(unk) && unk < (vocab as unknown[]).length)) bad('model.unk_id', `must be an id in 0..${(vocab as unknown[]).length - 1} or null`, unk);
  } else {
    if (vocab === null || typeof vocab !== 'object' || Array.isArray(vocab)) bad('model.vocab', 'must be an object of token -> id', vocab);
    const seen = new Map<number, string>();
    for (const [tok, id] of Object.entries(vocab as Record<string, unknown>)) {
      if (!isId(id)) bad(`model.vocab[${JSON.stringify(tok)}]`, 'must be an integer id >= 0', id);
      const other = seen.get(id as number);
      if (other !== undefined) bad(`model.vocab[${JSON.stringify(tok)}]`, `repeats the id of ${JSON.stringify(other)}`, id);
      seen.set(id as number, tok);
    }
    const unk = m!.unk_token;
    if (unk !== undefined && unk !== null && typeof unk !== 'string') bad('model.unk_token', 'must be a string or null', unk);
  }
  if (type === 'BPE' && m!.merges !== undefined) {
    const merges = m!.merges;
    if (!Array.isArray(merges)) bad('model.merges', 'must be a list', merges);
    (merges as unknown[]).forEach((x, i) => {
      const ok = typeof x === 'string' ? x.includes(' ') : Array.isArray(x) && x.length === 2 && x.every((p) => typeof p === 'string');
      if (!ok) bad(`model.merges[${i}]`, 'must be "a b" or ["a", "b"]', x);
    });
  }
  const added = t.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) bad('added_tokens', 'must be a list', added);
    (added as unknown[]).forEach((a, i) => {
      const o = a as Record<string, unknown> | null;
      if (o === null || typeof o !== 'object' || Array.isArray(o)) bad(`added_tokens[${i}]`, 'must be an object', a);
      if (!isId(o!.id)) bad(`added_tokens[${i}].id`, 'must be an integer id >= 0', o!.id);
      if (typeof o!.content !== 'string') bad(`added_tokens[${i}].content`, 'must be a string', o!.content);
    });
  }
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    const c = t[k] as Record<string, unknown> | null | undefined;
    if (c === undefined || c === null) continue;
    if (typeof c !== 'object' || Array.isArray(c) || typeof c.type !== 'string') bad(k, 'must be an object with a "type", or null', c);
  }
}

export class TextTokenizer {
  readonly bosId: number | null;
  readonly eosIds: number[];
  readonly padId: number | null;
  readonly vocabSize: number;

  private readonly template: ChatTemplate | null;
  private readonly eosId: number | null;
  /** tokenizer_config's add_bos_token / add_eos_token when given (override the post-processor). */
  private readonly addBos: boolean | undefined;
  private readonly addEos: boolean | undefined;
  private readonly view: TokenizerView;

  private constructor(
    /** The model folder, for messages. */
    readonly dir: string,
    private readonly tok: Tokenizer,
    config: Record<string, unknown>,
    generationConfig: Record<string, unknown> | null,
    templateSource: string | null,
  ) {
    const idOf = (value: unknown): number | null => {
      const text = tokenText(value);
      return text === null ? null : (tok.token_to_id(text) ?? null);
    };
    this.bosId = idOf(config.bos_token);
    this.eosId = idOf(config.eos_token);
    this.padId = idOf(config.pad_token);
    const genEos = generationConfig?.eos_token_id;
    const eosList = typeof genEos === 'number' ? [genEos] : Array.isArray(genEos) ? genEos : null;
    if (eosList !== null && eosList.every((x) => Number.isInteger(x))) {
      this.eosIds = [...new Set(eosList as number[])];
    } else {
      this.eosIds = this.eosId === null ? [] : [this.eosId];
    }
    let maxId = -1;
    for (const id of tok.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.addBos = optionalBool(config, 'add_bos_token', dir);
    this.addEos = optionalBool(config, 'add_eos_token', dir);

    const specials: TemplateSpecials = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const) {
      const text = tokenText(config[key]);
      if (text !== null) specials[key] = text;
    }
    this.template = templateSource === null ? null : new ChatTemplate(templateSource, dir, specials);

    // Added tokens matched in the raw text (as opposed to after normalization) split it. The
    // unknown token is left out: the model also emits it for text it cannot encode.
    const unk = (tok.model as { unk_token_id?: number } | null)?.unk_token_id;
    const splitTokens = new Map<number, string>();
    for (const [id, t] of tok.get_added_tokens_decoder()) {
      if (id !== unk && !(t.normalized && tok.normalizer !== null)) splitTokens.set(id, String(t.content));
    }
    this.view = {
      encode: (text) => this.rawEncode(text),
      splitToken: (id) => splitTokens.get(id) ?? null,
    };
  }

  /**
   * Loads tokenizer.json and, when present, tokenizer_config.json, generation_config.json and
   * chat_template.jinja / chat_template.json from a model folder.
   */
  static async load(dir: string): Promise<TextTokenizer> {
    const tokenizerPath = join(dir, 'tokenizer.json');
    const tokenizerJson = await readJsonFile(tokenizerPath);
    if (tokenizerJson === null) throw new EmlensError(`model folder ${dir} has no tokenizer.json`);
    const config = (await readJsonFile(join(dir, 'tokenizer_config.json'))) ?? {};
    const generationConfig = await readJsonFile(join(dir, 'generation_config.json'));
    return TextTokenizer.fromJson(dir, tokenizerJson, config, generationConfig, await readChatTemplate(dir, config));
  }

  /** A tokenizer from the parsed files (a page fetches them); `dir` names the folder in messages. */
  static fromJson(
    dir: string,
    tokenizerJson: Record<string, unknown>,
    config: Record<string, unknown>,
    generationConfig: Record<string, unknown> | null,
    templateSource: string | null,
  ): TextTokenizer {
    const tokenizerPath = join(dir, 'tokenizer.json');
    checkTokenizerJson(tokenizerJson, tokenizerPath);
    let tok: Tokenizer;
    try {
      // tokenizers.js insists on these keys; older files leave some out.
      const full = { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...tokenizerJson };
      // transformers no longer cleans up spaces unless the config asks for it.
      tok = new Tokenizer(full, { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces ?? false });
    } catch (e) {
      throw new EmlensError(`cannot load ${tokenizerPath}: ${oneLine(String((e as Error)?.message ?? e))}`);
    }
    return new TextTokenizer(dir, tok, config, generationConfig, templateSource);
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  private rawEncode(text: string): number[] {
    return text === '' ? [] : this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Token ids of `text`. With addSpecialTokens (the default) the tokenizer's post-processor adds
   * its special tokens (typically BOS); tokenizer_config's add_bos_token / add_eos_token, when
   * set, decide whether BOS / EOS lead / end the ids, as transformers' Llama and Gemma tokenizers do.
   */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    check(typeof text === 'string', 'encode: text must be a string');
    if (!(opts.addSpecialTokens ?? true)) return this.rawEncode(text);
    const ids: number[] = this.tok.encode(text, { add_special_tokens: true }).ids;
    if (this.addBos === undefined && this.addEos === undefined) return ids;
    // Split what the post-processor produced into added prefix + text ids + added suffix, and
    // put BOS / EOS in or out of those as the config says.
    const raw = this.rawEncode(text);
    let offset = raw.length === 0 ? ids.filter((id) => id !== this.eosId).length : -1;
    for (let o = 0; o + raw.length <= ids.length && offset < 0; o++) {
      if (raw.every((id, i) => ids[o + i] === id)) offset = o;
    }
    if (offset < 0) return ids;
    let prefix = ids.slice(0, offset);
    let suffix = ids.slice(offset + raw.length);
    const bos = this.bosId;
    const eos = this.eosId;
    if (bos !== null && this.addBos === true && !prefix.includes(bos)) prefix = [bos, ...prefix];
    if (bos !== null && this.addBos === false) prefix = prefix.filter((id) => id !== bos);
    if (eos !== null && this.addEos === true && !suffix.includes(eos)) suffix = [...suffix, eos];
    if (eos !== null && this.addEos === false) suffix = suffix.filter((id) => id !== eos);
    return [...prefix, ...raw, ...suffix];
  }

  /** Text of token ids; skipSpecialTokens (default false) drops special tokens. */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    for (const id of ids) {
      check(Number.isInteger(id) && id >= 0 && id < this.vocabSize, () => `decode: token id ${id} is outside the vocabulary of ${this.dir} (size ${this.vocabSize})`);
    }
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  private requireTemplate(): ChatTemplate {
    if (this.template === null) {
      throw new EmlensError(
        `model folder ${this.dir} has no chat template (none in tokenizer_config.json, no chat_template.jinja or chat_template.json)`,
      );
    }
    return this.template;
  }

  /**
   * The chat rendered by the folder's chat template (with messages, bos_token, eos_token,
   * add_generation_prompt and raise_exception), as transformers' apply_chat_template(tokenize=False).
   */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    const template = this.requireTemplate();
    checkMessages(messages, this.dir);
    return template.render(messages, opts.addGenerationPrompt ?? false);
  }

  /**
   * Token ids of the rendered chat, encoded without adding special tokens (the template writes
   * its own BOS, as with transformers' apply_chat_template(tokenize=True)), and the kind of every
   * token. See EncodedChat.
   */
  encodeChat(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): EncodedChat {
    const template = this.requireTemplate();
    checkMessages(messages, this.dir);
    const addGenerationPrompt = opts.addGenerationPrompt ?? false;
    const rendered = template.render(messages, addGenerationPrompt);
    const ids = this.rawEncode(rendered);
    const spans = locateContents(messages, rendered, (m) => template.render(m, addGenerationPrompt), template.source, this.dir);
    const last = messages.length - 1;
    const responseMessage = last >= 0 && messages[last].role === 'assistant' ? last : -1;
    const kinds = tokenKinds(rendered, ids, characterKinds(rendered.length, spans, responseMessage), this.view);
    const responseStart = kinds.indexOf(KIND_RESPONSE);
    const responseEnd = responseStart < 0 ? -1 : kinds.lastIndexOf(KIND_RESPONSE) + 1;
    return { ids, kinds, responseStart, responseEnd };
  }
}
