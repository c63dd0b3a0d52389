// The controller (leader only). Level-based: for each managed pod it makes the registry
// match the pod's state, whatever events led there. A terminating, finished or vanished
// pod is deregistered from every backend and its condition set False; failures come back
// with backoff, never dropped. A periodic sweep lists every backend and removes entries
// whose pod no longer exists (force deletes, lost nodes, an enlist outage) and re-writes
// entries a backend has lost, so nothing stale survives and nothing registered is missing.
// The sweep goes on past an entry it cannot fix (counted, and retried by the next sweep),
// and stops early only when failures in a row say the backend or the apiserver is down.
//
// All of it stops the moment leadership is lost: the AbortSignal reaches every backend
// and apiserver call in flight, and whatever was cut short is redone by the next leader.

import { randomBytes } from 'node:crypto'
import type { V1Pod } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { PodView } from '../kube/pod-view.js'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import type { EventRecorder } from '../kube/events.js'
import { type PodRef, podPath, podRefOf } from '../kube/pod-ref.js'
import type { ManagedPods } from '../kube/pods.js'
import { AbortedError, errorMessage } from '../lib/errors.js'
import { TokenBucket } from '../lib/rate-limit.js'
import type { Metrics } from '../metrics.js'
import { deregisteredOnRequest, registeredCondition, setRegisteredCondition } from '../registration/condition.js'
import type { AdvertiseMode } from '../policy/backends/advertise.js'
import type { Backend } from '../registry/backend.js'
import { buildRecord, type RegistryRecord } from '../registry/record.js'
import type { BackendSet } from '../registry/backend-set.js'
import { FOREIGN_KINDS, type ListedEntry, ownership } from '../registry/ownership.js'
import { type BackendStatus, type DriftItem, STATUS_ITEMS_MAX } from '../contract/status-report.js'
import { WorkQueue } from './queue.js'

export interface ControllerOptions {
  client: KubeClient
  pods: ManagedPods
  registry: BackendSet
  events: EventRecorder
  metrics: Metrics
  log: Logger
  /** Whether the decision keys are known yet: until they are, a cached pod without an
   *  opened seal may still have one (it is deregistered when it goes, to be safe). */
  keysKnown: () => boolean
  sweepIntervalMs: () => number
  /** Requests per second one backend's sweep may make (registry.sweepRequestsPerSecond). */
  sweepRate?: () => number
  /** Called after each whole sweep with what it found per backend (the status report). */
  onSweepReport?: (backends: BackendStatus[]) => void
  workers?: number
}

/** What goneReason reads, in either shape of a pod. */
export interface GoneSource {
  metadata?: { deletionTimestamp?: unknown }
  status?: { phase?: string }
}

/** Why the pod is on its way out (terminating, or finished), or undefined while it lives. */
export function goneReason(pod: GoneSource): string | undefined {
  if (pod.metadata?.deletionTimestamp) return 'the pod is terminating'
  const phase = pod.status?.phase
  if (phase === 'Succeeded' || phase === 'Failed') return `the pod has finished (${phase})`
  return undefined
}

// This many failures in a row end a backend's sweep: the backend or the apiserver is down,
// and every further entry would only wait out its timeout.
const SWEEP_FAILURES_IN_A_ROW = 10
// While reconciles wait out their backoff (up to 5 min each), one of them is tried this often:
// once it succeeds the backend is back, and every other goes at once (onRecovered). Recovery
// within seconds of an outage's end, for one extra call per period while it lasts.
const PROBE_MS = 5000

/** What one backend's sweep did, logged with "registry sweep finished". */
interface SweepStats {
  backend: string
  entries: number
  /** Entries not this cluster's (left alone): another cluster's, and unmarked. */
  other: number
  unmarked: number
  removed: number
  rewritten: number
  failures: number
  ms: number
}

export class RegistryController {
  readonly name = 'controller'
  private queue: WorkQueue | undefined
  private workers: Array<Promise<void>> = []
  private sweepTimer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined
  private abort: AbortController | undefined
  private probeTimer: NodeJS.Timeout | undefined
  /** Pods seen deleted, kept until every backend has confirmed their deregistration. */
  private readonly gone = new Map<string, PodRef>()
  /** Terminating pods already deregistered everywhere (a terminating pod cannot come back). */
  private readonly done = new Set<string>()
  /** When each stale entry was first seen, by backend and uid: the status report's "since". */
  private readonly staleSince = new Map<string, string>()

