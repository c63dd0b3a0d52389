// The registration API's logic: a pod registers only itself (identity from its bound
// token), once its dependencies are ready; the record goes to every backend, then the
// condition enlist.io/registered turns True. Everything is idempotent.

import { randomBytes } from 'node:crypto'
import type { V1Pod } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { parseDecidedDependencies } from '../contract/dependencies.js'
import type { KeyStore } from '../decision/keys.js'
import { type Decision, openPodStatus } from '../decision/status.js'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import type { EventRecorder } from '../kube/events.js'
import { podPath, podRef } from '../kube/pod-ref.js'
import type { ManagedPods } from '../kube/pods.js'
import { sleep } from '../lib/backoff.js'
import { EnlistError, type ErrorCode, errorMessage, TooManyRequests } from '../lib/errors.js'
import { ConcurrencyLimit } from '../lib/rate-limit.js'
import type { Metrics } from '../metrics.js'
import { MANAGED_LABEL, STATUS_ANNOTATION } from '../names.js'
import { decide } from '../admission/decide.js'
import { registrationFindings, registrationProblems } from '../admission/tenancy.js'
import type { NamespaceLookup } from '../kube/namespaces.js'
import type { CompiledPolicy } from '../policy/policy.js'
import { buildRecord, type RegistryRecord } from '../registry/record.js'
import { type BackendSet, RegistryError } from '../registry/backend-set.js'
import type { PodIdentity, TokenAuthenticator } from './auth.js'
import { DEREGISTERED_REASON, deregisteredOnRequest, nowSeconds, registeredCondition, setRegisteredCondition } from './condition.js'
import { type DependencyCache, type Missing, missingDependencies } from './dependencies.js'

export class DependenciesNotReady extends EnlistError {
  constructor(readonly missing: readonly Missing[]) {
    super('ENLIST_DEPENDENCIES_NOT_READY', `waiting for ${missing.map((m) => `${m.dependency} (${m.reason})`).join(', ')}`, 503)
    this.name = 'DependenciesNotReady'
  }
}

export interface RegistrationDeps {
  client: KubeClient
  auth: TokenAuthenticator
  pods: ManagedPods
  dependencies: DependencyCache
  registry: BackendSet
  events: EventRecorder
  /** The keys that verify what admission decided (enlist.io/status). */
  keys: KeyStore
  metrics: Metrics
  log: Logger
  /** How long backend writes may retry within one request. */
  backendBudgetMs?: number
  /** Requests held waiting for dependencies at once: in all, and for one pod. */
  longPolls?: { total: number; perPod: number }
  /** The policy now and the namespace cache: a decision sealed under an older policy is
   *  checked again against them (absent: not re-checked, as in tests of other parts). */
  policy?: () => CompiledPolicy | undefined
  namespaces?: NamespaceLookup
  /** Problems the policy now finds with a sealed decision (names, metadata, interface
   *  ownership); empty: none. Default: registrationProblemsOf below. */
  problems?: (decision: Decision, policy: CompiledPolicy) => readonly string[]
}

export const DEFAULT_LONG_POLLS = { total: 2000, perPod: 2 }

export class RegistrationService {
  private readonly held: ConcurrencyLimit
  private readonly shutdown = new AbortController()

  constructor(private readonly d: RegistrationDeps) {
    const l = d.longPolls ?? DEFAULT_LONG_POLLS
    this.held = new ConcurrencyLimit(l.total, l.perPod)
  }

  /** Requests held now, waiting for dependencies. */
  get waiting(): number {
    return this.held.inUse
  }

  /** Shutting down: held requests are answered now (503, retry), and none is held again,
   *  so the server stops well inside the pod's grace period. */
  drain(): void {
    this.shutdown.abort()
  }

