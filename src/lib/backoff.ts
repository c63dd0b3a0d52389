// Capped exponential backoff with full jitter (the AWS architecture blog's "full jitter"),
// used by every retry loop: watches, backend calls, the registrar.

export interface BackoffOptions {
  initialMs: number
  maxMs: number
  /** Randomise delays in [0, d]; off gives the plain exponential sequence (tests). */
  jitter?: boolean
}

export class Backoff {
  private attempt = 0
  constructor(private readonly opts: BackoffOptions) {}

  next(): number {
    const exp = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt)
    if (this.attempt < 60) this.attempt++
    if (this.opts.jitter === false) return exp
    // never below a tenth of the step, so a retry storm cannot collapse to zero delay
    return Math.max(exp / 10, Math.random() * exp)
  }

  reset(): void {
    this.attempt = 0
  }

  get attempts(): number {
    return this.attempt
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
