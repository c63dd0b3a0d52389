// Dependency readiness from Service and Endpoints watch caches. The check is pure; the
// watcher wakes long-polling registrations when something they wait for changes.

import type { V1Endpoints, V1Service } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { type Dependency, formatDependency, parseDependsOn } from '../admission/annotations.js'
import type { KubeClient } from '../kube/client.js'
import { Reflector } from '../kube/reflector.js'

export interface Missing {
  dependency: string
  reason: string
}

export interface ServiceFacts {
  service(namespace: string, name: string): V1Service | undefined
  endpoints(namespace: string, name: string): V1Endpoints | undefined
}

/** Parses ENLIST_DEPENDS_ON (written by admission, fully qualified). */
export function parseDependencies(value: string): Dependency[] {
  if (value.trim() === '') return []
  const r = parseDependsOn(value, '')
  return r.ok ? r.value : []
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
  const ep = facts.endpoints(d.namespace, d.service)
  for (const subset of ep?.subsets ?? []) {
    if ((subset.addresses?.length ?? 0) === 0) continue
    if (portName === undefined) return undefined
    if ((subset.ports ?? []).some((p) => (p.name ?? '') === portName)) return undefined
  }
  return d.port === undefined ? 'no ready endpoints' : `no ready endpoints on port ${d.port}`
}

type Waiter = { keys: Set<string>; wake: () => void }

/** Service and Endpoints caches, cluster-wide, slimmed to what readiness needs. */
export class DependencyCache implements ServiceFacts {
  readonly services: Reflector<V1Service>
  readonly endpointsCache: Reflector<V1Endpoints>
  private readonly waiters = new Set<Waiter>()

  constructor(client: KubeClient, log: Logger) {
    this.services = new Reflector<V1Service>({
      client,
      log,
      name: 'services',
      path: '/api/v1/services',
      transform: (s) => ({
        metadata: { name: s.metadata?.name, namespace: s.metadata?.namespace, resourceVersion: s.metadata?.resourceVersion },
        spec: { type: s.spec?.type, ports: (s.spec?.ports ?? []).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })) },
      }),
    })
    this.endpointsCache = new Reflector<V1Endpoints>({
      client,
      log,
      name: 'endpoints',
      path: '/api/v1/endpoints',
      transform: (e) => ({
        metadata: { name: e.metadata?.name, namespace: e.metadata?.namespace, resourceVersion: e.metadata?.resourceVersion },
        // only counts matter: keep one ready address per subset, and the port names
        subsets: (e.subsets ?? []).map((s) => ({
          addresses: (s.addresses ?? []).slice(0, 1).map((a) => ({ ip: a.ip })),
          ports: (s.ports ?? []).map((p) => ({ name: p.name, port: p.port })),
        })),
      }),
    })
    const changed = (o: { metadata?: { namespace?: string; name?: string } }): void => this.wake(`${o.metadata?.namespace}/${o.metadata?.name}`)
    for (const r of [this.services, this.endpointsCache] as Array<Reflector<V1Service | V1Endpoints>>) {
      r.on({ add: changed, update: changed, delete: changed })
    }
  }

  start(): void {
    this.services.start()
    this.endpointsCache.start()
  }

  async stop(): Promise<void> {
    await Promise.all([this.services.stop(), this.endpointsCache.stop()])
    for (const w of this.waiters) w.wake()
  }

  get synced(): boolean {
    return this.services.synced && this.endpointsCache.synced
  }

  service(namespace: string, name: string): V1Service | undefined {
    return this.services.get(`${namespace}/${name}`)
  }

  endpoints(namespace: string, name: string): V1Endpoints | undefined {
    return this.endpointsCache.get(`${namespace}/${name}`)
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