  async register(authorization: string | undefined, opts: { waitMs: number; signal?: AbortSignal; client?: string }): Promise<RegistryRecord> {
    const id = await this.d.auth.authenticate(authorization, opts.client)
    let pod = await this.livePod(id)
    if (pod.metadata?.deletionTimestamp) throw new EnlistError('ENLIST_CONFLICT', `pod ${id.namespace}/${id.pod} is being deleted`, 409)
    // Deregistered (at its request, or by the controller) is final for this pod: a new
    // registration would reuse its identity and event ids; a new pod registers afresh.
    if (deregisteredOnRequest(pod)) {
      this.d.metrics.registrations.inc({ op: 'register', result: 'after-deregistration', code: '409' })
      throw new EnlistError('ENLIST_CONFLICT', `pod ${id.namespace}/${id.pod} was deregistered and cannot register again; recreate the pod (for example, delete it and let its workload replace it)`, 409)
    }
    const reg = await this.decisionOf(pod, id)
    this.recheck(pod, reg, id)

    const deps = parseDecidedDependencies(reg.dependsOn)
    if (deps.length > 0 && !this.d.dependencies.synced) {
      throw new EnlistError('ENLIST_UNAVAILABLE', 'this replica is still reading Services and their endpoints, so it cannot judge dependencies yet; retry shortly', 503)
    }
    let missing = missingDependencies(deps, this.d.dependencies)
    if (missing.length > 0 && opts.waitMs > 0 && !this.shutdown.signal.aborted) {
      const release = this.held.acquire(id.uid)
      if (release === 'key') throw new TooManyRequests(`pod ${id.namespace}/${id.pod} already has a registration request waiting`, 2)
      if (release === 'total') {
        this.d.metrics.registrations.inc({ op: 'register', result: 'long-poll-limit', code: '429' })
        throw new TooManyRequests('enlist holds as many waiting registrations as it allows; retry shortly', 5)
      }
      try {
        const signal = opts.signal ? AbortSignal.any([opts.signal, this.shutdown.signal]) : this.shutdown.signal
        const deadline = Date.now() + opts.waitMs
        while (missing.length > 0 && Date.now() < deadline && !signal.aborted) {
          await this.d.dependencies.waitForChange(deps, deadline - Date.now(), signal)
          missing = missingDependencies(deps, this.d.dependencies)
        }
      } finally {
        release()
      }
    }
    if (missing.length > 0) {
      if (this.shutdown.signal.aborted) throw new EnlistError('ENLIST_SHUTTING_DOWN', 'this enlist replica is shutting down; retry (another replica answers)', 503)
      throw new DependenciesNotReady(missing)
    }

    // The kubelet knows the pod IP before init containers run, but writes it to the
    // apiserver asynchronously: on a real node the registrar often asks first. Wait for it
    // within the request's long-poll, rather than answer 503 and cost a retry (2 s).
    if (!pod.status?.podIP) pod = await this.podWithIP(id, opts.waitMs, opts.signal)
    if (!pod.status?.podIP) throw new EnlistError('ENLIST_UNAVAILABLE', `pod ${id.namespace}/${id.pod} has no IP yet`, 503)

    const cond = registeredCondition(pod)
    const already = cond?.status === 'True'
    // registeredAt is the condition's transition time, so it survives re-registration.
    const registeredAt = already && cond.lastTransitionTime ? cond.lastTransitionTime : nowSeconds()
    const record = this.d.registry.marked(buildRecord(pod, reg, registeredAt))
    // Registered already, at this IP (a pod's IP never changes): the same answer, and no
    // backend write, so a retrying or hostile registrar costs the backends nothing. An
    // entry a backend lost is the sweep's to write again.
    if (already && cond.lastTransitionTime) return record
    try {
      await this.d.registry.registerAll(record, { deadline: Date.now() + (this.d.backendBudgetMs ?? 10_000) }, { pod, advertise: reg.advertise })
    } catch (err) {
      if (!(err instanceof RegistryError)) throw err
      // Backend URLs, credentials and answers stay in enlist's log; the tenant gets a reference.
      const e = this.internal('ENLIST_BACKEND_FAILED', `the registry could not be written (backend ${err.backend})`, err, id)
      this.d.events.record(podRef(id), 'Warning', 'RegistrationFailed', `${e.message}; the registrar retries`)
      throw e
    }

    // Deleted while we wrote? Then it must not stay registered.
    const now = this.d.pods.byUid(id.uid)
    if (now?.metadata?.deletionTimestamp) {
      await this.d.registry.deregisterAll(podRef(record)).catch(() => undefined) // the controller retries
      throw new EnlistError('ENLIST_CONFLICT', `pod ${id.namespace}/${id.pod} is being deleted`, 409)
    }
    if (!already) {
      try {
        await setRegisteredCondition(this.d.client, podRef(id), 'True', 'Registered', `registered with ${this.d.registry.backends.map((b) => b.name).join(', ')}`, registeredAt)
      } catch (err) {
        throw this.internal('ENLIST_UNAVAILABLE', 'registered, but the pod condition could not be set', err, id)
      }
      this.d.events.record(podRef(id), 'Normal', 'Registered', `registered as ${record.service} at ${record.ip} with ${this.d.registry.backends.map((b) => b.name).join(', ')}`)
      this.d.log.info({ pod: `${id.namespace}/${id.pod}`, uid: id.uid, service: record.service, ip: record.ip }, 'registered')
    }
    return record
  }

