/**
 * The bench's text rows: words "w0".."w1999" under a word-level tokenizer (4 specials first, no
 * BOS), so a row of ROW_TOKENS words is exactly ROW_TOKENS tokens. Shared by the extraction
 * sections (in memory and memory-bounded).
 */
import type { DataRow } from '../src/data/rows.js';
import { writeWordLevelTokenizer } from '../src/model/wordlevel.js';
import { randomIds } from './util.js';

/** Words of the bench tokenizer (ids 4 .. 4 + WORDS - 1, after 4 specials). */
export const WORDS = 2000;
export const ROW_TOKENS = 128;

export function writeBenchTokenizer(dir: string): void {
  writeWordLevelTokenizer(dir, {
    specials: ['<pad>', '<s>', '</s>', '<unk>'],
    words: Array.from({ length: WORDS }, (_, i) => `w${i}`),
    bos: '<s>',
    eos: '</s>',
    unk: '<unk>',
    pad: '<pad>',
  });
}

/** Text rows of exactly ROW_TOKENS words (= tokens with the bench tokenizer). */
export function textRows(n: number, seed = 1): DataRow[] {
  return randomIds(n, ROW_TOKENS, WORDS, seed).map((ids, i) => ({ kind: 'text', text: ids.map((w) => `w${w}`).join(' '), labels: {}, line: i + 1 }));
}
