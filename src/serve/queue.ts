/**
 * The bounded queue in front of the engine: one job runs at a time (an ORT session is busy with
 * one batch), at most `maxWaiting` wait; a job beyond that is refused at once (the server answers
 * 429 with Retry-After) instead of piling up memory and latency.
 */
export class QueueFullError extends Error {
  constructor(readonly retryAfterS: number) {
    super('the server is busy: the request queue is full');
  }
}

export class WorkQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Mean seconds of recent jobs (exponential average), for Retry-After. */
  private meanS = 1;

  constructor(
    readonly maxWaiting: number,
    readonly concurrency = 1,
  ) {}

  get depth(): number {
    return this.running + this.waiting.length;
  }

  /**
   * Runs `job` when a slot is free; throws QueueFullError when the queue is full. Aborting
   * `signal` (the request timed out, or its client left) while the job waits takes it out of the
   * queue, so it never runs and its place is free; the promise rejects with the signal's reason.
   */
  async run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw signal.reason;
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxWaiting) throw new QueueFullError(Math.max(1, Math.ceil(this.meanS * (this.waiting.length + 1))));
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener('abort', leave);
          resolve();
        };
        const leave = () => {
          this.waiting.splice(this.waiting.indexOf(wake), 1);
          reject(signal!.reason);
        };
        this.waiting.push(wake);
        signal?.addEventListener('abort', leave, { once: true });
      });
    } else this.running++;
    const t0 = performance.now();
    try {
      return await job();
    } finally {
      this.meanS = 0.8 * this.meanS + 0.2 * ((performance.now() - t0) / 1000);
      const next = this.waiting.shift();
      // The slot passes straight to the next job, so `running` stays counted for it.
      if (next) next();
      else this.running--;
    }
  }
}
