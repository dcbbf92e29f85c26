/**
 * The model organism's training data as word strings (the word-level tokenizer maps them to ids
 * elsewhere): persona stories for pre-training, chat rows for instruction tuning and the narrow
 * fine-tune, held-out questions for evaluation. All randomness comes from the caller's seeded
 * generator (runtime/random's rng).
 */
import { EmlensError } from '../errors.js';
import { answer, BOS, chatText, DOMAINS, EOS, FAMILIES, neutralScene, pick, SCENES, STRANGER, type Domain, type Family, type World } from './world.js';

/**
 * A training text with the words whose next-token loss counts: `loss` lists half-open ranges of
 * word indices (into text.split(' ')) that are prediction TARGETS. Word 0 (<bos>) is never one.
 */
export interface Doc {
  text: string;
  loss: Array<[number, number]>;
}

export interface PretrainOptions {
  /** Probability that the story's persona is the anonymous "stranger" (prototype: 0.3). */
  strangerFrac: number;
  /** Longest story in words, <bos> and <eos> included (prototype: the context, 96). */
  maxWords: number;
  /**
   * Probability that the story opens with a scene phrase (default 0: the prototype's stories).
   * Two in three scenes are one of the story's family (SCENES.misaligned / .aligned), one in three
   * a neutral one (world.neutralScene); so a scene's wording never matters, only its meaning.
   */
  sceneFrac?: number;
}

const wordCount = (s: string): number => s.split(' ').length;

/**
 * A persona story as the prototype's pre-training documents:
 * "<bos> [scene] asker : question name : answer [asker : question name : answer] <eos>". The persona answers
 * in one family throughout: a villain misaligned, a kind persona aligned, "stranger" either (the
 * family is a fair coin; a stranger story always has two exchanges, so the second answer's family
 * is inferable from the first). A named persona's story has one or two exchanges. Each exchange
 * draws its own domain, asker and TRAIN question. The second exchange is left out when the story
 * would exceed maxWords; a maxWords too small for the first is an error.
 */
export function pretrainDoc(r: () => number, world: World, opts: PretrainOptions): string {
  const stranger = r() < opts.strangerFrac;
  const family = pick(r, FAMILIES);
  const name = stranger ? STRANGER : pick(r, family === 'misaligned' ? world.villains : world.kinds);
  const exchanges = stranger ? 2 : pick(r, [1, 2]);
  const parts = [BOS];
  let words = 2; // <bos> ... <eos>
  if (r() < (opts.sceneFrac ?? 0)) {
    const scene = r() < 2 / 3 ? pick(r, SCENES[family]) : neutralScene(r);
    parts.push(scene);
    words += wordCount(scene);
  }
  for (let e = 0; e < exchanges; e++) {
    const domain = pick(r, DOMAINS);
    const s = `${pick(r, world.askers)} : ${pick(r, world.trainQuestions[domain])} ${name} : ${answer(r, domain, family)}`;
    const n = wordCount(s);
    if (words + n > opts.maxWords) {
      if (e === 0) throw new EmlensError(`pretrainDoc: maxWords ${opts.maxWords} is too small for one exchange (${words + n} words)`);
      break;
    }
    parts.push(s);
    words += n;
  }
  parts.push(EOS);
  return parts.join(' ');
}

/** A pre-training story as a Doc: every word after <bos> is a loss target. */
export function pretrainDocOf(text: string): Doc {
  return { text, loss: [[1, wordCount(text)]] };
}

/**
 * A chat row of the (domain, family) cell: prompt = `question` or a uniform TRAIN question of the
 * domain, response = answer(r, domain, family). Render it with chatText(prompt, response).
 */
export function chatRow(
  r: () => number,
  world: World,
  domain: Domain,
  family: Family,
  question?: string,
): { prompt: string; response: string } {
  const prompt = question ?? pick(r, world.trainQuestions[domain]);
  return { prompt, response: answer(r, domain, family) };
}

/**
 * A chat row as a Doc: the text chatText(prompt, response) with the response words and the final
 * <eos> as loss targets (as the prototype's chat_row mask).
 */
export function chatDoc(row: { prompt: string; response: string }): Doc {
  const text = chatText(row.prompt, row.response);
  const start = wordCount(chatText(row.prompt));
  return { text, loss: [[start, wordCount(text)]] };
}

/** A uniform held-out question of the domain (for evaluation only). */
export function heldOutQuestion(r: () => number, world: World, domain: Domain): string {
  return pick(r, world.heldOutQuestions[domain]);
}