  constructor(private readonly o: ControllerOptions) {
    o.pods.on({
      add: (p) => this.enqueue(p),
      update: (p) => this.enqueue(p),
      delete: (p) => {
        // Followers keep nothing: the sweep a new leader runs first catches what they missed.
        const ref = podRefOf(p)
        if (!ref.uid || !this.queue) return
        const wasDone = this.done.delete(ref.uid)
        // A pod enlist never sealed (a look-alike) costs nothing when it goes: no queue
        // entry, no backend call (a deregistration by uid scans some backends).
        if (wasDone || !this.mayBeRegistered(p)) return
        this.gone.set(ref.uid, ref)
        this.updatePending()
        this.queue.add(ref.uid)
      },
    })
    // A backend that failed answers again: retries waiting out a long backoff go now.
    o.registry.onRecovered((backend) => {
      if (!this.queue || this.queue.waiting === 0) return
      o.log.info({ backend, waiting: this.queue.waiting }, 'a backend recovered: retrying the waiting reconciles now')
      this.queue.retryNow()
    })
  }

  /** Leader only (src/manager.ts). */
  needLeaderElection(): boolean {
    return true
  }

  get running(): boolean {
    return this.queue !== undefined
  }

  /** Starts the workers and the sweep; the pod cache must already be started. `signal`
   *  (leadership) firing abandons all work in flight at once; stop() then waits for it. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.queue) return
    const queue = new WorkQueue()
    this.queue = queue
    const abort = new AbortController()
    this.abort = abort
    if (signal?.aborted) abort.abort()
    else signal?.addEventListener('abort', () => abort.abort(), { once: true })
    const synced = await this.o.pods.reflector.waitForSync(abort.signal)
    if (this.queue !== queue || !synced) return // stopped while waiting
    for (const p of this.o.pods.pods()) this.enqueue(p)
    for (const uid of this.gone.keys()) queue.add(uid)
    this.workers = Array.from({ length: this.o.workers ?? 4 }, () => this.work(queue, abort.signal))
    const schedule = (): void => {
      if (this.queue !== queue) return
      this.sweepTimer = setTimeout(() => {
        this.sweeping = this.sweep(abort.signal).finally(schedule)
      }, this.o.sweepIntervalMs())
      this.sweepTimer.unref()
    }
    this.sweeping = this.sweep(abort.signal).finally(schedule)
    this.probeTimer = setInterval(() => {
      // only when nothing else is queued: a busy queue probes by itself
      if (queue.length === 0 && queue.waiting > 0) queue.retryEarliest()
    }, PROBE_MS)
    this.probeTimer.unref()
    this.o.log.info('controller started')
  }

  async stop(): Promise<void> {
    const queue = this.queue
    if (!queue) return
    this.queue = undefined
    this.abort?.abort()
    clearTimeout(this.sweepTimer)
    clearInterval(this.probeTimer)
    queue.shutdown()
    await Promise.all(this.workers)
    await this.sweeping
    this.o.log.info('controller stopped')
  }

  private enqueue(p: PodView): void {
    const uid = p.metadata.uid
    if (!uid || !this.queue) return
    // Pods on their way out need the controller; registration is the registrar's. A live
    // registered pod needs it only when its own copy of the record was edited.
    if (goneReason(p) ? !this.done.has(uid) : this.drifted(p).length > 0) this.queue.add(uid)
  }

  /**
   * Whether a pod could have been registered, so that its going needs backend calls: only a
   * pod whose seal opened (registration requires one). Anyone can put the managed label, a
   * status naming a made-up key, or even the condition on a pod: deregistering such a pod
   * would let a tenant make every deletion scan the backends. Until the keys are known,
   * assume it could. A registered pod whose seal this replica could not open when it went
   * (its key revoked, or not arrived yet) leaves an entry the sweep removes.
   */
  private mayBeRegistered(p: PodView): boolean {
    return !this.o.keysKnown() || p.enlist.sealed !== undefined
  }

  /** The record enlist wrote for a registered, live pod, as its sealed decision makes it. */
  private expectedRecord(p: PodView): RegistryRecord | undefined {
    const cond = registeredCondition(p)
    const sealed = p.enlist.sealed
    if (cond?.status !== 'True' || !cond.lastTransitionTime || !p.status.podIP || !sealed) return undefined
    return this.o.registry.marked(buildRecord(p, sealed.decision, cond.lastTransitionTime))
  }

