/** --judge SPEC -> a Judge: "openai:MODEL", "local:MODEL" (id or folder), "organism". */
import { EmlensError } from '../../errors.js';
import type { Judge } from '../judge.js';
import { LocalJudge, type LocalJudgeOptions } from './local.js';
import { OpenAIJudge, type OpenAIJudgeOptions } from './openai.js';
import { OrganismJudge } from './organism.js';
import type { LoadOptions } from '../../backend/model.js';

export interface OpenJudgeOptions {
  openai?: Omit<OpenAIJudgeOptions, 'model'>;
  local?: LocalJudgeOptions & { load?: LoadOptions };
}

export type JudgeSpec = { kind: 'openai'; model: string } | { kind: 'local'; model: string } | { kind: 'organism' };

export function parseJudgeSpec(spec: string): JudgeSpec {
  if (spec === 'organism') return { kind: 'organism' };
  const m = /^(openai|local):(.+)$/.exec(spec);
  if (!m || m[2]!.trim() === '') throw new EmlensError(`--judge: "${spec}" is not a judge (openai:MODEL, local:MODEL or organism)`);
  return { kind: m[1] as 'openai' | 'local', model: m[2]! };
}

export async function openJudge(spec: string, opts: OpenJudgeOptions = {}): Promise<Judge> {
  const s = parseJudgeSpec(spec);
  if (s.kind === 'organism') return new OrganismJudge();
  if (s.kind === 'openai') return new OpenAIJudge({ ...opts.openai, model: s.model });
  return LocalJudge.open(s.model, opts.local);
}
