// What every watch cache shares: a name the manager runs it by, and one reflector that is
// started and stopped with it. A cache says what it keeps and how it is read; this is the rest.

/** The part of a Reflector a cache runs (any of its type parameters). */
interface Running {
  start(): void
  stop(): Promise<void>
  readonly synced: boolean
  readonly size: number
}

export abstract class Cache {
  /** The runnable's name in the manager's log lines. */
  abstract readonly name: string
  abstract readonly reflector: Running

  start(): void {
    this.reflector.start()
  }

  stop(): Promise<void> {
    return this.reflector.stop()
  }

  /** Listed once, and watching. */
  get synced(): boolean {
    return this.reflector.synced
  }

  /** Objects held. */
  get size(): number {
    return this.reflector.size
  }
}