  async deregister(authorization: string | undefined, client?: string): Promise<void> {
    const id = await this.d.auth.authenticate(authorization, client)
    const pod = await this.livePod(id)
    // The condition first: from then on the controller and the sweep see a pod that wants
    // no entry (and remove any a failed call below leaves), never a registered pod whose
    // record went missing (which they would write again).
    const first = registeredCondition(pod)?.status !== 'False' || registeredCondition(pod)?.reason !== DEREGISTERED_REASON
    if (first) {
      await setRegisteredCondition(this.d.client, podRef(id), 'False', DEREGISTERED_REASON, 'deregistered at the pod\'s request').catch((err: unknown) => {
        if (!(err instanceof KubeApiError && err.notFound)) throw err
      })
    }
    try {
      await this.d.registry.deregisterAll({ uid: id.uid, namespace: id.namespace, pod: id.pod }, { deadline: Date.now() + (this.d.backendBudgetMs ?? 10_000) })
    } catch (err) {
      throw this.internal('ENLIST_BACKEND_FAILED', 'the registry could not be written; the controller retries until it is', err, id)
    }
    if (first) {
      this.d.events.record(podRef(id), 'Normal', 'Deregistered', 'deregistered at the pod\'s request')
      this.d.log.info({ pod: `${id.namespace}/${id.pod}`, uid: id.uid }, 'deregistered on request')
    }
  }

  /**
   * Policies change after a pod is sealed: its namespace must still be opted in, the
   * overrides its decision used still allowed, and the decision still valid (names,
   * metadata, interface ownership). Otherwise 403, saying which.
   */
  private recheck(pod: V1Pod, reg: Decision, id: PodIdentity): void {
    const policy = this.d.policy?.()
    if (!policy) return
    const problems: string[] = []
    // A namespace the cache does not know yet (not synced) is not judged: only admission's own facts refuse.
    const namespaceLabels = this.d.namespaces?.labels(id.namespace)
    if (namespaceLabels !== undefined) {
      const verdict = decide({ namespace: id.namespace, namespaceLabels, podLabels: pod.metadata?.labels, podAnnotations: pod.metadata?.annotations }, policy)
      if (verdict.action !== 'inject') problems.push(`enlist would no longer inject it (${verdict.action === 'skip' ? verdict.reason : 'invalid annotation'}): is namespace ${id.namespace} still opted in?`)
    }
    problems.push(...overrideProblems(reg, policy), ...(this.d.problems ?? registrationProblemsOf)(reg, policy))
    if (problems.length === 0) {
      // tenancy.enforcement warn: what would be denied is said on the pod, and registration goes on
      const staged = policy.tenancy.enforcement === 'warn' ? registrationFindings(reg, policy).filter((f) => f.stageable) : []
      if (staged.length > 0) {
        this.d.metrics.stagedDenials.inc({ where: 'registration', reason: staged[0]!.reason })
        this.d.events.record(podRef(id), 'Warning', 'TenancyWouldDeny', `tenancy.enforcement is warn: under enforce this pod would be refused: ${staged.map((f) => f.message).join('; ')}`)
      }
      return
    }
    this.d.metrics.trustRejections.inc({ where: 'registration', reason: 'policy-changed' })
    this.d.log.warn({ pod: `${id.namespace}/${id.pod}`, uid: id.uid, problems }, 'registration refused: the policy no longer allows what was decided')
    throw new EnlistError('ENLIST_FORBIDDEN', `pod ${id.namespace}/${id.pod} cannot register under the current policy: ${problems.join('; ')}; recreate the pod`, 403)
  }

  /** An error whose details must not reach the tenant: logged in full under a reference
   *  the tenant's answer and events carry instead. */
  private internal(code: ErrorCode, message: string, err: unknown, id: PodIdentity): EnlistError {
    const ref = randomBytes(4).toString('hex')
    this.d.log.error({ ref, pod: `${id.namespace}/${id.pod}`, uid: id.uid, err: errorMessage(err) }, message)
    return new EnlistError(code, `${message} (enlist log ref ${ref})`, 503, { cause: err })
  }

