// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
// the holder renews every retry period; others take over once they have seen no renewal
// for a whole lease duration (measured on their own clock, never the holder's); a clean
// stop releases the lease.
//
// What makes it safe: a follower cannot take over before a lease duration after the
// leader's last successful renewal began, so the leader gives itself less. Every renewal
// (the GET and the PUT) is cut off at `renewDeadline` after the last successful one
// began; by then the leader has stepped down: `enlist_leader` is 0, the leader-only work's
// AbortSignal has fired, and the work is stopping, with `leaseDuration - renewDeadline`
// left for it to do so. Work cut short is redone by the next leader (it is level-based).
// Should it still not have stopped when the lease could pass, `onStopOverrun` is called
// (serve exits the process) rather than let two leaders act at once.

import type { Logger } from 'pino'
import { type CallOptions, KubeApiError, type Query } from '../kube/client.js'
import { sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'

/** What the elector needs of a client (KubeClient; fakes in tests). */
export interface LeaseClient {
  get<T>(path: string, query?: Query, opts?: CallOptions): Promise<T>
  create<T>(path: string, body: unknown, query?: Query, opts?: CallOptions): Promise<T>
  replace<T>(path: string, body: unknown, opts?: CallOptions): Promise<T>
}

export interface LeaderOptions {
  client: LeaseClient
  namespace: string
  name: string
  identity: string
  leaseDurationMs: number
  renewDeadlineMs: number
  retryPeriodMs: number
  log: Logger
  metrics: Pick<Metrics, 'leader' | 'leaderRenewFailures'>
  /** Starts the leader-only work; `signal` fires the moment leadership is lost. Not
   *  awaited: the lease keeps being renewed while the work starts. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>
  /** Stops the leader-only work; resolves once it has stopped. */
  onStoppedLeading: () => void | Promise<void>
  /** The work had not stopped when the lease could pass to another replica. */
  onStopOverrun?: () => void
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string }
  spec: {
    holderIdentity?: string | null
    leaseDurationSeconds?: number
    acquireTime?: string | null
    renewTime?: string | null
    leaseTransitions?: number
  }
}

type Attempt = 'acquired' | 'held-by-other' | 'conflict'

// metav1.MicroTime
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

export class LeaderElector {
  readonly name = 'leader-election'
  private leading = false
  private readonly abort = new AbortController()
  private work: AbortController | undefined
  private loop: Promise<void> | undefined
  private observed: { key: string; at: number } | undefined
  /** When the last successful acquisition or renewal began (our clock). */
  private renewedAt = 0

  constructor(private readonly o: LeaderOptions) {
    if (!(o.retryPeriodMs < o.renewDeadlineMs && o.renewDeadlineMs < o.leaseDurationMs)) {
      throw new Error('leader election needs retryPeriod < renewDeadline < leaseDuration')
    }
  }

  get isLeader(): boolean {
    return this.leading
  }

  start(): void {
    this.loop ??= this.run()
  }

