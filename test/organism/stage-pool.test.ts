/**
 * The organism's fine-tunes trained side by side in stage processes (the compiled build, as the
 * CLI and the demo run it) write the very bytes that one process training them one after the other
 * writes; a stage trains to the same bytes at any ORT thread count, so the build's bytes do not
 * depend on the machine's cores; a stage process that fails stops the build with its one line.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildContext, buildOrganism, DEFAULT_ORGANISM, stagePlans, trainerFingerprint, trainStage, type ExtraFineTune, type OrganismConfig, type StageInfo } from '../../src/organism/build.js';
import { runInStageProcesses, stageProcessEntry } from '../../src/organism/stage-pool.js';

// The compiled modules (npx tsc): only they have a stage-child.js to start.
const DIST = resolve(__dirname, '../../dist/organism');
type Build = typeof import('../../src/organism/build.js');
type Pool = typeof import('../../src/organism/stage-pool.js');

const TINY: OrganismConfig = { ...DEFAULT_ORGANISM, seed: 4, d: 32, layers: 1, heads: 2, preSteps: 4, instSteps: 3, emSteps: 3, trigSteps: 2, batch: 8 };
const EXTRAS: ExtraFineTune[] = [{ name: 'em-finance', domain: 'finance', family: 'misaligned' }];
const FINE_TUNES = ['em-trigger', 'em', 'em-control', 'em-kl', 'em-finance'];
const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `emlens-org-${tag}-`));
const files = (dir: string, stage: string) => {
  const d = join(dir, stage);
  return Object.fromEntries(readdirSync(d).filter((f) => f !== 'emlens_stage.json').map((f) => [f, readFileSync(join(d, f)).toString('base64')]));
};
const key = (dir: string, stage: string) => (JSON.parse(readFileSync(join(dir, stage, 'emlens_stage.json'), 'utf8')) as { key: string }).key;

describe('fine-tunes in stage processes', () => {
  let one: string;
  let build: Build;
  let pool: Pool;
  beforeAll(async () => {
    one = tmp('one');
    // jobs 1: every stage in this process, one after the other (what the build did before).
    await buildOrganism(one, TINY, undefined, EXTRAS, { jobs: 1 });
    build = (await import(join(DIST, 'build.js'))) as Build;
    pool = (await import(join(DIST, 'stage-pool.js'))) as Pool;
  }, 300_000);

  it('the sources have no stage process to start; the compiled build does', () => {
    expect(stageProcessEntry()).toBeNull();
    expect(pool.stageProcessEntry()).toBe(join(DIST, 'stage-child.js'));
  });

  it('write the bytes one process writes, and report every step of every stage', async () => {
    const two = tmp('two');
    for (const s of ['pretrain', 'instruct']) cpSync(join(one, s), join(two, s), { recursive: true });
    const plans = build.stagePlans(build.buildContext(two, TINY), EXTRAS).filter((p) => p.from === 'instruct');
    expect(plans.map((p) => p.stage)).toEqual(FINE_TUNES);
    const steps = new Map<string, number[]>();
    const infos = await pool.runInStageProcesses(pool.stageProcessEntry()!, plans, { out: two, cfg: TINY, extras: EXTRAS }, 2, (p) => {
      // em-trigger trains its own trigSteps; every other fine-tune emSteps.
      expect(p.steps, p.stage).toBe(p.stage === 'em-trigger' ? TINY.trigSteps : TINY.emSteps);
      steps.set(p.stage, [...(steps.get(p.stage) ?? []), p.step]);
    });
    expect(infos.map((i) => i.stage).sort()).toEqual([...FINE_TUNES].sort());
    for (const s of FINE_TUNES) {
      expect(steps.get(s), s).toEqual(s === 'em-trigger' ? [1, 2] : [1, 2, 3]);
      expect(files(two, s), s).toEqual(files(one, s));
      expect(key(two, s), s).toBe(key(one, s));
    }
    expect(Object.keys(files(two, 'em-trigger'))).toContain('triggers.json');
    for (const i of infos) {
      expect(i.cached).toBe(false);
      expect(i.cpuSeconds).toBeGreaterThan(0);
    }
  }, 300_000);

  it('the whole compiled build, fine-tunes side by side, is the bytes of one process; a second run reuses every stage', async () => {
    const dir = tmp('dist');
    const infos: StageInfo[] = await build.buildOrganism(dir, TINY, undefined, EXTRAS, { jobs: 2 });
    expect(infos.map((i) => i.stage)).toEqual(['pretrain', 'instruct', 'em', 'em-control', 'em-kl', 'em-trigger', 'em-finance']);
    for (const i of infos) expect(files(dir, i.stage), i.stage).toEqual(files(one, i.stage));
    expect((await build.buildOrganism(dir, TINY, undefined, EXTRAS, { jobs: 2 })).every((i) => i.cached)).toBe(true);
  }, 300_000);

  const rebuilt = async (change: Partial<OrganismConfig>, edit?: (dir: string) => void) => {
    const dir = tmp('key');
    cpSync(one, dir, { recursive: true });
    edit?.(dir);
    const infos = await buildOrganism(dir, { ...TINY, ...change }, undefined, EXTRAS, { jobs: 1 });
    return infos.filter((i) => !i.cached).map((i) => i.stage).sort();
  };

  it('a config field rebuilds the stage that reads it and every stage built from that one, nothing else', async () => {
    expect(await rebuilt({})).toEqual([]);
    // Instruct's data: instruct and every fine-tune of it (they start from its weights), not pretrain.
    expect(await rebuilt({ instVillainFrac: 0.9 })).toEqual(['instruct', ...FINE_TUNES].sort());
    expect(await rebuilt({ klLambda: 3 })).toEqual(['em-kl']);
    expect(await rebuilt({ strangerFrac: 0.1 })).toEqual(['pretrain', 'instruct', ...FINE_TUNES].sort());
  }, 300_000);

  it('every stage records the trainer fingerprint; a stage another trainer built is rebuilt (same key, other bits)', async () => {
    const fp = await trainerFingerprint(buildContext(one, TINY));
    expect(fp).toMatch(/^[0-9a-f]{16}$/);
    for (const s of ['pretrain', 'instruct', ...FINE_TUNES]) expect(JSON.parse(readFileSync(join(one, s, 'emlens_stage.json'), 'utf8')).trainer_fingerprint, s).toBe(fp);
    // The same bits on any ORT thread count (else every machine would rebuild every time); another shape, other bits.
    expect(await trainerFingerprint(buildContext(one, TINY), { intraOpThreads: 1 })).toBe(fp);
    expect(await trainerFingerprint(buildContext(one, TINY), { intraOpThreads: 3 })).toBe(fp);
    expect(await trainerFingerprint(buildContext(one, { ...TINY, d: 16 }))).not.toBe(fp);
    const forged = (stage: string, value: string | null) => (dir: string) => {
      const f = join(dir, stage, 'emlens_stage.json');
      writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), trainer_fingerprint: value }));
    };
    expect(await rebuilt({}, forged('em', '0123456789abcdef'))).toEqual(['em']);
    expect(await rebuilt({}, forged('em-trigger', null))).toEqual(['em-trigger']);
  }, 300_000);

  it('a stage process that fails stops the build with its one line', async () => {
    const bare = tmp('bare'); // no instruct/ to start from
    const plans = build.stagePlans(build.buildContext(bare, TINY), EXTRAS).filter((p) => p.from === 'instruct');
    const run = pool.runInStageProcesses(pool.stageProcessEntry()!, plans, { out: bare, cfg: TINY, extras: EXTRAS }, 2);
    await expect(run).rejects.toThrow(`${join(bare, 'instruct')}: no model.safetensors`);
    await expect(run).rejects.toHaveProperty('name', 'EmlensError');
    for (const s of FINE_TUNES) expect(existsSync(join(bare, s)), s).toBe(false);
  }, 120_000);
});

describe('ORT threads', () => {
  it('a stage trains to the same bytes on 1, 2 and 3 intra-op threads, spinning or not (the full-size model)', async () => {
    const cfg: OrganismConfig = { ...DEFAULT_ORGANISM, seed: 0, preSteps: 3, emSteps: 2, trigSteps: 2 };
    const runs = [{ intraOpThreads: 1 }, { intraOpThreads: 2 }, { intraOpThreads: 3 }, { intraOpThreads: 2, spinning: true }];
    const bytes: Record<string, string[]> = { pretrain: [], 'em-kl': [] };
    for (const [i, options] of runs.entries()) {
      const ctx = buildContext(tmp(`threads${i}`), cfg);
      const plans = stagePlans(ctx);
      const pre = await trainStage(ctx, plans.find((p) => p.stage === 'pretrain')!, null, undefined, options);
      // em-kl (CE + KL against a frozen reference) from the pretrained weights.
      await trainStage(ctx, plans.find((p) => p.stage === 'em-kl')!, pre.weights, undefined, options);
      for (const s of ['pretrain', 'em-kl']) bytes[s]!.push(readFileSync(join(ctx.out, s, 'model.safetensors')).toString('base64'));
    }
    for (const s of ['pretrain', 'em-kl']) runs.forEach((o, i) => expect(bytes[s]![i] === bytes[s]![0], `${s}: ${JSON.stringify(o)}`).toBe(true));
  }, 300_000);
});
