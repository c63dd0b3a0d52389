// A work queue with client-go's semantics: a key is queued at most once, is never
// processed by two workers at once (a key re-added while processing is queued again when
// done), and failures come back after a per-key exponential delay.

export class WorkQueue {
  private readonly queue: string[] = []
  private readonly dirty = new Set<string>()
  private readonly processing = new Set<string>()
  private readonly failures = new Map<string, number>()
  private readonly timers = new Map<NodeJS.Timeout, { key: string; due: number }>()
  private waiters: Array<(k: string | undefined) => void> = []
  private shut = false

  constructor(
    private readonly baseDelayMs = 500,
    private readonly maxDelayMs = 5 * 60_000,
  ) {}

  get length(): number {
    return this.queue.length
  }

  add(key: string): void {
    if (this.shut || this.dirty.has(key)) return
    this.dirty.add(key)
    if (this.processing.has(key)) return
    const w = this.waiters.shift()
    if (w) {
      this.dirty.delete(key)
      this.processing.add(key)
      w(key)
    } else this.queue.push(key)
  }

  addAfter(key: string, ms: number): void {
    if (this.shut) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.add(key)
    }, ms)
    this.timers.set(t, { key, due: Date.now() + ms })
  }

  /** Every key waiting out a delay is queued now (what it waited for is back); each
   *  keeps its failure count, so a key that fails again backs off from where it was. */
  retryNow(): void {
    for (const [t, { key }] of this.timers) {
      clearTimeout(t)
      this.timers.delete(t)
      this.add(key)
    }
  }

  /** The key whose delay ends first is queued now: a probe of whether what it waits for is back. */
  retryEarliest(): string | undefined {
    let first: [NodeJS.Timeout, { key: string; due: number }] | undefined
    for (const e of this.timers) if (!first || e[1].due < first[1].due) first = e
    if (!first) return undefined
    clearTimeout(first[0])
    this.timers.delete(first[0])
    this.add(first[1].key)
    return first[1].key
  }

  /** Keys waiting out a delay. */
  get waiting(): number {
    return this.timers.size
  }

  /** Re-adds after the key's next backoff delay; returns that delay. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0
    this.failures.set(key, n + 1)
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 30))
    this.addAfter(key, delay)
    return delay
  }

  forget(key: string): void {
    this.failures.delete(key)
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0
  }

  /** The next key, or undefined once shut down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift()
    if (key !== undefined) {
      this.dirty.delete(key)
      this.processing.add(key)
      return Promise.resolve(key)
    }
    if (this.shut) return Promise.resolve(undefined)
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  done(key: string): void {
    this.processing.delete(key)
    if (this.dirty.has(key)) {
      this.dirty.delete(key)
      this.add(key)
    }
  }

  shutdown(): void {
    this.shut = true
    for (const t of this.timers.keys()) clearTimeout(t)
    this.timers.clear()
    for (const w of this.waiters) w(undefined)
    this.waiters = []
  }
}
