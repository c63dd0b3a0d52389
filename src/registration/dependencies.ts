// Dependency readiness from watch caches of Services and of their endpoints. Endpoints come
// from EndpointSlices where the apiserver serves them (discovery.k8s.io/v1 from 1.21,
// v1beta1 on 1.17 to 1.24), and from the Endpoints API only as a fallback (it is
// deprecated from 1.33, and truncated at 1000 addresses). The check is pure; the cache
// wakes long-polling registrations when something they wait for changes.

import type { V1EndpointSlice, V1Endpoints, V1Service } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { type Dependency, formatDependency } from '../contract/dependencies.js'
import { KubeApiError } from '../kube/client.js'
import { type ListWatchClient, objectKey, Reflector } from '../kube/reflector.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'

export interface Missing {
  dependency: string
  reason: string
}

export interface ServiceFacts {
  service(namespace: string, name: string): V1Service | undefined
  /** The Service has a ready endpoint; on the Service port named `portName` ('' for an
   *  unnamed port) when that is given. */
  readyEndpoints(namespace: string, name: string, portName?: string): boolean
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

/** An Endpoints object has a ready address (on the named port). */
export function endpointsReady(ep: V1Endpoints | undefined, portName?: string): boolean {
  for (const subset of ep?.subsets ?? []) {
    if ((subset.addresses?.length ?? 0) === 0) continue
    if (portName === undefined || (subset.ports ?? []).some((p) => (p.name ?? '') === portName)) return true
  }
  return false
}

/** One of a Service's EndpointSlices has a ready endpoint (on the named port). A nil
 *  `ready` means ready, as the API says. */
export function slicesReady(slices: Iterable<V1EndpointSlice>, portName?: string): boolean {
  for (const s of slices) {
    if (!(s.endpoints ?? []).some((e) => e.conditions?.ready !== false)) continue
    if (portName === undefined || (s.ports ?? []).some((p) => (p.name ?? '') === portName)) return true
  }
  return false
}

/** What is not ready yet, each with why. Empty: all ready. */
export function missingDependencies(deps: readonly Dependency[], facts: ServiceFacts): Missing[] {
  const out: Missing[] = []
  for (const d of deps) {
    const reason = notReady(d, facts)
    if (reason) out.push({ dependency: formatDependency(d), reason })
  }
  return out
}

function notReady(d: Dependency, facts: ServiceFacts): string | undefined {
  const svc = facts.service(d.namespace, d.service)
  if (!svc) return 'Service not found'
  if (svc.spec?.type === 'ExternalName') return undefined // a DNS alias: nothing to count
  let portName: string | undefined
  if (d.port !== undefined) {
    const sp = (svc.spec?.ports ?? []).find((p) => (typeof d.port === 'number' ? p.port === d.port : p.name === d.port))
    if (!sp) return `the Service has no port ${d.port}`
    portName = sp.name ?? ''
  }
  if (facts.readyEndpoints(d.namespace, d.service, portName)) return undefined
  return d.port === undefined ? 'no ready endpoints' : `no ready endpoints on port ${d.port}`
}

type Waiter = { keys: Set<string>; wake: () => void }

/** Where endpoints are read from, best first. */
export type EndpointsSource = 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1' | 'v1/endpoints'

/** Service and endpoint caches, cluster-wide, slimmed to what readiness needs. */
export class DependencyCache implements ServiceFacts {
  readonly name = 'dependency-cache'
  readonly services: Reflector<V1Service>
  private endpointsCache: Reflector<V1Endpoints> | undefined
  private slices: Reflector<V1EndpointSlice> | undefined
  /** ns/service -> keys of its EndpointSlices */
  private readonly slicesOf = new Map<string, Set<string>>()
  private readonly waiters = new Set<Waiter>()
  private readonly abort = new AbortController()
  private choosing: Promise<void> | undefined
  private chosen: EndpointsSource | undefined

