/**
 * A stage process of the organism build (stage-pool.ts): trains the fine-tunes it is sent, one at
 * a time, and exits when the build lets go of it.
 */
import { EmlensError } from '../errors.js';
import { buildContext, stagePlans, stageWeights, trainStage } from './build.js';
import type { StageReply, StageTask } from './stage-pool.js';

const reply = (m: StageReply) => process.send!(m);

process.on('message', (task: StageTask) => {
  void (async () => {
    try {
      const ctx = { ...buildContext(task.out, task.cfg), trainer: task.trainer };
      const plan = stagePlans(ctx, task.extras).find((p) => p.stage === task.stage);
      if (!plan || plan.from === null) throw new Error(`organism: "${task.stage}" is not a fine-tune of this build`);
      const { info } = await trainStage(ctx, plan, stageWeights(ctx, plan.from), (progress) => reply({ type: 'progress', progress }), { intraOpThreads: task.threads });
      reply({ type: 'done', info });
    } catch (e) {
      reply({ type: 'error', message: e instanceof Error ? e.message : String(e), user: e instanceof EmlensError });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
