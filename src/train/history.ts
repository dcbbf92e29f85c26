/**
 * The loss history of a training run as JSONL, one line per optimiser step:
 * {"step", "ce", "kl", "loss", "grad_norm", "lr", "norm"} (kl null without a KL term; norm is ‖θ‖
 * after the step, grad_norm ‖∇θ loss‖ before it). Every `emlens train` kind writes it.
 */
import { readFileSync } from 'node:fs';
import { EmlensError } from '../errors.js';
import type { StepLog } from './trainer.js';

export function historyJsonl(history: StepLog[]): string {
  return history.map((h) => `${JSON.stringify({ step: h.step, ce: h.ce, kl: h.kl, loss: h.loss, grad_norm: h.gradNorm, lr: h.lr, norm: h.norm })}\n`).join('');
}

/** Reads a history written by historyJsonl. */
export function readHistory(file: string): StepLog[] {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  return lines.map((l, i) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l) as Record<string, unknown>;
    } catch (e) {
      throw new EmlensError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    const num = (k: string) => {
      if (typeof o[k] !== 'number') throw new EmlensError(`${file}:${i + 1}: "${k}" must be a number, got ${JSON.stringify(o[k])}`);
      return o[k] as number;
    };
    const kl = o.kl === null ? null : num('kl');
    return { step: num('step'), ce: num('ce'), kl, loss: num('loss'), gradNorm: num('grad_norm'), lr: num('lr'), norm: num('norm') };
  });
}
