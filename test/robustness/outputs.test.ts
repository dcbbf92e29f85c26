/**
 * Output paths (src/io/paths.ts, src/io/atomic.ts): refused in one line naming the path before
 * anything is written, folders made without Node's recursive mkdir (which never returns under
 * /proc), and no temporary file left behind whatever fails.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmlensError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/io/atomic.js';
import { checkOutputPath, ensureDir } from '../../src/io/paths.js';

const ROOT = resolve(__dirname, '../..');
const tmp = () => mkdtempSync(join(tmpdir(), 'emlens-out-'));

function errorOf(f: () => unknown): EmlensError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EmlensError);
    expect((e as Error).message).not.toMatch(/\n/);
    return e as EmlensError;
  }
  throw new Error('expected an error');
}

describe('ensureDir', () => {
  it('makes nested folders and accepts existing ones', () => {
    const d = tmp();
    ensureDir(join(d, 'a', 'b', 'c'));
    ensureDir(join(d, 'a', 'b', 'c'));
    expect(readdirSync(join(d, 'a', 'b'))).toEqual(['c']);
  });

  it('names the file that sits where a folder must be, and creates nothing', () => {
    const d = tmp();
    writeFileSync(join(d, 'f'), 'x');
    expect(errorOf(() => ensureDir(join(d, 'f'), '--out')).message).toBe(`--out ${join(d, 'f')}: ${join(d, 'f')} is a file, not a folder`);
    expect(errorOf(() => ensureDir(join(d, 'f', 'x', 'y'), '--out')).message).toBe(`--out ${join(d, 'f', 'x', 'y')}: ${join(d, 'f')} is a file, not a folder`);
    expect(readdirSync(d)).toEqual(['f']);
  });

  it('returns under /proc, where recursive mkdir spins forever (run in a child: a regression hangs it, not the tests)', () => {
    const script = `import { ensureDir } from ${JSON.stringify(join(ROOT, 'dist/io/paths.js'))};
      try { ensureDir('/proc/emlens-nope/a/b', '--out'); console.log('created'); } catch (e) { console.log(e.name + ': ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, 'ensureDir did not return').toBeNull();
    expect(r.stdout.trim()).toMatch(/^EmlensError: --out \/proc\/emlens-nope\/a\/b: (cannot create folder \/proc\/emlens-nope|folder \/proc is not writable)/);
  });
});

describe('checkOutputPath', () => {
  it('refuses a folder where a file goes and a file where a folder goes; accepts new paths', () => {
    const d = tmp();
    writeFileSync(join(d, 'f'), 'x');
    mkdirSync(join(d, 'sub'));
    expect(errorOf(() => checkOutputPath(join(d, 'sub'), 'file', '--out')).message).toBe(`--out ${join(d, 'sub')}: is a folder; a file name is expected here`);
    expect(errorOf(() => checkOutputPath(join(d, 'f'), 'dir', '--out')).message).toBe(`--out ${join(d, 'f')}: ${join(d, 'f')} is a file, not a folder`);
    expect(errorOf(() => checkOutputPath(join(d, 'f', 'r.html'), 'file', '--out')).message).toMatch(/is a file, not a folder$/);
    checkOutputPath(join(d, 'new', 'deeper', 'r.html'), 'file', '--out');
    checkOutputPath(join(d, 'f'), 'file', '--out');
    checkOutputPath(join(d, 'sub'), 'dir', '--out');
    expect(readdirSync(d).sort()).toEqual(['f', 'sub']);
  });
});

describe('an unwritable parent', () => {
  it('is refused before anything is made (EACCES used to be "internal error"); run as nobody when the tests run as root', () => {
    const d = tmp();
    chmodSync(d, 0o755);
    const ro = join(d, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const paths = JSON.stringify(join(ROOT, 'dist/io/paths.js'));
    const atomic = JSON.stringify(join(ROOT, 'dist/io/atomic.js'));
    const script = `import { checkOutputPath, ensureDir } from ${paths}; import { writeFileAtomic } from ${atomic};
      const ro = ${JSON.stringify(ro)};
      for (const f of [() => checkOutputPath(ro + '/x/r.html', 'file', '--out'), () => ensureDir(ro + '/x', '--out'), () => writeFileAtomic(ro + '/r.json', ['{}'])]) {
        try { f(); console.log('no error'); } catch (e) { console.log(e.name + ': ' + e.message); }
      }`;
    // Root writes anywhere; another user meets the permissions.
    const other = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, cwd: d, ...other });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([
      `EmlensError: --out ${ro}/x/r.html: folder ${ro} is not writable`,
      `EmlensError: --out ${ro}/x: folder ${ro} is not writable`,
      `EmlensError: cannot write ${ro}/r.json: folder ${ro} is not writable`,
    ]);
    expect(readdirSync(ro)).toEqual([]);
  });
});

describe('writeFileAtomic', () => {
  const tmpFiles = (d: string) => readdirSync(d).filter((f) => f.endsWith('.tmp'));

  it('onto a folder: one line, no tmp file (rename used to fail after the tmp was written)', () => {
    const d = tmp();
    mkdirSync(join(d, 'out.json'));
    expect(errorOf(() => writeFileAtomic(join(d, 'out.json'), ['{}'])).message).toBe(`cannot write ${join(d, 'out.json')}: is a folder`);
    expect(tmpFiles(d)).toEqual([]);
  });

  it('under a file: one line naming it (was ENOTDIR, "internal error")', () => {
    const d = tmp();
    writeFileSync(join(d, 'f'), 'x');
    expect(errorOf(() => writeFileAtomic(join(d, 'f', 'out.json'), ['{}'])).message).toBe(`cannot write ${join(d, 'f', 'out.json')}: ${join(d, 'f')} is a file, not a folder`);
  });

  it('a failing writer: its error passes unchanged, the old content stays, the tmp file goes', () => {
    const d = tmp();
    const target = join(d, 'out.txt');
    writeFileAtomic(target, ['old']);
    const boom = new Error('boom');
    function* chunks() {
      yield 'half of the new';
      throw boom;
    }
    expect(() => writeFileAtomic(target, chunks())).toThrow(boom);
    expect(readFileSync(target, 'utf8')).toBe('old');
    expect(tmpFiles(d)).toEqual([]);
  });

  it('where the file system refuses (/sys): one line with the reason', () => {
    const e = errorOf(() => writeFileAtomic('/sys/emlens-test.json', ['{}']));
    expect(e.message).toMatch(/^cannot write \/sys\/emlens-test\.json: .*\((EACCES|EPERM|EROFS|ENOENT)\)$/);
  });
});