  /** Backends whose copy of a registered pod's record, kept on the pod, was edited. */
  private drifted(p: PodView): string[] {
    const backends = this.o.registry.backends.filter((b) => b.drifted)
    if (backends.length === 0) return []
    const record = this.expectedRecord(p)
    if (!record) return []
    const advertise = this.chosenAdvertise(p)
    return backends
      .filter((b) => {
        const expected = this.o.registry.expectedFor(b, record, advertise)
        return expected !== undefined && b.drifted!(p, expected)
      })
      .map((b) => b.name)
  }

  /** The advertise modes the pod's sealed decision chose, if any. */
  private chosenAdvertise(p: PodView): Readonly<Record<string, AdvertiseMode>> | undefined {
    return p.enlist.sealed?.decision.advertise
  }

  private async work(queue: WorkQueue, signal: AbortSignal): Promise<void> {
    for (;;) {
      const uid = await queue.get()
      if (uid === undefined) return
      this.o.metrics.queueDepth.set(queue.length)
      try {
        await this.reconcile(uid, signal)
        queue.forget(uid)
      } catch (err) {
        if (err instanceof AbortedError || signal.aborted) continue // leadership lost: the next leader redoes it
        const delay = queue.addRateLimited(uid)
        this.o.metrics.queueRetries.inc()
        // Backend hosts, URLs and answers stay in enlist's log: the tenant's Event names the line.
        const logRef = randomBytes(4).toString('hex')
        this.o.log.warn({ ref: logRef, uid, err: errorMessage(err), retries: queue.retries(uid), retryInMs: delay }, 'reconcile failed; will retry')
        const pod = this.o.pods.byUid(uid)
        if (pod && queue.retries(uid) === 1) {
          const ref = podRefOf(pod)
          const what = goneReason(pod) ? 'the registry entry could not be removed' : 'the registry entry could not be written'
          this.o.events.record(ref, 'Warning', 'DeregistrationFailed', `${what}; retrying until it succeeds (enlist log ref ${logRef})`)
        }
      } finally {
        queue.done(uid)
      }
    }
  }

  /** Makes the registry match one pod's state. Idempotent. */
  async reconcile(uid: string, signal?: AbortSignal): Promise<void> {
    const pod = this.o.pods.byUid(uid)
    if (!pod) {
      const ref = this.gone.get(uid)
      if (!ref) return
      await this.o.registry.deregisterAll(ref, { signal })
      this.gone.delete(uid)
      this.updatePending()
      this.o.log.info({ pod: `${ref.namespace}/${ref.pod}`, uid }, 'deregistered: the pod is gone')
      return
    }
    const why = goneReason(pod)
    if (!why) return this.repair(pod, signal)
    if (this.done.has(uid)) return
    const ref = podRefOf(pod)
    if (!this.mayBeRegistered(pod)) {
      this.done.add(uid)
      return
    }
    await this.o.registry.deregisterAll(ref, { signal })
    if (registeredCondition(pod)?.status === 'True') {
      try {
        await setRegisteredCondition(this.o.client, ref, 'False', 'Deregistered', why, undefined, { signal })
      } catch (err) {
        if (!(err instanceof KubeApiError && (err.notFound || err.conflict))) throw err
      }
      this.o.events.record(ref, 'Normal', 'Deregistered', `deregistered: ${why}`)
    }
    this.done.add(uid)
    this.o.log.info({ pod: `${ref.namespace}/${ref.pod}`, uid, reason: why }, 'deregistered')
  }

  /** Writes a live registered pod's record again where a tenant edited enlist's copy. */
  private async repair(pod: PodView, signal?: AbortSignal): Promise<void> {
    const record = this.expectedRecord(pod)
    if (!record) return
    const advertise = this.chosenAdvertise(pod)
    for (const b of this.o.registry.backends) {
      const expected = b.drifted && this.o.registry.expectedFor(b, record, advertise)
      if (!expected || !b.drifted!(pod, expected)) continue
      await this.o.registry.attempt(b, 'register', async () => b.register(await this.o.registry.recordFor(b, record, { pod, advertise }), { signal }), signal)
      this.o.metrics.repaired.inc({ backend: b.name })
      const ref = podRefOf(pod)
      this.o.metrics.trustRejections.inc({ where: 'record', reason: 'edited' })
      this.o.events.record(ref, 'Warning', 'RecordRestored', `the discovery record on this pod was edited; enlist wrote its own again (backend ${b.name})`)
      this.o.log.warn({ backend: b.name, pod: `${ref.namespace}/${ref.pod}`, uid: ref.uid }, 'a registered pod\'s record was edited; restored it')
    }
  }

