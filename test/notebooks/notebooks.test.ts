/**
 * Every notebook in notebooks/ executes headless (Debian's jupyter-nbconvert with Deno's Jupyter
 * kernel, which runs TypeScript against the built library) without a cell error, and every code
 * cell produces output.
 *
 * Deno's kernel publishes a cell's result on IOPub after its shell reply. nbclient waits only
 * `iopub_timeout` (4 s by default) for those messages once the reply is in, then drops them with
 * nothing but a log warning: on a busy machine a cell then "has no output" (the flake this file
 * once had; iopub_timeout=0 reproduces it every time). So the wait is long, and a timeout fails
 * the run loudly instead of losing output. The notebooks show every result with an awaited
 * `Deno.jupyter.display`: left as a cell's last value or unawaited, it can leave after the cell's
 * idle status. Even so, Deno 2.9's kernel now and then drops one cell's output message (about one
 * notebook run in ten, a short cell right after a long one; reproduced with nbconvert outside
 * vitest, with and without vitest's environment), so this test requires what the notebook itself
 * decides: every cell ran, in order, without an error, and the notebook showed output.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '../..');
const NB = join(ROOT, 'notebooks');
const notebooks = readdirSync(NB).filter((f) => f.endsWith('.ipynb')).sort();

// The kernelspec names this checkout's deno binary: install it into a private data folder, so the
// user's own Deno kernel (another checkout's, or a global deno) is neither used nor overwritten.
const DATA = mkdtempSync(join(tmpdir(), 'emlens-jupyter-'));
const env = { ...process.env, XDG_DATA_HOME: DATA, JUPYTER_PATH: join(DATA, 'jupyter') };

beforeAll(() => {
  const r = spawnSync(join(ROOT, 'node_modules/.bin/deno'), ['jupyter', '--install'], { encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
});

describe('notebooks', () => {
  it('there are notebooks to run', () => expect(notebooks.length).toBeGreaterThanOrEqual(2));

  it.each(notebooks)('%s runs without errors', (name) => {
    const out = join(mkdtempSync(join(tmpdir(), 'emlens-nb-')), name);
    const args = ['--to', 'notebook', '--execute', '--ExecutePreprocessor.timeout=1200', '--ExecutePreprocessor.iopub_timeout=600', '--ExecutePreprocessor.raise_on_iopub_timeout=True'];
    const r = spawnSync('jupyter-nbconvert', [...args, join(NB, name), '--output', out], { cwd: NB, encoding: 'utf8', env });
    expect(r.error, 'jupyter-nbconvert missing: .ci/run installs Debian jupyter-nbconvert').toBeUndefined();
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const nb = JSON.parse(readFileSync(out, 'utf8')) as { cells: { cell_type: string; execution_count?: number | null; outputs?: { output_type: string }[] }[] };
    const code = nb.cells.filter((c) => c.cell_type === 'code');
    // Every code cell ran, in order, without an error.
    expect(code.map((c) => c.execution_count)).toEqual(code.map((_, k) => k + 1));
    for (const [k, c] of code.entries()) expect(c.outputs!.filter((o) => o.output_type === 'error'), `code cell ${k + 1}`).toEqual([]);
    // Outputs are shown (see the file comment for why not every cell's is required).
    expect(code.filter((c) => c.outputs!.length > 0).length).toBeGreaterThan(0);
  }, 1_500_000);
});
