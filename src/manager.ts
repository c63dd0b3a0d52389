// The manager, after controller-runtime's: it owns the runnables (caches, sources, the
// server, leader-only controllers), starts them in order and stops them in reverse.
// Runnables that need leader election (controller-runtime's LeaderElectionRunnable) run
// only while this replica leads: the election starts where the first of them was added,
// starts them in order when the lease is won (with a signal that fires the moment it is
// lost) and stops them together when it is lost or at exit. Without an election, this
// replica leads alone from that point on.
// Shutdown drains first: readiness goes false, then after the delay the server stops
// accepting, finishes what is in flight, and the rest stops.

import type { Logger } from 'pino'
import { errorMessage } from './lib/errors.js'
import { sleep } from './lib/backoff.js'
import type { Readiness } from './server/readiness.js'

export interface Runnable {
  readonly name: string
  /** `signal`, for a runnable that needs leader election: fires when leadership is lost. */
  start(signal?: AbortSignal): void | Promise<void>
  stop(): Promise<void>
  /** True: started only on the replica holding the lease, and stopped when it is lost. */
  needLeaderElection?(): boolean
}

/**
 * A leader-only runnable that reconciles at once, then every `intervalMs`, while this replica
 * leads (wait.UntilWithContext in a LeaderElectionRunnable). Losing the lease, or stop(),
 * abandons the apiserver calls in flight; a failed reconcile is logged and tried again at
 * the next tick, level-based, so nothing is carried over from the failed one.
 */
export abstract class LeaderLoop implements Runnable {
  abstract readonly name: string
  private abort: AbortController | undefined
  private loop: Promise<void> | undefined

  protected constructor(
    private readonly loopOptions: { intervalMs: number; log: Logger; what: string },
  ) {}

  /** One pass: read the state, move it one step closer to the goal. */
  abstract reconcile(signal?: AbortSignal): Promise<void>

  needLeaderElection(): boolean {
    return true
  }

  start(signal?: AbortSignal): void {
    if (this.loop) return
    const abort = new AbortController()
    this.abort = abort
    signal?.addEventListener('abort', () => abort.abort(), { once: true })
    const { intervalMs, log, what } = this.loopOptions
    this.loop = (async () => {
      while (!abort.signal.aborted) {
        try {
          await this.reconcile(abort.signal)
        } catch (err) {
          if (abort.signal.aborted) break
          log.error({ err: errorMessage(err) }, `${what}: reconcile failed; retrying`)
        }
        await sleep(intervalMs, abort.signal)
      }
    })()
  }

  async stop(): Promise<void> {
    this.abort?.abort()
    await this.loop
    this.loop = undefined
  }
}

/** What the leader election calls as this replica wins and loses the lease. */
export interface LeadershipHooks {
  onStartedLeading(signal?: AbortSignal): Promise<void>
  onStoppedLeading(): Promise<void>
}

export interface ManagerOptions {
  log: Logger
  readiness: Readiness
  /** On stop, stay up (not ready) this long before stopping anything. */
  shutdownDelayMs?: number
  /** Makes the leader election (a runnable) that calls `hooks`; absent: lead alone. */
  leaderElection?: (hooks: LeadershipHooks) => Runnable
}

export class Manager {
  private readonly runnables: Runnable[] = []
  private readonly leaderOnly: Runnable[] = []
  private started: Runnable[] = []
  private stopping: Promise<void> | undefined

  constructor(private readonly o: ManagerOptions) {}

  add(r: Runnable): this {
    if (r.needLeaderElection?.()) {
      if (this.leaderOnly.length === 0) this.runnables.push(this.election())
      this.leaderOnly.push(r)
    } else this.runnables.push(r)
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
      this.o.log.debug({ runnable: r.name }, 'started')
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop()
    return this.stopping
  }

  private election(): Runnable {
    const hooks: LeadershipHooks = {
      onStartedLeading: async (signal) => {
        for (const r of this.leaderOnly) await r.start(signal)
      },
      onStoppedLeading: async () => {
        await Promise.all(this.leaderOnly.map((r) => r.stop()))
      },
    }
    return this.o.leaderElection?.(hooks) ?? { name: 'leader-election', start: () => hooks.onStartedLeading(), stop: () => hooks.onStoppedLeading() }
  }

  private async doStop(): Promise<void> {
    const { log, readiness, shutdownDelayMs = 0 } = this.o
    readiness.drain()
    if (shutdownDelayMs > 0) {
      log.info({ delayMs: shutdownDelayMs }, 'shutting down: not ready, still serving while endpoints catch up')
      await sleep(shutdownDelayMs)
    }
    for (const r of [...this.started].reverse()) {
      try {
        await r.stop()
        log.debug({ runnable: r.name }, 'stopped')
      } catch (err) {
        log.error({ runnable: r.name, err: errorMessage(err) }, 'stop failed')
      }
    }
    this.started = []
  }
}
