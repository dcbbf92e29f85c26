/**
 * Progress on stderr for every long job (rows extracted, steps trained, bytes downloaded): one
 * wrapper around cli-progress, a bar on a terminal, plain lines every few seconds otherwise
 * (logs, CI) and a last line when the work completes.
 */
import cliProgress from 'cli-progress';

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** plain-line mode: at most one line this often (and one at completion) */
  everyMs?: number;
  /** what is counted: rows and steps as numbers, bytes as KiB/MiB/GiB */
  unit?: string;
  /** show nothing until the work has taken this long (quick jobs stay silent) */
  delayMs?: number;
  /** per-update extras shown after the counts ({rate} and {eta} are filled in) */
  detail?: (p: ProgressState) => string;
}

export interface ProgressState {
  done: number;
  total: number;
  /** seconds since the first update */
  seconds: number;
  /** whatever the caller passes along (tokens, a file name) */
  info: Record<string, string | number>;
}

export interface Progress {
  update(done: number, total: number, info?: Record<string, string | number>): void;
  stop(): void;
}

const fmtRate = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

export function createProgress(label: string, o: ProgressOptions = {}): Progress {
  const stream = o.stream ?? process.stderr;
  const unit = o.unit ?? 'rows';
  const count = (n: number) => (unit === 'bytes' ? formatBytes(n) : String(n));
  const rate = (s: ProgressState) => (unit === 'bytes' ? `${formatBytes(s.done / Math.max(s.seconds, 1e-3))}/s` : `${fmtRate(s.done / Math.max(s.seconds, 1e-3))} ${unit}/s`);
  let t0: number | null = null;
  const state = (done: number, total: number, info: Record<string, string | number>): ProgressState => {
    t0 ??= Date.now();
    return { done, total, seconds: (Date.now() - t0) / 1000, info };
  };
  const extra = (s: ProgressState) => (o.detail ? o.detail(s) : '');

  if (stream.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    const stop = () => {
      bar?.stop();
      bar = undefined;
    };
    return {
      update(done, total, info = {}) {
        const s = state(done, total, info);
        if (s.seconds * 1000 < (o.delayMs ?? 0)) return;
        const payload = { counts: `${count(done)}/${count(total)}`, rate: rate(s), extra: extra(s) };
        if (!bar) {
          if (total > 0 && done >= total) return; // nothing left to show
          bar = new cliProgress.SingleBar(
            { stream, format: `${label} [{bar}] {percentage}% {counts} ${unit === 'bytes' ? '' : `${unit} `}| {rate}{extra} | eta {eta_formatted}`, hideCursor: true, etaBuffer: 50, fps: 5 },
            cliProgress.Presets.shades_classic,
          );
          bar.start(Math.max(total, 1), done, payload);
        }
        bar.setTotal(Math.max(total, 1));
        bar.update(done, payload);
        if (total > 0 && done >= total) stop();
      },
      stop,
    };
  }

  const everyMs = o.everyMs ?? 5000;
  let last = -Infinity;
  let lastDone = -1;
  let finished = false;
  return {
    update(done, total, info = {}) {
      const s = state(done, total, info);
      if (s.seconds * 1000 < (o.delayMs ?? 0)) return;
      const complete = total > 0 && done >= total;
      if (complete && finished) return;
      const now = Date.now();
      if (!complete && (now - last < everyMs || done === lastDone)) return;
      last = now;
      lastDone = done;
      finished = complete;
      const r = done / Math.max(s.seconds, 1e-3);
      const eta = r > 0 ? Math.round((total - done) / r) : NaN;
      const pct = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : '';
      const tail = complete ? ', done' : Number.isFinite(eta) ? `, eta ${eta}s` : '';
      stream.write(`${label}: ${count(done)}/${count(total)}${unit === 'bytes' ? '' : ` ${unit}`}${pct}, ${rate(s)}${extra(s)}${tail}\n`);
    },
    stop() {},
  };
}

/** Row-wise work (extraction, measurement): rows/s and, for rows, tokens/s. */
export interface RowProgress {
  update(rowsDone: number, rowsTotal: number, tokens: number, elapsedMs: number): void;
  stop(): void;
}

export function rowProgress(label: string, stream: NodeJS.WriteStream = process.stderr, everyMs = 5000, unit = 'rows'): RowProgress {
  const p = createProgress(label, {
    stream,
    everyMs,
    unit,
    detail: (s) => (unit === 'rows' && Number(s.info.tokens) > 0 ? `, ${fmtRate(Number(s.info.tokens) / Math.max(s.seconds, 1e-3))} tok/s` : ''),
  });
  return { update: (done, total, tokens) => p.update(done, total, { tokens }), stop: () => p.stop() };
}

/** Hub downloads: bytes over all files, the current file named. */
export function downloadProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress & ((e: { file: string; bytes: number; total: number }) => void) {
  const p = createProgress(label, { stream, everyMs: 2000, unit: 'bytes', detail: (s) => (s.info.file ? ` ${s.info.file}` : '') });
  return Object.assign((e: { file: string; bytes: number; total: number }) => p.update(e.bytes, e.total, { file: e.file }), p);
}
