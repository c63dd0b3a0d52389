// The manager, after controller-runtime's: it owns the runnables (caches, sources, the
// server, leader-only controllers), starts them in order and stops them in reverse.
// Shutdown drains first: readiness goes false, then after the delay the server stops
// accepting, finishes what is in flight, and the rest stops.

import type { Logger } from 'pino'
import { errorMessage } from './lib/errors.js'
import { sleep } from './lib/backoff.js'
import type { Readiness } from './server/readiness.js'

export interface Runnable {
  readonly name: string
  start(): void | Promise<void>
  stop(): Promise<void>
}

export class Manager {
  private readonly runnables: Runnable[] = []
  private started: Runnable[] = []
  private stopping: Promise<void> | undefined

  constructor(
    private readonly log: Logger,
    private readonly readiness: Readiness,
    private readonly shutdownDelayMs = 0,
  ) {}

  add(r: Runnable): this {
    this.runnables.push(r)
    return this
  }

  async start(): Promise<void> {
    for (const r of this.runnables) {
      if (this.stopping) return // a signal arrived while an earlier runnable was starting
      await r.start()
      if (this.stopping) {
        await r.stop()
        return
      }
      this.started.push(r)
      this.log.debug({ runnable: r.name }, 'started')
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop()
    return this.stopping
  }

  private async doStop(): Promise<void> {
    this.readiness.drain()
    if (this.shutdownDelayMs > 0) {
      this.log.info({ delayMs: this.shutdownDelayMs }, 'shutting down: not ready, still serving while endpoints catch up')
      await sleep(this.shutdownDelayMs)
    }
    for (const r of [...this.started].reverse()) {
      try {
        await r.stop()
        this.log.debug({ runnable: r.name }, 'stopped')
      } catch (err) {
        this.log.error({ runnable: r.name, err: errorMessage(err) }, 'stop failed')
      }
    }
    this.started = []
  }
}