  constructor(
    private readonly client: ListWatchClient,
    private readonly log: Logger,
  ) {
    this.services = new Reflector<V1Service>({
      client,
      log,
      name: 'services',
      path: '/api/v1/services',
      transform: (s) => ({
        metadata: { name: s.metadata?.name, namespace: s.metadata?.namespace, resourceVersion: s.metadata?.resourceVersion, uid: s.metadata?.uid },
        spec: { type: s.spec?.type, ports: (s.spec?.ports ?? []).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })) },
      }),
    })
    this.services.on(this.waking())
  }

  /** Which API endpoints are read from, once chosen. */
  get source(): EndpointsSource | undefined {
    return this.chosen
  }

  start(): void {
    this.services.start()
    this.choosing ??= this.chooseAndStart()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.choosing
    await Promise.all([this.services.stop(), this.endpointsCache?.stop(), this.slices?.stop()])
    for (const w of this.waiters) w.wake()
  }

  get synced(): boolean {
    return this.services.synced && (this.slices?.synced ?? this.endpointsCache?.synced ?? false)
  }

  /** Why it is not synced, for readiness. */
  get waitingReason(): string {
    const endpoints = this.slices ?? this.endpointsCache
    const err = this.services.error ?? endpoints?.error
    const what = this.chosen ? `services and ${this.chosen === 'v1/endpoints' ? 'endpoints' : 'endpointslices'}` : 'services and endpoints (choosing the API)'
    return `${what} caches not synced${err ? `: ${err}` : ''}`
  }

  service(namespace: string, name: string): V1Service | undefined {
    return this.services.get(`${namespace}/${name}`)
  }

  readyEndpoints(namespace: string, name: string, portName?: string): boolean {
    if (this.slices) {
      const slices = this.slices
      const keys = this.slicesOf.get(`${namespace}/${name}`) ?? []
      return slicesReady([...keys].flatMap((k) => slices.get(k) ?? []), portName)
    }
    return endpointsReady(this.endpointsCache?.get(`${namespace}/${name}`), portName)
  }

  /** EndpointSlices at the newest version served and allowed, else Endpoints. A LIST of one
   *  object asks both questions at once; an unreachable apiserver is asked again. */
  private async chooseAndStart(): Promise<void> {
    const backoff = new Backoff({ initialMs: 800, maxMs: 30_000 })
    const signal = this.abort.signal
    while (!signal.aborted) {
      try {
        this.chosen = await this.choose(signal)
        break
      } catch (err) {
        if (signal.aborted) return
        const delay = backoff.next()
        this.log.warn({ err: errorMessage(err), retryInMs: Math.round(delay) }, 'cannot tell whether the apiserver serves EndpointSlices; asking again')
        await sleep(delay, signal)
      }
    }
    if (signal.aborted || !this.chosen) return
    this.log.info({ source: this.chosen }, 'dependency readiness reads endpoints from this API')
    if (this.chosen === 'v1/endpoints') this.startEndpoints()
    else this.startSlices(this.chosen)
  }

  private async choose(signal: AbortSignal): Promise<EndpointsSource> {
    for (const v of ['discovery.k8s.io/v1', 'discovery.k8s.io/v1beta1'] as const) {
      try {
        await this.client.get(`/apis/${v}/endpointslices`, { limit: 1 }, { signal })
        return v
      } catch (err) {
        if (!(err instanceof KubeApiError)) throw err
        if (err.status === 403) {
          this.log.warn({ api: v }, 'not allowed to list EndpointSlices: reading Endpoints instead (grant list and watch on discovery.k8s.io endpointslices)')
          return 'v1/endpoints'
        }
        if (!err.notFound) throw err
      }
    }
    return 'v1/endpoints'
  }

  private startEndpoints(): void {
    this.endpointsCache = new Reflector<V1Endpoints>({
      client: this.client,
      log: this.log,
      name: 'endpoints',
      path: '/api/v1/endpoints',
      transform: (e) => ({
        metadata: { name: e.metadata?.name, namespace: e.metadata?.namespace, resourceVersion: e.metadata?.resourceVersion, uid: e.metadata?.uid },
        // only counts matter: keep one ready address per subset, and the port names
        subsets: (e.subsets ?? []).map((s) => ({
          addresses: (s.addresses ?? []).slice(0, 1).map((a) => ({ ip: a.ip })),
          ports: (s.ports ?? []).map((p) => ({ name: p.name, port: p.port })),
        })),
      }),
    })
    this.endpointsCache.on(this.waking())
    this.endpointsCache.start()
  }

  private startSlices(api: 'discovery.k8s.io/v1' | 'discovery.k8s.io/v1beta1'): void {
    const serviceOf = (s: V1EndpointSlice): string | undefined => {
      const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL]
      return svc ? `${s.metadata?.namespace}/${svc}` : undefined
    }
    this.slices = new Reflector<V1EndpointSlice>({
      client: this.client,
      log: this.log,
      name: 'endpointslices',
      path: `/apis/${api}/endpointslices`,
      // slices not made for a Service say nothing about one
      labelSelector: SERVICE_NAME_LABEL,
      transform: (s): V1EndpointSlice => {
        const ready = (s.endpoints ?? []).find((e) => e.conditions?.ready !== false)
        const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL]
        const labels: Record<string, string> = svc ? { [SERVICE_NAME_LABEL]: svc } : {}
        return {
          addressType: s.addressType,
          metadata: { name: s.metadata?.name, namespace: s.metadata?.namespace, resourceVersion: s.metadata?.resourceVersion, uid: s.metadata?.uid, labels },
          // only whether one endpoint is ready matters, and the port names
          endpoints: ready ? [{ addresses: ready.addresses.slice(0, 1), conditions: { ready: true } }] : [],
          ports: (s.ports ?? []).map((p) => ({ name: p.name, port: p.port })),
        }
      },
    })
    const index = (s: V1EndpointSlice): void => {
      const svc = serviceOf(s)
      if (!svc) return
      const set = this.slicesOf.get(svc) ?? new Set<string>()
      set.add(objectKey(s))
      this.slicesOf.set(svc, set)
    }
    const unindex = (s: V1EndpointSlice): void => {
      const svc = serviceOf(s)
      const set = svc ? this.slicesOf.get(svc) : undefined
      if (!set) return
      set.delete(objectKey(s))
      if (set.size === 0) this.slicesOf.delete(svc!)
    }
    const wake = (s: V1EndpointSlice): void => {
      const svc = serviceOf(s)
      if (svc) this.wake(svc)
    }
    this.slices.on({
      add: (s) => {
        index(s)
        wake(s)
      },
      update: (s, old) => {
        unindex(old)
        index(s)
        wake(old)
        wake(s)
      },
      delete: (s) => {
        unindex(s)
        wake(s)
      },
    })
    this.slices.start()
  }

  /** Handlers that wake the waiters of the Service an object is named after. */
  private waking<T extends { metadata?: { namespace?: string; name?: string } }>(): { add: (o: T) => void; update: (o: T) => void; delete: (o: T) => void } {
    const changed = (o: T): void => this.wake(`${o.metadata?.namespace}/${o.metadata?.name}`)
    return { add: changed, update: changed, delete: changed }
  }

  get waiting(): number {
    return this.waiters.size
  }

  /** Resolves when one of `deps` changes, or after `ms`. */
  waitForChange(deps: readonly Dependency[], ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const waiter: Waiter = {
        keys: new Set(deps.map((d) => `${d.namespace}/${d.service}`)),
        wake: () => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          signal?.removeEventListener('abort', waiter.wake)
          resolve()
        },
      }
      const timer = setTimeout(waiter.wake, ms)
      this.waiters.add(waiter)
      signal?.addEventListener('abort', waiter.wake, { once: true })
    })
  }

  private wake(key: string): void {
    for (const w of [...this.waiters]) if (w.keys.has(key)) w.wake()
  }
}