  /**
   * What admission decided for the pod, from its sealed status and nothing else: a pod
   * enlist did not inject, or whose status a tenant wrote or altered, cannot register.
   */
  private async decisionOf(pod: V1Pod, id: PodIdentity): Promise<Decision> {
    let opened = openPodStatus(pod, this.d.keys.ring)
    // A key newer than this replica's watch has shown: read the Secret once more.
    if (!opened.ok && opened.reason === 'unknown-key' && opened.key && (await this.d.keys.ensure(opened.key))) {
      opened = openPodStatus(pod, this.d.keys.ring)
    }
    const refuse = (reason: string, message: string): never => {
      this.d.metrics.trustRejections.inc({ where: 'registration', reason })
      this.d.log.warn({ pod: `${id.namespace}/${id.pod}`, uid: id.uid, reason, problem: message }, 'registration refused: no decision of enlist\'s')
      throw new EnlistError('ENLIST_FORBIDDEN', `pod ${id.namespace}/${id.pod} cannot register: ${message}`, 403)
    }
    if (!opened.ok) {
      const hint =
        opened.reason === 'unknown-key'
          ? '; the key was retired or revoked: recreate the pod'
          : opened.reason === 'unsealed'
            ? ''
            : '; only enlist writes this annotation'
      return refuse(opened.reason, `its ${STATUS_ANNOTATION} ${opened.message}${hint}`)
    }
    const d = opened.status.decision
    if (d.serviceAccount !== id.serviceAccount) {
      return refuse('wrong-service-account', `enlist decided its registration for service account ${d.serviceAccount}, but the token is for ${id.serviceAccount}`)
    }
    return d
  }

  /** The caller's pod, from the apiserver (one GET: the cache keeps only a slim view, and
   *  may not have synced yet): managed by enlist and the very pod its token is bound to. */
  private async livePod(id: PodIdentity): Promise<V1Pod> {
    const pod = await this.fetchPod(id)
    if (pod.metadata?.uid !== id.uid) throw new EnlistError('ENLIST_FORBIDDEN', `the token is bound to pod uid ${id.uid}, but ${id.namespace}/${id.pod} is ${pod.metadata?.uid}`, 403)
    return this.checkManaged(pod, id)
  }

  private checkManaged(pod: V1Pod, id: PodIdentity): V1Pod {
    if (pod.metadata?.labels?.[MANAGED_LABEL] !== 'true') {
      throw new EnlistError('ENLIST_FORBIDDEN', `pod ${id.namespace}/${id.pod} is not managed by enlist (no ${MANAGED_LABEL}=true label)`, 403)
    }
    return pod
  }

  /** The pod once it has an IP: the watch cache looked at every 100 ms for up to `waitMs` (10 s at most), the apiserver asked first and last. */
  private async podWithIP(id: PodIdentity, waitMs: number, signal?: AbortSignal): Promise<V1Pod> {
    let pod = await this.fetchPod(id)
    const deadline = Date.now() + Math.min(waitMs, 10_000)
    while (!pod.status?.podIP && Date.now() < deadline && !signal?.aborted && !this.shutdown.signal.aborted) {
      await sleep(100, signal)
      // the watch cache sees the IP as soon as the kubelet reports it; then read the pod
      if (this.d.pods.byUid(id.uid)?.status.podIP || Date.now() >= deadline) pod = await this.fetchPod(id)
    }
    return pod
  }

  private async fetchPod(id: PodIdentity): Promise<V1Pod> {
    try {
      return await this.d.client.get<V1Pod>(podPath(id))
    } catch (err) {
      if (err instanceof KubeApiError && err.notFound) throw new EnlistError('ENLIST_FORBIDDEN', `pod ${id.namespace}/${id.pod} does not exist`, 403)
      throw this.internal('ENLIST_UNAVAILABLE', `cannot read pod ${id.namespace}/${id.pod} from the apiserver`, err, id)
    }
  }
}

/** The overrides a sealed decision used that the policy no longer allows (tenantOverrides). */
export function overrideProblems(d: Decision, policy: Pick<CompiledPolicy, 'overrides'>): string[] {
  const used: Array<[boolean, 'metadata' | 'dependsOn' | 'advertise']> = [
    [Object.keys(d.metadata).length > 0, 'metadata'],
    [d.dependsOn.length > 0, 'dependsOn'],
    [d.advertise !== undefined && Object.keys(d.advertise).length > 0, 'advertise'],
  ]
  return used.filter(([u, name]) => u && !policy.overrides.has(name)).map(([, name]) => `the policy no longer lets tenants set ${name} (tenantOverrides)`)
}

/** What the policy's tenancy checks (src/admission/tenancy.ts) refuse in a decision now. */
export function registrationProblemsOf(d: Decision, policy: CompiledPolicy): string[] {
  const problem = registrationProblems(d, policy)
  return problem === undefined ? [] : [problem]
}
