/** Log-probabilities from a row of logits: what judges and the server's `logprobs` report. */

/** log Σ exp over row [off, off+n). */
export function logSumExp(logits: Float32Array, off: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[off + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[off + i]! - max);
  return max + Math.log(sum);
}

/** The k largest entries of row [off, off+n) of `logits` as (id, log-softmax), most probable first; ties by lower id. */
export function topLogSoftmax(logits: Float32Array, off: number, n: number, k: number): { id: number; logprob: number }[] {
  const lse = logSumExp(logits, off, n);
  const top: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = logits[off + i]!;
    if (top.length === k && v <= logits[off + top[k - 1]!]!) continue;
    let j = Math.min(top.length, k - 1);
    top[j] = i;
    while (j > 0 && logits[off + top[j - 1]!]! < v) {
      top[j] = top[j - 1]!;
      top[j - 1] = i;
      j--;
    }
  }
  return top.map((id) => ({ id, logprob: logits[off + id]! - lse }));
}

