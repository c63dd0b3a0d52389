// The set of backends the policy configures, instrumented. The registration path calls
// every backend with bounded retries; the controller calls once and lets its queue retry.
// A call whose caller aborts (leadership lost) is abandoned at once, whether or not the
// backend honours the signal; a backend whose calls succeed again after failing is
// announced, so that retries waiting out a long backoff can go now.

import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import type { SecretReader } from '../kube/secrets.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { AbortedError, abortable, errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { canonicalJson } from '../lib/canonical-json.js'
import type { AdvertiseMode, AdvertiseSpec } from '../policy/backends/advertise.js'
import type { PolicySpec } from '../policy/policy.js'
import { AdvertiseError, Advertiser, type AdvertiseSource } from './advertise.js'
import { type Backend, BackendError, type BackendOp } from './backend.js'
import { createBackend } from './catalogue.js'
import type { PodLookup } from './kubernetes.js'
import type { PodRef } from '../kube/pod-ref.js'
import { ClaimRefusedError, type ClaimResult, type ClusterIdentity } from './ownership.js'
import type { Advertised, RegistryRecord } from './record.js'

/** The pod a record is for, and the advertise modes its sealed decision chose. */
export interface RecordContext {
  pod: AdvertiseSource
  advertise?: Readonly<Record<string, AdvertiseMode>>
}

export class RegistryError extends BackendError {
  constructor(
    readonly failures: readonly BackendError[],
    op: BackendOp,
  ) {
    super(failures.map((f) => f.backend).join(', '), op, failures.map((f) => f.message).join('; '), failures.every((f) => f.retryable))
    this.name = 'RegistryError'
  }
}

export interface RetryBudget {
  /** Stop retrying after this time (ms since epoch). Undefined: one attempt. */
  deadline?: number
  /** Abandon the call (and its retries) when this fires. */
  signal?: AbortSignal
}

export class BackendSet {
  private current: Backend[] = []
  private spec = ''
  private readonly retry = new Map<string, { initialMs: number; maxMs: number }>()
  private readonly advertise = new Map<string, AdvertiseSpec>()
  private readonly advertiser: Advertiser
  /** What each backend was last given for a pod advertised other than by podIP, by
   *  backend and uid: what the drift check compares the pod's copy against. */
  private readonly written = new Map<string, Advertised>()
  private configuring: Promise<void> = Promise.resolve()
  private readonly failing = new Set<string>()
  private readonly recoveredListeners: Array<(backend: string) => void> = []
  private clusterName = ''
  private clusterUid = ''
  /** Backends with a store hold a claim on this cluster's name before their first write:
   *  by backend name, whether it is held, or why not. */
  private readonly claims = new Map<string, { held: true } | { held: false; reason: string }>()
  private readonly sweepOff = new Set<string>()

  constructor(
    private readonly client: KubeClient,
    private readonly pods: PodLookup,
    private readonly secrets: SecretReader,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.advertiser = new Advertiser(client)
    metrics.probes.backends = () => this.current.map((b) => ({ backend: b.name, healthy: this.problem(b) === undefined }))
  }

  /** This cluster as its entries and claims name it (policy cluster.name; the kube-system UID). */
  get cluster(): ClusterIdentity {
    return { name: this.clusterName, uid: this.clusterUid }
  }

  /** The kube-system namespace's UID, read once at start: claims wait for it. */
  setClusterUid(uid: string): void {
    if (uid === this.clusterUid) return
    this.clusterUid = uid
    this.claims.clear()
  }

  /** Whether the sweep may remove and rewrite this backend's entries (its policy `sweep`). */
  sweeps(b: Backend): boolean {
    return !this.sweepOff.has(b.name)
  }

  /** Rebuilds the backends when the policy's registry or discovery settings change.
   *  Calls are serialised; the old backends are closed once the new ones are in place. */
  configure(policy: PolicySpec): Promise<void> {
    this.configuring = this.configuring.then(() => this.apply(policy))
    return this.configuring
  }

  private async apply(policy: PolicySpec): Promise<void> {
    const dubbo = policy.tenancy.dubbo.parameters
    const spec = canonicalJson({ registry: policy.registry.backends, discovery: policy.discovery, cluster: policy.cluster.name, dubbo })
    if (spec === this.spec) return
    const cluster = policy.cluster.name
    const ctx = { client: this.client, secrets: this.secrets, pods: this.pods, discovery: policy.discovery, metrics: this.metrics, log: this.log, cluster, dubboParameters: new Set(dubbo) }
    let next: Backend[]
    try {
      next = await Promise.all(policy.registry.backends.map((b) => createBackend(b, ctx)))
    } catch (err) {
      // The policy validated, so this is a load failure of ours: keep the backends we have.
      this.log.error({ err: errorMessage(err) }, 'cannot set up the registry backends; keeping the previous ones')
      return
    }
    const old = this.current
    this.spec = spec
    this.retry.clear()
    this.advertise.clear()
    this.claims.clear()
    this.sweepOff.clear()
    this.clusterName = cluster
    for (const b of policy.registry.backends) {
      if (!b.sweep) this.sweepOff.add(b.name)
      if ('advertise' in b) this.advertise.set(b.name, b.advertise)
      if ('retry' in b) this.retry.set(b.name, { initialMs: b.retry.initialDelayMs, maxMs: b.retry.maxDelayMs })
    }
    this.current = next
    this.log.info({ backends: next.map((b) => `${b.name} (${b.type})`) }, 'registry backends configured')
    await Promise.allSettled(old.map((b) => b.close?.()))
  }

