// Retry pacing. `Backoff` is capped exponential backoff with full jitter (the AWS
// architecture blog's "full jitter"), for callers that retry one operation: backend calls,
// the registrar. `BackoffManager` is client-go's ExponentialBackoffManager, for loops that
// run for the life of the process (reflectors): the step resets only once the loop has
// gone `resetAfterMs` without needing a backoff, so a fault that recurs keeps its pace.

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

export interface BackoffManagerOptions {
  initialMs: number
  maxMs: number
  /** A backoff this long after the previous one starts again from initialMs. */
  resetAfterMs: number
  /** Delays are d * (1 + jitter * random): client-go uses 1.0, so [d, 2d). */
  jitter?: number
  now?: () => number
  random?: () => number
}

export class BackoffManager {
  private step: number
  private last: number | undefined
  private readonly now: () => number
  private readonly random: () => number

  constructor(private readonly opts: BackoffManagerOptions) {
    this.step = opts.initialMs
    this.now = opts.now ?? Date.now
    this.random = opts.random ?? Math.random
  }

  /** The next delay; doubles the step unless the previous backoff is long past. */
  next(): number {
    const now = this.now()
    if (this.last !== undefined && now - this.last > this.opts.resetAfterMs) this.step = this.opts.initialMs
    this.last = now
    const d = this.step
    this.step = Math.min(this.opts.maxMs, this.step * 2)
    return d * (1 + (this.opts.jitter ?? 1) * this.random())
  }
}

export interface Clock {
  now(): number
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export const realClock: Clock = { now: () => Date.now(), sleep: (ms, signal) => sleep(ms, signal) }

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