  /** Stops leading (the work first), then releases the lease for another replica. */
  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
    if (this.leading) {
      await this.stepDown('shutting down')
      await this.release()
    }
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.name}`
  }

  private async run(): Promise<void> {
    const { log, retryPeriodMs, renewDeadlineMs, metrics } = this.o
    const signal = this.abort.signal
    while (!signal.aborted) {
      const began = Date.now()
      const deadline = this.leading ? this.renewedAt + renewDeadlineMs : began + renewDeadlineMs
      if (this.leading && began >= deadline) {
        await this.stepDown('could not renew the lease within the renew deadline')
        continue
      }
      let result: Attempt | 'failed'
      try {
        result = await this.tryAcquireOrRenew(deadline, signal)
      } catch (err) {
        if (signal.aborted) break
        result = 'failed'
        metrics.leaderRenewFailures.inc()
        log.warn({ err: errorMessage(err), lease: `${this.o.namespace}/${this.o.name}`, leading: this.leading }, 'leader election: lease request failed')
      }
      if (signal.aborted) break
      if (result === 'acquired') {
        this.renewedAt = began
        if (!this.leading) this.startLeading()
      } else if (this.leading && result === 'held-by-other') {
        await this.stepDown('another replica holds the lease')
        continue
      } else if (this.leading && Date.now() >= deadline) {
        await this.stepDown('could not renew the lease within the renew deadline')
        continue
      }
      // jitter as client-go does, so candidates do not move in lockstep; a leader never
      // sleeps past its renew deadline
      let wait = retryPeriodMs * (this.leading ? 1 : 1 + Math.random() * 0.2)
      if (this.leading) wait = Math.min(wait, Math.max(0, this.renewedAt + renewDeadlineMs - Date.now()))
      await sleep(wait, signal)
    }
  }

  private startLeading(): void {
    this.leading = true
    this.o.metrics.leader.set(1)
    // the text operators (and tests) search for: kept as it was
    this.o.log.info({ identity: this.o.identity }, 'became leader: starting the controller')
    const work = new AbortController()
    this.work = work
    void Promise.resolve()
      .then(() => this.o.onStartedLeading(work.signal))
      .catch((err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'starting the leader-only work failed'))
  }

  private async stepDown(reason: string): Promise<void> {
    if (!this.leading) return
    this.leading = false
    this.o.metrics.leader.set(0)
    this.work?.abort()
    const { log, leaseDurationMs } = this.o
    log[reason === 'shutting down' ? 'info' : 'error']({ identity: this.o.identity, reason }, 'stopped leading: abandoning the leader-only work')
    // after this instant another replica may take the lease
    const overrun = setTimeout(
      () => {
        log.fatal({ identity: this.o.identity }, 'the leader-only work did not stop before the lease could pass to another replica')
        this.o.onStopOverrun?.()
      },
      Math.max(0, this.renewedAt + leaseDurationMs - Date.now()),
    )
    try {
      await this.o.onStoppedLeading()
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'stopping the leader-only work failed')
    } finally {
      clearTimeout(overrun)
    }
    log.info({ identity: this.o.identity }, 'the leader-only work has stopped')
  }

  private async tryAcquireOrRenew(deadline: number, signal: AbortSignal): Promise<Attempt> {
    const call = (): CallOptions => ({ signal, timeoutMs: Math.max(1, deadline - Date.now()) })
    const now = Date.now()
    const spec = (prev?: Lease['spec']): Lease['spec'] => ({
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: prev?.holderIdentity === this.o.identity && prev.acquireTime ? prev.acquireTime : microTime(new Date(now)),
      renewTime: microTime(new Date(now)),
      leaseTransitions: prev ? (prev.holderIdentity === this.o.identity ? (prev.leaseTransitions ?? 0) : (prev.leaseTransitions ?? 0) + 1) : 0,
    })

    let lease: Lease
    try {
      lease = await this.o.client.get<Lease>(this.path, undefined, call())
    } catch (err) {
      if (!(err instanceof KubeApiError && err.notFound)) throw err
      try {
        await this.o.client.create<Lease>(
          `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`,
          { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.o.namespace }, spec: spec() },
          undefined,
          call(),
        )
        return 'acquired'
      } catch (e) {
        if (e instanceof KubeApiError && e.conflict) return 'conflict' // someone else created it first
        throw e
      }
    }

    const key = `${lease.spec.holderIdentity ?? ''}|${lease.spec.renewTime ?? ''}`
    if (this.observed?.key !== key) this.observed = { key, at: Date.now() }
    const holder = lease.spec.holderIdentity
    const duration = (lease.spec.leaseDurationSeconds ?? Math.ceil(this.o.leaseDurationMs / 1000)) * 1000
    if (holder && holder !== this.o.identity) {
      if (this.leading || this.observed.at + duration > Date.now()) return 'held-by-other'
    }

    try {
      await this.o.client.replace<Lease>(this.path, { ...lease, spec: spec(lease.spec) }, call())
      if (holder !== this.o.identity) this.o.log.info({ previous: holder || null }, 'acquired the lease')
      return 'acquired'
    } catch (err) {
      // A conflict may be our own renewal that we gave up on but that still landed; the
      // next attempt reads the lease again.
      if (err instanceof KubeApiError && err.conflict) return 'conflict'
      throw err
    }
  }

  /** Lets another replica take over at once instead of after a lease duration. */
  private async release(): Promise<void> {
    const opts = { timeoutMs: this.o.renewDeadlineMs }
    try {
      const current = await this.o.client.get<Lease>(this.path, undefined, opts)
      if (current.spec.holderIdentity !== this.o.identity) return
      await this.o.client.replace(
        this.path,
        { ...current, spec: { ...current.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(), acquireTime: null } },
        opts,
      )
      this.o.log.info('released the lease')
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'could not release the lease; another replica takes over when it expires')
    }
  }
}