  /** Closes every backend (at exit). */
  async close(): Promise<void> {
    await this.configuring
    const old = this.current
    this.current = []
    await Promise.allSettled(old.map((b) => b.close?.()))
  }

  /** Backends that report a problem, by name. */
  health(): Array<{ backend: string; reason: string }> {
    const out: Array<{ backend: string; reason: string }> = []
    for (const b of this.current) {
      const reason = this.problem(b)
      if (reason !== undefined) out.push({ backend: b.name, reason })
    }
    return out
  }

  /** Why backend `b` cannot serve: its own word, else a claim on this cluster's name it refused. */
  private problem(b: Backend): string | undefined {
    const claim = this.claims.get(b.name)
    return b.health?.() ?? (claim && !claim.held ? claim.reason : undefined)
  }

  /**
   * Holds this cluster's claim on its name in backend `b` before its first write, list or
   * sweep (a backend with no store has nothing to claim). `recheck` reads the claim again
   * (each sweep does: a DR cluster may have taken the name over). A claim held by another
   * cluster refuses the backend: unhealthy, and every call fails without touching it.
   */
  async ensureClaim(b: Backend, signal?: AbortSignal, recheck = false): Promise<void> {
    if (!b.claim || this.clusterName === '') return
    const known = this.claims.get(b.name)
    if (known && !recheck) {
      if (known.held) return
      throw new BackendError(b.name, 'claim', known.reason, false)
    }
    if (this.clusterUid === '') throw new BackendError(b.name, 'claim', 'waiting for the kube-system namespace\'s UID to claim this cluster\'s name', true)
    let result: ClaimResult
    try {
      result = await abortable(b.claim(this.cluster, false, { signal }), signal, `backend ${b.name}: claim`)
    } catch (err) {
      if (err instanceof AbortedError) throw err
      throw err instanceof BackendError ? err : new BackendError(b.name, 'claim', errorMessage(err), true, { cause: err })
    }
    if (this.current.includes(b) === false) return // replaced by a new policy meanwhile
    this.metrics.claimRefused.set({ backend: b.name }, result.held ? 0 : 1)
    if (result.held) {
      if (result.created) this.log.info({ backend: b.name, cluster: this.clusterName, uid: this.clusterUid }, 'claimed this cluster\'s name in the backend')
      if (known && !known.held) this.log.info({ backend: b.name }, 'the claim on this cluster\'s name is ours again; the backend is in use')
      this.claims.set(b.name, { held: true })
      return
    }
    const reason = new ClaimRefusedError(b.name, result.holder, this.cluster).message
    if (!known || known.held) this.log.error({ backend: b.name, cluster: this.clusterName, holder: result.holder }, reason)
    this.claims.set(b.name, { held: false, reason })
    throw new BackendError(b.name, 'claim', reason, false)
  }

  get backends(): readonly Backend[] {
    return this.current
  }

  /** Called with a backend's name when its calls succeed again after failing. */
  onRecovered(fn: (backend: string) => void): void {
    this.recoveredListeners.push(fn)
  }

  /** Writes the record to every backend, each with the address it advertises. */
  async registerAll(record: RegistryRecord, budget: RetryBudget = {}, ctx?: RecordContext): Promise<void> {
    await this.all('register', async (b, signal) => b.register(await this.recordFor(b, record, ctx), { signal }), budget)
  }

  /** The record as backend `b` gets it: its advertise mode (the decision's choice, else the
   *  backend's policy setting) resolved for the pod. */
  async recordFor(b: Backend, unmarked: RegistryRecord, ctx: RecordContext | undefined): Promise<RegistryRecord> {
    const record = this.marked(unmarked)
    const spec = this.advertise.get(b.name)
    const mode = ctx?.advertise?.[b.name] ?? spec?.mode ?? 'podIP'
    const key = `${b.name}\u0000${record.uid}`
    if (mode === 'podIP') {
      this.written.delete(key)
      return record
    }
    if (!ctx || !spec) throw new BackendError(b.name, 'register', `pod ${record.namespace}/${record.pod}: advertise mode ${mode} needs the pod`, true)
    try {
      const advertised = await this.advertiser.resolve(ctx.pod, record, mode, spec)
      if (this.written.size > 100_000) this.written.clear()
      this.written.set(key, advertised)
      return { ...record, advertised }
    } catch (err) {
      const retryable = !(err instanceof AdvertiseError) || err.retryable
      throw new BackendError(b.name, 'register', errorMessage(err), retryable, { cause: err })
    }
  }

