/**
 * Two extractions into one --out: the second is refused with one line naming the folder and the
 * first run's pid while the first runs (even with --overwrite), and the first finishes with its
 * own rows only. Real processes: the first run is paused with SIGSTOP while it holds the lock, so
 * the second one meets it mid-run whatever the machine's speed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lockFolder, LOCK_FILE } from '../../src/activations/lock.js';
import { writeTinyCheckpoint } from '../helpers/tiny-checkpoints.js';
import { addTokenizer, writeChatDataset } from '../helpers/datasets.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-lock-'));

describe('one extraction at a time per --out', () => {
  it('a second run is refused while the first holds the folder; the first ends with its own rows', async () => {
    const dir = tmp();
    writeTinyCheckpoint(dir, 'llama', { layers: 4 });
    addTokenizer(dir);
    const a = writeChatDataset(dir, 'a.jsonl', 200, 5);
    const b = writeChatDataset(dir, 'b.jsonl', 30, 6);
    const args = (data: string, out: string, extra: string[] = []) => ['extract', '--model', dir, '--data', data, '--out', out, '--chunk-rows', '4', '--batch-tokens', '8', ...extra];
    const ref = spawnSync(process.execPath, [BIN, ...args(a, join(dir, 'ref'))], { encoding: 'utf8' });
    expect(ref.status, ref.stderr).toBe(0);

    const out = join(dir, 'out');
    const first = spawn(process.execPath, [BIN, ...args(a, out)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let firstErr = '';
    first.stderr!.on('data', (d) => (firstErr += d));
    const exited = new Promise<number | null>((r) => first.on('exit', (code) => r(code)));
    const lock = join(out, LOCK_FILE);
    const t0 = Date.now();
    while (!existsSync(lock) && first.exitCode === null && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 2));
    first.kill('SIGSTOP');
    try {
      expect(existsSync(join(out, 'meta.json')), 'the first run finished before it could be paused').toBe(false);
      const holder = JSON.parse(readFileSync(lock, 'utf8'));
      expect(holder).toMatchObject({ pid: first.pid, host: hostname(), command: 'extract' });
      for (const extra of [[], ['--overwrite'], ['--resume']]) {
        const second = spawnSync(process.execPath, [BIN, ...args(b, out, extra)], { encoding: 'utf8' });
        expect(second.status, extra.join(' ')).toBe(1);
        const lines = second.stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(new RegExp(`^emlens: ${out}: in use by another emlens run \\(pid ${first.pid} on ${hostname()}, extract since ${holder.started}\\)`));
      }
    } finally {
      first.kill('SIGCONT');
    }
    expect(await exited, firstErr).toBe(0);
    expect(existsSync(lock)).toBe(false);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
    const refMeta = JSON.parse(readFileSync(join(dir, 'ref', 'meta.json'), 'utf8'));
    expect(meta.dataset.file).toBe(a);
    expect({ ...meta, created: 0 }).toEqual({ ...refMeta, created: 0 });
    expect(readFileSync(join(out, 'activations.safetensors')).equals(readFileSync(join(dir, 'ref', 'activations.safetensors')))).toBe(true);
    expect(readFileSync(join(out, 'rows.jsonl')).equals(readFileSync(join(dir, 'ref', 'rows.jsonl')))).toBe(true);

    // Free again: the second run goes ahead.
    const after = spawnSync(process.execPath, [BIN, ...args(b, out, ['--overwrite'])], { encoding: 'utf8' });
    expect(after.status, after.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')).rows).toBe(30);
  });

  it('stale locks: a dead pid on this host is taken over, another host is not', () => {
    const dir = tmp();
    // A process that has exited: its pid is free.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const file = join(dir, LOCK_FILE);
    writeFileSync(file, JSON.stringify({ pid: deadPid, host: hostname(), started: '2020-01-01T00:00:00.000Z', command: 'extract' }));
    const l = lockFolder(dir, 'extract');
    expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(process.pid);
    // Held (by this very process): refused.
    expect(() => lockFolder(dir, 'extract')).toThrow(new RegExp(`in use by another emlens run \\(pid ${process.pid} on `));
    l.release();
    expect(existsSync(file)).toBe(false);

    writeFileSync(file, JSON.stringify({ pid: deadPid, host: 'elsewhere', started: '2020-01-01T00:00:00.000Z', command: 'extract' }));
    expect(() => lockFolder(dir, 'extract')).toThrow(`${dir}: in use by another emlens run (pid ${deadPid} on elsewhere, extract since 2020-01-01T00:00:00.000Z); wait for it, or delete ${file} if that run is gone`);
    expect(JSON.parse(readFileSync(file, 'utf8')).host).toBe('elsewhere');
  });
});
