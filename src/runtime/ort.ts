/**
 * The one adapter to ONNX Runtime: sessions, their options, and tensors. In Node it is
 * onnxruntime-node: CPU by default; a GPU user sets EMLENS_EP=cuda (needs onnxruntime-node's CUDA
 * binaries, see README). Options come from the caller, else from the environment (EMLENS_EP,
 * EMLENS_THREADS, EMLENS_SPIN), so a benchmark or a server can run sessions side by side with
 * different settings. The browser bundle (src/browser/) maps this import to onnxruntime-web, same
 * API: there the default provider is wasm (webgpu when asked for) and there is no environment.
 */
import ort from 'onnxruntime-node';

/** Node's process.env, or nothing in a browser. */
const ENV: Record<string, string | undefined> = typeof process !== 'undefined' && process.env ? process.env : {};
/** Whether this runs on onnxruntime-web (a browser bundle). */
export const WEB = !(typeof process !== 'undefined' && process.versions?.node);

// onnxruntime-node >= 1.2x starts a telemetry client with the first session; it reads
// /proc/self/cmdline and scans it with a recursive matcher (about 3 stack frames per byte), so a
// command line over ~30 kB (a long --prompt) overflowed the main thread's stack: SIGSEGV. It also
// left /tmp/mat-debug-PID.log behind on every run. The variable is read when that client starts,
// i.e. at the first InferenceSession.create, which this module always precedes.
if (!WEB) ENV.ORT_DISABLE_TELEMETRY = '1';

export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;

export interface SessionOptions {
  /** ORT execution providers in order of preference, e.g. ['cuda', 'cpu']. */
  executionProviders: string[];
  /** Intra-op threads; 0 lets ORT pick (the physical cores). */
  intraOpThreads: number;
  /**
   * Whether idle intra-op threads spin waiting for work (ORT's default). Spinning is fastest on an
   * otherwise idle machine; off, it leaves the cores to other processes between runs.
   */
  spinning: boolean;
  /**
   * ORT's CPU memory arena (on unless false). Off, a run's intermediates go back to the system
   * after it, so an idle session keeps no pool the size of its peak: the memory-bounded runner's
   * sessions (one per layer-group kind) then cost memory only while they run.
   */
  cpuMemArena?: boolean;
  /**
   * ORT's memory pattern (on unless false; always off without the arena): with it, a session
   * plans one block for a run's intermediates after its first run, on top of what its arena pooled.
   */
  memPattern?: boolean;
}

function envInt(name: string): number | null {
  const v = ENV[name];
  if (v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : null;
}

/** The options sessions get when the caller names none. */
export function defaultSessionOptions(): SessionOptions {
  const ep = (ENV.EMLENS_EP ?? (WEB ? 'wasm' : 'cpu')).split(',').map((s) => s.trim()).filter(Boolean);
  return {
    executionProviders: ep.length ? ep : [WEB ? 'wasm' : 'cpu'],
    intraOpThreads: envInt('EMLENS_THREADS') ?? 0,
    spinning: ENV.EMLENS_SPIN !== '0',
  };
}

/** Intra-op threads sessions use by default (0 = ORT picks). */
export function threads(): number {
  return defaultSessionOptions().intraOpThreads;
}

/**
 * A session on an ONNX model's bytes. `externalDataDir`: the folder the model's external-data
 * initializers are relative to (ORT maps those files; Node only).
 */
export async function createSession(model: Uint8Array, options: Partial<SessionOptions> = {}, externalDataDir?: string): Promise<OrtSession> {
  const o = { ...defaultSessionOptions(), ...options };
  // onnxruntime-web takes providers and the optimisation level; threads are its env.wasm's.
  if (WEB) return ort.InferenceSession.create(model, { executionProviders: o.executionProviders as ort.InferenceSession.ExecutionProviderConfig[], graphOptimizationLevel: 'all' });
  return ort.InferenceSession.create(model, {
    executionProviders: o.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: o.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    ...(o.cpuMemArena === false ? { enableCpuMemArena: false, enableMemPattern: false } : o.memPattern === false ? { enableMemPattern: false } : {}),
    // ORT's config key; '1' is its default.
    extra: { session: { intra_op: { allow_spinning: o.spinning ? '1' : '0' }, ...(externalDataDir ? { model_external_initializers_file_folder_path: externalDataDir } : {}) } },
  });
}

export function f32(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', data, dims);
}

export function i64(data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', data, dims);
}
