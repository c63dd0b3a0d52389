// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
// the holder renews every retry period; others take over once they have seen no renewal
// for a whole lease duration (measured on their own clock, never the holder's); a holder
// that cannot renew within the renew deadline steps down; a clean stop releases the lease.

import type { Logger } from 'pino'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import { sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'

export interface LeaderOptions {
  client: KubeClient
  namespace: string
  name: string
  identity: string
  leaseDurationMs: number
  renewDeadlineMs: number
  retryPeriodMs: number
  log: Logger
  metrics: Metrics
  onStartedLeading: () => void | Promise<void>
  onStoppedLeading: () => void | Promise<void>
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

// metav1.MicroTime
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

export class LeaderElector {
  private leading = false
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined
  private observed: { key: string; at: number } | undefined
  private lease: Lease | undefined

  constructor(private readonly o: LeaderOptions) {}

  get isLeader(): boolean {
    return this.leading
  }

  start(): void {
    this.loop ??= this.run()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
    if (this.leading) {
      await this.stepDown()
      await this.release()
    }
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.name}`
  }

  private async run(): Promise<void> {
    const { log, retryPeriodMs, renewDeadlineMs } = this.o
    let lastRenew = 0
    while (!this.abort.signal.aborted) {
      let ok = false
      try {
        ok = await this.tryAcquireOrRenew()
      } catch (err) {
        log.warn({ err: errorMessage(err), lease: `${this.o.namespace}/${this.o.name}` }, 'leader election: lease request failed')
      }
      if (ok) {
        lastRenew = Date.now()
        if (!this.leading) {
          this.leading = true
          this.o.metrics.leader.set(1)
          log.info({ identity: this.o.identity }, 'became leader: starting the controller')
          await this.o.onStartedLeading()
        }
      } else if (this.leading && Date.now() - lastRenew > renewDeadlineMs) {
        log.error({ identity: this.o.identity }, 'could not renew the lease in time: stepping down')
        await this.stepDown()
      }
      // jitter as client-go does, so candidates do not move in lockstep
      await sleep(retryPeriodMs * (this.leading ? 1 : 1 + Math.random() * 0.2), this.abort.signal)
    }
  }

  private async stepDown(): Promise<void> {
    this.leading = false
    this.o.metrics.leader.set(0)
    await this.o.onStoppedLeading()
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
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
      lease = await this.o.client.get<Lease>(this.path)
    } catch (err) {
      if (!(err instanceof KubeApiError && err.notFound)) throw err
      try {
        this.lease = await this.o.client.create<Lease>(`/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.o.name, namespace: this.o.namespace },
          spec: spec(),
        })
        return true
      } catch (e) {
        if (e instanceof KubeApiError && e.conflict) return false // someone else created it first
        throw e
      }
    }

    const key = `${lease.spec.holderIdentity ?? ''}|${lease.spec.renewTime ?? ''}`
    if (this.observed?.key !== key) this.observed = { key, at: now }
    const holder = lease.spec.holderIdentity
    const duration = (lease.spec.leaseDurationSeconds ?? Math.ceil(this.o.leaseDurationMs / 1000)) * 1000
    if (holder && holder !== this.o.identity && this.observed.at + duration > now) return false

    try {
      this.lease = await this.o.client.replace<Lease>(this.path, { ...lease, spec: spec(lease.spec) })
      if (holder !== this.o.identity) this.o.log.info({ previous: holder || null }, 'acquired the lease')
      return true
    } catch (err) {
      if (err instanceof KubeApiError && err.conflict) return false
      throw err
    }
  }

  /** Lets another replica take over at once instead of after a lease duration. */
  private async release(): Promise<void> {
    if (!this.lease) return
    try {
      const current = await this.o.client.get<Lease>(this.path)
      if (current.spec.holderIdentity !== this.o.identity) return
      await this.o.client.replace(this.path, {
        ...current,
        spec: { ...current.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(), acquireTime: null },
      })
      this.o.log.info('released the lease')
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'could not release the lease; another replica takes over when it expires')
    }
  }
}
