// Limits for what in-cluster clients can make enlist do: a token bucket (how often), and
// counters of concurrent holders (how many at once), each with a hard bound on memory.

import { sleep } from './backoff.js'

export class TokenBucket {
  private tokens: number
  private at: number

  constructor(
    /** Tokens added per second. */
    private readonly rate: number,
    /** Most tokens held: the burst allowed after a quiet period. */
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst
    this.at = now()
  }

  /** Takes a token if there is one. */
  take(): boolean {
    this.refill()
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  /**
   * Reserves a token that will be there within `maxWaitMs` (x/time/rate's Reserve): the
   * milliseconds to wait before acting on it, or undefined, reserving nothing, when it would
   * come later. Callers queue in arrival order, and at most rate x maxWait of them at once.
   */
  reserve(maxWaitMs: number): number | undefined {
    this.refill()
    const waitMs = this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.rate) * 1000
    if (waitMs > maxWaitMs) return undefined
    this.tokens -= 1
    return waitMs
  }

  /** Takes a token, waiting for one if need be (resolves early if `signal` fires). */
  async wait(signal?: AbortSignal): Promise<void> {
    while (!this.take()) {
      if (signal?.aborted) return
      await sleep(Math.max(1, Math.ceil(((1 - this.tokens) / this.rate) * 1000)), signal)
    }
  }

  /** Seconds until a token is available (0 if one is now). */
  waitSeconds(): number {
    this.refill()
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.rate)
  }

  private refill(): void {
    const now = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate)
    this.at = now
  }
}

/** Token buckets per key (a client address), the least recently used dropped past `maxKeys`. */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>()

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): boolean {
    let b = this.buckets.get(key)
    if (b) this.buckets.delete(key)
    else {
      b = new TokenBucket(this.rate, this.burst, this.now)
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!)
    }
    this.buckets.set(key, b) // most recently used last
    return b.take()
  }

  /** Whether `key` has a token left, without taking one. */
  has(key: string): boolean {
    const b = this.buckets.get(key)
    return !b || b.waitSeconds() === 0
  }
}

export type Release = () => void

/** At most `total` holders at once, and at most `perKey` with the same key. */
export class ConcurrencyLimit {
  private count = 0
  private readonly byKey = new Map<string, number>()

  constructor(
    readonly total: number,
    readonly perKey: number,
  ) {}

  get inUse(): number {
    return this.count
  }

  /** A release function, or why not: 'total' or 'key'. */
  acquire(key: string): Release | 'total' | 'key' {
    const n = this.byKey.get(key) ?? 0
    if (n >= this.perKey) return 'key'
    if (this.count >= this.total) return 'total'
    this.count++
    this.byKey.set(key, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.count--
      const m = (this.byKey.get(key) ?? 1) - 1
      if (m <= 0) this.byKey.delete(key)
      else this.byKey.set(key, m)
    }
  }
}