  /** recordFor without the apiserver: undefined where the address is not known here. */
  expectedFor(b: Backend, unmarked: RegistryRecord, advertise?: Readonly<Record<string, AdvertiseMode>>): RegistryRecord | undefined {
    const record = this.marked(unmarked)
    const mode = advertise?.[b.name] ?? this.advertise.get(b.name)?.mode ?? 'podIP'
    if (mode === 'podIP') return record
    const advertised = this.written.get(`${b.name}\u0000${record.uid}`)
    return advertised && advertised.mode === mode ? { ...record, advertised } : undefined
  }

  /** The record with this cluster's mark (a record made by buildRecord has none): what every
   *  backend is given, and what the registration API answers. */
  marked(record: RegistryRecord): RegistryRecord {
    if (this.clusterName === '') return record
    if (record.cluster === this.clusterName && (this.clusterUid === '' || record.clusterUID === this.clusterUid)) return record
    return { ...record, cluster: this.clusterName, ...(this.clusterUid === '' ? {} : { clusterUID: this.clusterUid }) }
  }

  async deregisterAll(ref: PodRef, budget: RetryBudget = {}): Promise<void> {
    await this.all('deregister', (b, signal) => b.deregister(ref, { signal }), budget)
  }

  /** One attempt at a backend call, no retry: timed and counted by backend and op, and
   *  abandoned (AbortedError) when `signal` fires; the first success after a failure
   *  announces the backend's recovery (onRecovered). Other errors become BackendErrors. */
  async attempt<T>(b: Backend, op: BackendOp, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const end = this.metrics.backendDuration.startTimer({ backend: b.name, op })
    try {
      const v = await abortable(fn(), signal, `backend ${b.name}: ${op}`)
      this.metrics.backendRequests.inc({ backend: b.name, op, result: 'ok' })
      if (this.failing.delete(b.name)) {
        this.log.info({ backend: b.name }, 'backend answers again')
        for (const l of this.recoveredListeners) l(b.name)
      }
      return v
    } catch (err) {
      if (err instanceof AbortedError || signal?.aborted) {
        this.metrics.backendRequests.inc({ backend: b.name, op, result: 'aborted' })
        throw err instanceof AbortedError ? err : new AbortedError(`backend ${b.name}: ${op}`)
      }
      this.metrics.backendRequests.inc({ backend: b.name, op, result: 'error' })
      this.failing.add(b.name)
      throw err instanceof BackendError ? err : new BackendError(b.name, op, errorMessage(err), true, { cause: err })
    } finally {
      end()
    }
  }

  private async all(op: BackendOp, fn: (b: Backend, signal?: AbortSignal) => Promise<void>, budget: RetryBudget): Promise<void> {
    await this.configuring
    // Before the first policy there is nowhere to write: never report that as success.
    if (this.spec === '') throw new RegistryError([new BackendError('registry', op, 'no backends configured yet (waiting for a valid policy)')], op)
    const results = await Promise.allSettled(
      this.current.map((b) =>
        this.withRetry(
          b,
          op,
          async () => {
            await this.ensureClaim(b, budget.signal)
            await fn(b, budget.signal)
          },
          budget,
        ),
      ),
    )
    const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as BackendError | AbortedError] : []))
    const aborted = rejected.find((e) => e instanceof AbortedError)
    if (aborted) throw aborted
    if (rejected.length > 0) throw new RegistryError(rejected as BackendError[], op)
  }

  private async withRetry(b: Backend, op: BackendOp, fn: () => Promise<void>, budget: RetryBudget): Promise<void> {
    const r = this.retry.get(b.name) ?? { initialMs: 200, maxMs: 5000 }
    const backoff = new Backoff({ initialMs: r.initialMs, maxMs: r.maxMs })
    for (;;) {
      try {
        await this.attempt(b, op, fn, budget.signal)
        return
      } catch (err) {
        if (err instanceof AbortedError) throw err
        const e = err as BackendError
        const delay = backoff.next()
        if (!e.retryable || budget.deadline === undefined || Date.now() + delay > budget.deadline) throw e
        this.log.warn({ backend: b.name, op, err: e.message, attempt: backoff.attempts, retryInMs: Math.round(delay) }, 'backend call failed; retrying')
        await sleep(delay, budget.signal)
        if (budget.signal?.aborted) throw new AbortedError(`backend ${b.name}: ${op}`)
      }
    }
  }
}
