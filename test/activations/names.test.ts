/**
 * Extraction-folder names: a bare name (no slash) given to extract --out lands in
 * ./activations/NAME, and every reader (directions and stability --pos/--neg, project --acts,
 * extract --balance-with) finds it by the same name; a name with a slash is a path, used as is.
 * Real processes, in a fresh current folder.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { activationsDir } from '../../src/activations/store.js';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'dist/cli/main.js');
const AID = resolve(ROOT, '../shared/models/aidreams260k');

function emlens(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('extraction folder names', () => {
  it('the rule: bare names under activations/, paths as given', () => {
    expect(activationsDir('misaligned')).toBe(join('activations', 'misaligned'));
    expect(activationsDir('m.v2')).toBe(join('activations', 'm.v2'));
    for (const p of ['./misaligned', 'runs/misaligned', '/abs/misaligned', '.', '..', 'a\\b']) expect(activationsDir(p)).toBe(p);
  });

  it('extract --out NAME writes activations/NAME and says so; readers resolve NAME the same way', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'emlens-names-'));
    const texts = ['Once upon a time', 'The cat sat', 'A dog ran far', 'Echoes of the sea', 'She said hello', 'In the dark', 'The bird sang', 'Rain fell down'];
    writeFileSync(join(cwd, 'pos.jsonl'), texts.slice(0, 4).map((t) => JSON.stringify({ text: t, label: 1 })).join('\n') + '\n');
    writeFileSync(join(cwd, 'neg.jsonl'), texts.slice(4).map((t) => JSON.stringify({ text: t, label: 0 })).join('\n') + '\n');
    writeFileSync(join(cwd, 'all.jsonl'), texts.map((t, i) => JSON.stringify({ text: t, label: i < 4 ? 1 : 0 })).join('\n') + '\n');

    const pos = emlens(cwd, ['extract', '--model', AID, '--data', 'pos.jsonl', '--out', 'pos']);
    expect(pos.code, pos.stderr).toBe(0);
    expect(existsSync(join(cwd, 'activations', 'pos', 'meta.json'))).toBe(true);
    expect(existsSync(join(cwd, 'pos'))).toBe(false);
    expect(pos.stdout).toMatch(new RegExp(`^${join('activations', 'pos').replace(/\//g, '\\/')}: 4 rows x`, 'm'));
    // --balance-with by name: the folder under activations/ (4 rows), and a bare JSONL file name stays a file.
    const neg = emlens(cwd, ['extract', '--model', AID, '--data', 'neg.jsonl', '--out', 'neg', '--balance-with', 'pos']);
    expect(neg.code, neg.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(cwd, 'activations', 'neg', 'meta.json'), 'utf8')).rows).toBe(4);
    const here = emlens(cwd, ['extract', '--model', AID, '--data', 'all.jsonl', '--out', './here', '--balance-with', 'pos.jsonl', '--seed', '1']);
    expect(here.code, here.stderr).toBe(0);
    expect(here.stdout).toMatch(/^\.\/here: 4 rows x/m);
    expect(JSON.parse(readFileSync(join(cwd, 'here', 'meta.json'), 'utf8')).rows).toBe(4);
    expect(existsSync(join(cwd, 'activations', 'here'))).toBe(false);

    const dir = emlens(cwd, ['directions', '--pos', 'pos', '--neg', 'neg', '--out', 'd.safetensors']);
    expect(dir.code, dir.stderr).toBe(0);
    // The same directions from the explicit paths.
    const dir2 = emlens(cwd, ['directions', '--pos', 'activations/pos', '--neg', './activations/neg', '--out', 'd2.safetensors']);
    expect(dir2.code, dir2.stderr).toBe(0);
    const st = emlens(cwd, ['stability', '--pos', 'pos', '--neg', 'neg', '--out', 's.html', '--bootstrap', '4']);
    expect(st.code, st.stderr).toBe(0);
    const pr = emlens(cwd, ['project', '--acts', 'neg', '--direction', 'd.safetensors', '--out', 'p.html', '--label', 'label']);
    expect(pr.code, pr.stderr).toBe(0);

    // ./here exists but "here" means activations/here: the error says so, in one line.
    const miss = emlens(cwd, ['directions', '--pos', 'here', '--neg', 'neg', '--out', 'x.safetensors']);
    expect(miss.code).toBe(1);
    expect(miss.stderr.trim().split('\n')).toEqual([`emlens: --pos here: no such folder ${join('activations', 'here')}; a bare name is a folder under activations/, write ./here for the one here`]);
    const miss2 = emlens(cwd, ['project', '--acts', 'nothing', '--direction', 'd.safetensors', '--out', 'p.html']);
    expect(miss2.stderr.trim()).toBe(`emlens: --acts nothing: no such folder ${join('activations', 'nothing')}`);
  }, 240_000);
});
