import { afterEach, describe, expect, it, vi } from 'vitest';
import { downloadProgress, formatBytes, rowProgress } from '../../src/cli/progress.js';

function fakeStream(isTTY: boolean) {
  const out: string[] = [];
  const stream = {
    isTTY,
    columns: 100,
    write(s: string | Uint8Array, ...rest: unknown[]) {
      out.push(String(s));
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    },
    on() {
      return stream;
    },
    removeListener() {
      return stream;
    },
  };
  return { stream: stream as unknown as NodeJS.WriteStream, out };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('progress on stderr', () => {
  it('downloads: plain lines at most every 2 s, plus one at completion, when not a TTY', () => {
    let now = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const { stream, out } = fakeStream(false);
    const report = downloadProgress('downloading org/name', stream);
    const total = 10 * 1024 * 1024;
    report({ file: 'a.safetensors', bytes: 0, total });
    for (let i = 1; i < 10; i++) {
      now += 500;
      report({ file: 'a.safetensors', bytes: i * 1024 * 1024, total });
    }
    // 4.5 s elapsed: the first line plus one per 2 s.
    expect(out).toHaveLength(3);
    expect(out[0]).toBe('downloading org/name: 0 B/10.0 MiB (0%), 0 B/s a.safetensors\n');
    // 4 MiB after 2 s: 2 MiB/s, 6 MiB left -> 3 s.
    expect(out[1]).toBe('downloading org/name: 4.00 MiB/10.0 MiB (40%), 2.00 MiB/s a.safetensors, eta 3s\n');
    now += 500;
    report({ file: 'b.safetensors', bytes: total, total });
    report({ file: 'b.safetensors', bytes: total, total });
    expect(out).toHaveLength(4);
    expect(out[3]).toBe('downloading org/name: 10.0 MiB/10.0 MiB (100%), 2.00 MiB/s b.safetensors, done\n');
    expect(out.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
  });

  it('rows: counts, rows/s and tokens/s, every few seconds and at the end', () => {
    let now = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const { stream, out } = fakeStream(false);
    const p = rowProgress('extract', stream, 5000);
    p.update(0, 100, 0, 0);
    now = 2000;
    p.update(40, 100, 4000, 2000); // within 5 s: no line
    now = 5000;
    p.update(50, 100, 5000, 5000);
    now = 10_000;
    p.update(100, 100, 10_000, 10_000);
    expect(out).toEqual([
      'extract: 0/100 rows (0%), 0.0 rows/s\n',
      'extract: 50/100 rows (50%), 10.0 rows/s, 1000 tok/s, eta 5s\n',
      'extract: 100/100 rows (100%), 10.0 rows/s, 1000 tok/s, done\n',
    ]);
  });

  it('draws a cli-progress bar on a TTY and stops it at completion', () => {
    const { stream, out } = fakeStream(true);
    const report = downloadProgress('downloading org/name', stream);
    report({ file: 'a.safetensors', bytes: 0, total: 2048 });
    report({ file: 'a.safetensors', bytes: 1024, total: 2048 });
    report({ file: 'a.safetensors', bytes: 2048, total: 2048 });
    const text = out.join('');
    expect(text).toContain('downloading org/name [');
    expect(text).toContain('100%');
    expect(text).toContain('2.00 KiB/2.00 KiB');
    // Stopping again (as a caller would on failure) is harmless.
    report.stop();
  });

  it('formats byte counts', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.00 GiB');
  });
});
