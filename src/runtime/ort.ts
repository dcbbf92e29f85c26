/**
 * The one place that touches onnxruntime-node. Execution providers: CPU by default; a GPU user
 * sets EMLENS_EP=cuda (needs onnxruntime-node's CUDA binaries, see README).
 */
import ort from 'onnxruntime-node';

// onnxruntime-node >= 1.2x starts a telemetry client with the first session; it reads
// /proc/self/cmdline and scans it with a recursive matcher (about 3 stack frames per byte), so a
// command line over ~30 kB (a long --prompt) overflowed the main thread's stack: SIGSEGV. It also
// left /tmp/mat-debug-PID.log behind on every run. The variable is read when that client starts,
// i.e. at the first InferenceSession.create, which this module always precedes.
process.env.ORT_DISABLE_TELEMETRY = '1';

export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;

const EP = (process.env.EMLENS_EP ?? 'cpu').split(',').map((s) => s.trim()).filter(Boolean);

export function threads(): number {
  const env = Number(process.env.EMLENS_THREADS);
  return Number.isInteger(env) && env > 0 ? env : 0; // 0 = ORT picks (physical cores)
}

export async function createSession(model: Uint8Array): Promise<OrtSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: EP as ort.InferenceSession.ExecutionProviderConfig[],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
}

export function f32(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', data, dims);
}

export function i64(data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', data, dims);
}
