/**
 * The KV cache generate() keeps between decode calls, in JS buffers the decode graph reads as
 * inputs (onnxruntime-node feeds inputs without copying them, but copies every output into a new
 * JS buffer: a graph that handed the whole cache back each step copied it every step). The graph
 * returns only the call's new positions; they are written here. Each layer holds C slots, keys
 * transposed [B, KV, head_dim, C] and values [B, KV, C, head_dim] (IO.pastKey / pastValue); slots
 * at and past `filled` are masked (cacheMasks). C grows in steps of CHUNK, so attention runs over
 * at most CHUNK - 1 unused slots.
 */
import { IO } from '../arch/decoder.js';
import { f32, type OrtTensor } from './ort.js';

export const CHUNK = 64;

export class KvCache {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  /** Slots each layer holds. */
  capacity = 0;
  /** Positions written so far (the same for every row: rows are left-padded). */
  filled = 0;

  constructor(
    private readonly layers: number,
    readonly batch: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
  ) {
    this.grow(CHUNK);
  }

  /** The cache as the decode graph's inputs. */
  feeds(): Record<string, OrtTensor> {
    const { batch: B, kvHeads: KV, headDim: hd, capacity: C } = this;
    const out: Record<string, OrtTensor> = {};
    for (let l = 0; l < this.layers; l++) {
      out[IO.pastKey(l)] = f32(this.keys[l]!, [B, KV, hd, C]);
      out[IO.pastValue(l)] = f32(this.values[l]!, [B, KV, C, hd]);
    }
    return out;
  }

  /**
   * Appends a call's T new positions (its IO.presentKey / presentValue outputs) to every row;
   * `rows[b]` names the output row that row b takes (the prefill of shared prompts runs each
   * distinct prompt once), the identity when omitted.
   */
  append(out: Record<string, OrtTensor>, T: number, rows?: number[]): void {
    const { batch: B, kvHeads: KV, headDim: hd } = this;
    const need = this.filled + T;
    if (need > this.capacity) this.grow(Math.ceil(need / CHUNK) * CHUNK);
    const C = this.capacity;
    const at = this.filled;
    for (let l = 0; l < this.layers; l++) {
      const k = out[IO.presentKey(l)]!.data as Float32Array; // [U, KV, hd, T]
      const v = out[IO.presentValue(l)]!.data as Float32Array; // [U, KV, T, hd]
      const K = this.keys[l]!;
      const V = this.values[l]!;
      for (let b = 0; b < B; b++) {
        const u = rows ? rows[b]! : b;
        for (let h = 0; h < KV; h++) {
          const src = u * KV + h;
          const dst = b * KV + h;
          // Element by element: a decode step has T = 1, where a subarray + set per
          // (row, head, dim) cost ~100k calls a step at batch 32 on a 24-layer model.
          for (let d = 0; d < hd; d++) {
            const s = (src * hd + d) * T;
            const o = (dst * hd + d) * C + at;
            for (let t = 0; t < T; t++) K[o + t] = k[s + t]!;
          }
          V.set(v.subarray(src * T * hd, (src + 1) * T * hd), (dst * C + at) * hd);
        }
      }
    }
    this.filled = need;
  }

  private grow(capacity: number): void {
    const { batch: B, kvHeads: KV, headDim: hd } = this;
    const old = this.capacity;
    for (let l = 0; l < this.layers; l++) {
      const K = new Float32Array(B * KV * hd * capacity);
      const V = new Float32Array(B * KV * capacity * hd);
      if (old > 0) {
        const k = this.keys[l]!;
        for (let r = 0; r < B * KV * hd; r++) K.set(k.subarray(r * old, r * old + this.filled), r * capacity);
        const v = this.values[l]!;
        for (let r = 0; r < B * KV; r++) V.set(v.subarray(r * old * hd, (r * old + this.filled) * hd), r * capacity * hd);
      }
      this.keys[l] = K;
      this.values[l] = V;
    }
    this.capacity = capacity;
  }
}
