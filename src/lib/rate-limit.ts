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

  /** Milliseconds until a token is available (0 if one is now). */
  waitMs(): number {
    this.refill()
    return this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.rate) * 1000
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

/** Why a FairQueue turned a caller away: its turn would come too late, or no room was left. */
export type Refusal = 'timeout' | 'full'

interface Waiter {
  key: string
  resolve: (v: true | Refusal) => void
  timer: NodeJS.Timeout
}

/**
 * Turns from a token bucket, handed out round-robin across keys (namespaces): a key with
 * a thousand callers waiting takes one turn, then every other waiting key takes one, so a
 * flood from one key delays others by at most one turn per key. At most `capacity` wait
 * in all; when full, a newcomer pushes out the newest waiter of the longest line if that
 * line is longer than its own, so a flood cannot fill the room either. A waiter not served
 * within `maxWaitMs` is answered 'timeout'.
 */
export class FairQueue {
  /** Lines by key; Map order is the rotation: the key served last moves to the end. */
  private readonly lines = new Map<string, Waiter[]>()
  private count = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly bucket: TokenBucket,
    readonly maxWaitMs: number,
    readonly capacity: number,
  ) {}

  /** Callers waiting now. */
  get waiting(): number {
    return this.count
  }

  /** Resolves true when it is the caller's turn, or with why not. */
  turn(key: string): Promise<true | Refusal> {
    if (this.count === 0 && this.bucket.take()) return Promise.resolve(true)
    let line = this.lines.get(key)
    if (this.count >= this.capacity) {
      let longest: Waiter[] | undefined
      for (const l of this.lines.values()) if (!longest || l.length > longest.length) longest = l
      if (!longest || longest.length <= (line?.length ?? 0) + 1) return Promise.resolve('full')
      this.drop(longest[longest.length - 1]!, 'full')
      line = this.lines.get(key)
    }
    return new Promise((resolve) => {
      const w: Waiter = { key, resolve, timer: setTimeout(() => this.drop(w, 'timeout'), this.maxWaitMs) }
      if (line) line.push(w)
      else this.lines.set(key, [w])
      this.count++
      this.schedule()
    })
  }

  /** Hands out every turn the bucket has now, one key at a time. */
  pump(): void {
    while (this.count > 0) {
      const first = this.lines.entries().next().value
      if (!first || !this.bucket.take()) break
      const [key, line] = first
      const w = line.shift()!
      this.lines.delete(key)
      if (line.length > 0) this.lines.set(key, line) // to the end of the rotation
      this.count--
      clearTimeout(w.timer)
      w.resolve(true)
    }
    this.schedule()
  }

  private drop(w: Waiter, why: Refusal): void {
    const line = this.lines.get(w.key)
    const i = line ? line.indexOf(w) : -1
    if (i < 0) return
    line!.splice(i, 1)
    if (line!.length === 0) this.lines.delete(w.key)
    this.count--
    clearTimeout(w.timer)
    w.resolve(why)
  }

  private schedule(): void {
    if (this.count === 0 || this.timer) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.pump()
    }, Math.max(1, Math.ceil(this.bucket.waitMs())))
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
