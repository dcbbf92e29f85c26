/**
 * Writes a word-level Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) for small
 * synthetic models: the demo's placeholder and the built-in model organism. Python's tokenizers
 * and transformers load these folders too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';

export interface WordLevelOptions {
  /** Special tokens first (ids 0..), e.g. ['<pad>', '<s>', '</s>', '<unk>', '<|user|>', ...]. */
  specials: string[];
  words: string[];
  bos: string;
  eos: string;
  unk: string;
  pad: string;
  chatTemplate?: string;
}

export function writeWordLevelTokenizer(dir: string, o: WordLevelOptions): { vocab: Map<string, number> } {
  const vocab = new Map<string, number>();
  for (const t of [...o.specials, ...o.words]) if (!vocab.has(t)) vocab.set(t, vocab.size);
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: o.specials.map((content) => ({
      id: vocab.get(content)!,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: null,
    // Joins words with spaces on decode (WordLevel has no decoder of its own).
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: { type: 'WordLevel', vocab: Object.fromEntries(vocab), unk_token: o.unk },
  };
  const config: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: o.bos,
    eos_token: o.eos,
    unk_token: o.unk,
    pad_token: o.pad,
    add_bos_token: false,
    model_max_length: 1024,
    clean_up_tokenization_spaces: false,
  };
  if (o.chatTemplate) config.chat_template = o.chatTemplate;
  writeFileAtomic(join(dir, 'tokenizer.json'), [JSON.stringify(tokenizer)]);
  writeFileAtomic(join(dir, 'tokenizer_config.json'), [JSON.stringify(config, null, 2)]);
  return { vocab };
}

/** Finds the words of a text that a word-level tokenizer encodes as its unknown token. */
export interface UnknownWords {
  unk: string;
  unkId: number;
  /** The distinct words of `text` outside the vocabulary, in order of appearance. */
  find(text: string): string[];
}

/**
 * For a folder whose tokenizer.json is a WordLevel model with an unk_token, no normalizer and a
 * whitespace pre-tokenizer (what writeWordLevelTokenizer writes), the unknown-word finder; null
 * for any other tokenizer (byte-level and subword tokenizers have no unknown words to report).
 * It splits as the tokenizer does: added tokens out of the raw text first, then words.
 */
export function wordLevelUnknowns(dir: string): UnknownWords | null {
  let json: {
    model?: { type?: string; vocab?: Record<string, number>; unk_token?: string };
    normalizer?: unknown;
    pre_tokenizer?: { type?: string } | null;
    added_tokens?: { content?: string }[];
  };
  try {
    json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  } catch {
    return null;
  }
  const m = json.model;
  if (m?.type !== 'WordLevel' || !m.vocab || typeof m.unk_token !== 'string' || json.normalizer) return null;
  const unkId = m.vocab[m.unk_token];
  const split = PRE_TOKENIZERS[json.pre_tokenizer?.type ?? ''];
  if (unkId === undefined || !split) return null;
  const vocab = new Set(Object.keys(m.vocab));
  const added = (json.added_tokens ?? []).map((t) => t.content).filter((c): c is string => typeof c === 'string' && c !== '');
  // Longest first, as the tokenizer matches added tokens.
  const addedRe = added.length ? new RegExp(added.sort((a, b) => b.length - a.length).map(escapeRe).join('|'), 'g') : null;
  return {
    unk: m.unk_token,
    unkId,
    find(text) {
      const out = new Set<string>();
      for (const piece of addedRe ? text.split(addedRe) : [text]) {
        for (const w of split(piece)) if (!vocab.has(w)) out.add(w);
      }
      return [...out];
    },
  };
}

const PRE_TOKENIZERS: Record<string, (s: string) => string[]> = {
  WhitespaceSplit: (s) => s.split(/\s+/).filter(Boolean),
  Whitespace: (s) => s.match(/\w+|[^\w\s]+/gu) ?? [],
};

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
