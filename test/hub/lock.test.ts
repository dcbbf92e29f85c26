/**
 * Hub downloads take huggingface_hub's lock: an exclusive flock(2) on
 * <cache>/.locks/models--org--name/<etag>.lock. A Python process holding that lock (as
 * huggingface_hub's filelock does) makes emlens wait before fetching that blob; emlens's lock is
 * one Python sees.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveModel } from '../../src/hub/resolve.js';
import { acquireLock } from '../../src/hub/lock.js';
import { bytes, sha256, startFakeHub, type FakeHub } from './fake-hub.js';

const PY_HOLD = `
import fcntl, sys
f = open(sys.argv[1], 'w')
fcntl.flock(f, fcntl.LOCK_EX)
print('held', flush=True)
sys.stdin.readline()
`;
const PY_TRY = `
import fcntl, sys
f = open(sys.argv[1], 'w')
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print('free')
except BlockingIOError:
    print('busy')
`;

function pythonHolds(path: string): Promise<ChildProcessWithoutNullStreams> {
  const p = spawn('python3', ['-c', PY_HOLD, path]);
  return new Promise((resolve, reject) => {
    p.stdout.once('data', () => resolve(p));
    p.once('error', reject);
  });
}
const pythonTries = (path: string) => spawnSync('python3', ['-c', PY_TRY, path], { encoding: 'utf8' }).stdout.trim();

let cache: string;
let hub: FakeHub | undefined;
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'emlens-lock-'));
  vi.stubEnv('HF_HUB_OFFLINE', '');
  vi.stubEnv('HF_TOKEN', '');
  vi.stubEnv('HF_TOKEN_PATH', join(cache, 'no-token-here'));
});
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  vi.unstubAllEnvs();
  rmSync(cache, { recursive: true, force: true });
});

describe('hub download locks', () => {
  it('waits while huggingface_hub (Python flock) holds the blob lock, then downloads', async () => {
    const weights = bytes(400_000, 7);
    hub = await startFakeHub([
      { name: 'config.json', data: Buffer.from('{"model_type":"llama"}') },
      { name: 'model.safetensors', data: weights, lfs: true },
    ]);
    const lockDir = join(cache, '.locks', 'models--org--name');
    mkdirSync(lockDir, { recursive: true });
    const lockPath = join(lockDir, `${sha256(weights)}.lock`);
    const py = await pythonHolds(lockPath);
    const waits: string[] = [];
    const done = resolveModel('org/name', { cacheDir: cache, endpoint: hub.url, onLockWait: (f, p) => waits.push(`${f} ${p}`) });
    await vi.waitFor(() => expect(waits).toEqual([`model.safetensors ${lockPath}`]), { timeout: 20_000, interval: 100 });
    const blobGets = () => hub!.requests.filter((r) => r.method === 'GET' && r.url === `/lfs/${sha256(weights)}`);
    expect(blobGets()).toHaveLength(0);
    py.stdin.end('\n');
    const dir = await done;
    expect(readFileSync(join(dir, 'model.safetensors')).equals(weights)).toBe(true);
    expect(blobGets()).toHaveLength(1);
    expect(pythonTries(lockPath)).toBe('free');
  });

  it('a lock emlens holds is one Python sees, until released', async () => {
    const path = join(cache, '.locks', 'x', 'e.lock');
    const lock = await acquireLock(path);
    expect(pythonTries(path)).toBe('busy');
    await lock.release();
    expect(pythonTries(path)).toBe('free');
  });
});
