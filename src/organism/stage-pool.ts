/**
 * Trains organism fine-tunes side by side, each in a stage process (stage-child.ts) with one
 * share of the cores as ORT threads. A stage process rebuilds the stage's recipe from the config
 * (build.ts stagePlans), reads its starting weights from the folder the build wrote, trains and
 * writes its stage folder exactly as the build's own process would, and reports progress and the
 * stage's figures back over IPC. A stage process takes the next stage when it finishes one.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmlensError } from '../errors.js';
import type { BuildProgress, ExtraFineTune, OrganismConfig, StageInfo, StagePlan } from './build.js';

/** Parent → stage process. */
export interface StageTask {
  type: 'stage';
  out: string;
  cfg: OrganismConfig;
  extras: ExtraFineTune[];
  /** The build's trainerFingerprint(), recorded in each stage folder (absent: recorded as null). */
  trainer?: string;
  stage: string;
  threads: number;
}

/** Stage process → parent. */
export type StageReply =
  | { type: 'progress'; progress: BuildProgress }
  | { type: 'done'; info: StageInfo }
  | { type: 'error'; message: string; user: boolean };

/**
 * The stage process's script: the compiled stage-child.js beside this module. Null when this
 * module runs from its TypeScript source (the test runner), where there is none: the build then
 * trains its fine-tunes in its own process, one after the other (the same bytes).
 */
export function stageProcessEntry(): string | null {
  const file = fileURLToPath(new URL('./stage-child.js', import.meta.url));
  return import.meta.url.endsWith('.js') && existsSync(file) ? file : null;
}

/**
 * Runs `plans` in `jobs` stage processes of `threads` intra-op threads each (default: the cores
 * shared out), in the plans' order; resolves with their StageInfo once all are done. The first
 * failure stops every stage process and rejects with the stage's message.
 */
export function runInStageProcesses(
  entry: string,
  plans: StagePlan[],
  build: { out: string; cfg: OrganismConfig; extras: ExtraFineTune[]; trainer?: string },
  jobs: number,
  onProgress?: (p: BuildProgress) => void,
  threads = 1,
): Promise<StageInfo[]> {
  const queue = plans.map((p) => p.stage);
  const infos: StageInfo[] = [];
  const children: ChildProcess[] = [];
  return new Promise((resolve, reject) => {
    let failed = false;
    const fail = (e: Error) => {
      if (failed) return;
      failed = true;
      for (const c of children) c.kill();
      reject(e);
    };
    const next = (child: ChildProcess, running: { stage: string | null }) => {
      const stage = queue.shift();
      running.stage = stage ?? null;
      if (stage === undefined) {
        child.disconnect();
        if (infos.length === plans.length) resolve(infos);
        return;
      }
      const task: StageTask = { type: 'stage', ...build, stage, threads };
      child.send(task);
    };
    for (let j = 0; j < jobs; j++) {
      // No execArgv: the parent's (a test runner's loader, --inspect) are not the stage's.
      const child = fork(entry, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      const running: { stage: string | null } = { stage: null };
      child.on('message', (m: StageReply) => {
        if (failed) return;
        if (m.type === 'progress') {
          try {
            onProgress?.(m.progress);
          } catch (e) {
            fail(e as Error);
          }
        } else if (m.type === 'done') {
          infos.push(m.info);
          next(child, running);
        } else fail(m.user ? new EmlensError(m.message) : new Error(m.message));
      });
      child.on('error', (e) => fail(new Error(`organism: a stage process failed: ${e.message}`)));
      child.on('exit', (code, signal) => {
        if (running.stage !== null) fail(new Error(`organism ${running.stage}: its stage process ended (${signal ?? `exit code ${code}`}) before the stage was written`));
      });
      next(child, running);
    }
  });
}