  /** Lists every backend; removes entries of pods that are gone, re-writes lost ones.
   *  An aborted sweep (leadership lost) stops where it is and counts nothing. */
  async sweep(signal: AbortSignal = new AbortController().signal): Promise<void> {
    const { registry, metrics, log } = this.o
    let failures = 0
    const started = Date.now()
    const backends: SweepStats[] = []
    const reports: BackendStatus[] = []
    for (const b of registry.backends) {
      if (signal.aborted) return
      const began = Date.now()
      const report = emptyStatus(b, registry.sweeps(b))
      const stats = await this.sweepBackend(b, signal, report)
      stats.ms = Date.now() - began
      metrics.sweepDuration.observe({ backend: b.name }, stats.ms / 1000)
      backends.push(stats)
      reports.push(report)
      failures += stats.failures
    }
    if (signal.aborted) return
    metrics.reconciles.inc({ result: failures > 0 ? 'error' : 'ok' })
    if (failures === 0) metrics.lastReconcile.set(Date.now() / 1000)
    log.info({ durationMs: Date.now() - started, pods: this.o.pods.size, backends }, 'registry sweep finished')
    this.o.onSweepReport?.(reports)
  }

  /**
   * One backend's sweep, and what it did; `report` is filled in for the status report.
   * Ownership decides every delete (src/registry/ownership.ts): only entries with this
   * cluster's mark are removed; another cluster's and unmarked ones are counted, never
   * touched. With the backend's `sweep: false` nothing is removed or rewritten at all.
   */
  private async sweepBackend(b: Backend, signal: AbortSignal, report: BackendStatus): Promise<SweepStats> {
    const { registry, pods, metrics, log } = this.o
    // Paced: a sweep of 50,000 entries spreads its requests out rather than flood the backend.
    const rate = this.o.sweepRate?.() ?? 50
    const bucket = new TokenBucket(rate, rate)
    const pace = (): Promise<void> => bucket.wait(signal)
    const { name: self, uid: selfUID } = registry.cluster
    const acting = registry.sweeps(b)
    let listed: ListedEntry[]
    try {
      // The claim is read again each sweep: a DR cluster may have taken the name over.
      await registry.ensureClaim(b, signal, true)
      listed = await registry.attempt(b, 'list', () => b.list({ signal, pace }), signal)
    } catch (err) {
      const stats: SweepStats = { backend: b.name, entries: 0, other: 0, unmarked: 0, removed: 0, rewritten: 0, failures: 0, ms: 0 }
      if (signal.aborted || err instanceof AbortedError) return stats
      report.problem = errorMessage(err)
      metrics.sweepFailures.inc({ backend: b.name, op: 'list' })
      log.error({ backend: b.name, err: errorMessage(err) }, 'registry sweep could not list this backend; the next sweep retries')
      return { ...stats, failures: 1 }
    }
    const entries: PodRef[] = []
    for (const e of listed) {
      const whose = ownership(e, self, selfUID)
      if (whose === 'own') {
        entries.push({ namespace: e.namespace, pod: e.pod, uid: e.uid })
        continue
      }
      report.entries[whose]++
      if (whose === 'other' && e.cluster !== undefined) report.otherClusters[e.cluster] = (report.otherClusters[e.cluster] ?? 0) + 1
    }
    report.entries.own = entries.length
    for (const kind of FOREIGN_KINDS) metrics.foreignEntries.set({ backend: b.name, kind }, report.entries[kind])
    if (report.entries.duplicate > 0) {
      // Never deleted (they may be another cluster's live pods) and said loudly: two clusters share a name.
      report.problem = `${report.entries.duplicate} entries carry this cluster's name "${self}" but were written by another cluster (another kube-system UID): two clusters share a name; give one of them another cluster.name`
      log.error({ backend: b.name, cluster: self, entries: report.entries.duplicate }, report.problem)
    }
    const stats: SweepStats = { backend: b.name, entries: entries.length, other: report.entries.other, unmarked: report.entries.unmarked, removed: 0, rewritten: 0, failures: 0, ms: 0 }
    const stale = (e: PodRef): void => {
      const key = `${b.name}\u0000${e.uid}`
      const since = this.staleSince.get(key) ?? new Date().toISOString()
      this.staleSince.set(key, since)
      report.staleCount++
      if (report.stale.length < STATUS_ITEMS_MAX) report.stale.push({ namespace: e.namespace, pod: e.pod, uid: e.uid, since })
    }
    const missing = (item: DriftItem): void => {
      report.missingCount++
      if (report.missing.length < STATUS_ITEMS_MAX) report.missing.push(item)
    }
    const forget = (uid: string): void => {
      this.staleSince.delete(`${b.name}\u0000${uid}`)
    }
    let failures = 0
    let inARow = 0
    /** Runs one step; false ends this backend's sweep (aborted, or too many failures in a row). */
    const step = async (op: string, pod: PodRef, fn: () => Promise<void>): Promise<boolean> => {
      try {
        await fn()
        inARow = 0
        return true
      } catch (err) {
        if (signal.aborted || err instanceof AbortedError) return false
        failures++
        inARow++
        metrics.sweepFailures.inc({ backend: b.name, op: err instanceof KubeApiError ? 'check' : op })
        log.warn({ backend: b.name, op, pod: `${pod.namespace}/${pod.pod}`, uid: pod.uid, err: errorMessage(err) }, 'registry sweep: this entry failed; going on, the next sweep retries it')
        if (inARow < SWEEP_FAILURES_IN_A_ROW) return true
        log.error({ backend: b.name, failures: inARow }, 'registry sweep: stopping this backend early, every step fails (is it, or the apiserver, down?)')
        return false
      }
    }

    const done = (): SweepStats => {
      report.removed = stats.removed
      report.rewritten = stats.rewritten
      return { ...stats, failures }
    }
    const have = new Set<string>()
    for (const e of entries) {
      have.add(e.uid)
      let gone = false
      let removed = false
      const go = await step('deregister', e, async () => {
        if (await this.isLive(e, signal, pace)) return forget(e.uid)
        gone = true
        if (!acting) return
        await pace()
        await registry.attempt(b, 'deregister', () => b.deregister(e, { signal }), signal)
        removed = true
        forget(e.uid)
        stats.removed++
        metrics.strays.inc({ backend: b.name })
        log.info({ backend: b.name, pod: `${e.namespace}/${e.pod}`, uid: e.uid }, 'removed a stray entry: its pod no longer exists')
      })
      // still there after the sweep: the sweep is off for this backend, or the removal failed
      if (gone && !removed) stale(e)
      if (!go) return done()
    }
    for (const pod of pods.pods()) {
      const uid = pod.metadata.uid
      const cond = registeredCondition(pod)
      if (!uid || have.has(uid) || goneReason(pod) || cond?.status !== 'True') continue
      const record = this.expectedRecord(pod)
      if (!record) continue // no decision of enlist's: it was never registered by enlist
      const ref = podRefOf(pod)
      const item: DriftItem = { ...ref, since: cond.lastTransitionTime ?? '' }
      if (!acting) {
        missing(item)
        continue
      }
      let written = false
      const go = await step('register', ref, async () => {
        await pace()
        await registry.attempt(b, 'register', async () => b.register(await registry.recordFor(b, record, { pod, advertise: this.chosenAdvertise(pod) }), { signal }), signal)
        written = true
        stats.rewritten++
        metrics.repaired.inc({ backend: b.name })
        log.warn({ backend: b.name, pod: `${pod.metadata.namespace}/${pod.metadata.name}`, uid }, 'backend had lost a registered pod; wrote it again')
      })
      if (!written) missing(item)
      if (!go) return done()
    }
    return done()
  }

  /** A live pod owns this entry. When the cache does not know the uid, ask the apiserver. */
  private async isLive(e: PodRef, signal: AbortSignal, pace: () => Promise<void>): Promise<boolean> {
    const cached = this.o.pods.byUid(e.uid)
    if (cached) return !goneReason(cached) && !deregisteredOnRequest(cached)
    if (!e.namespace || !e.pod) return false
    await pace()
    try {
      const pod = await this.o.client.get<V1Pod>(podPath(e), undefined, { signal })
      return pod.metadata?.uid === e.uid && !goneReason(pod)
    } catch (err) {
      if (err instanceof KubeApiError && err.notFound) return false
      throw err
    }
  }

  private updatePending(): void {
    this.o.metrics.pendingDeregistrations.set(this.gone.size)
  }
}

function emptyStatus(b: Backend, sweep: boolean): BackendStatus {
  return { backend: b.name, type: b.type, sweep, entries: { own: 0, other: 0, unmarked: 0, duplicate: 0 }, otherClusters: {}, removed: 0, rewritten: 0, stale: [], staleCount: 0, missing: [], missingCount: 0 }
}
