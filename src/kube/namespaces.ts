// Namespace labels for the admission path, from a watch cache: never an API call per
// request. Objects are slimmed to name and labels (5000 namespaces stay small).

import type { V1Namespace } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { KubeClient } from './client.js'
import { Cache } from './cache.js'
import { Reflector } from './reflector.js'

export interface NamespaceLookup {
  /** Labels of a namespace; undefined when the cache does not know it. */
  labels(name: string): Readonly<Record<string, string>> | undefined
  /** Waits up to `ms` for a namespace the cache has not seen yet (created a moment ago). */
  waitFor(name: string, ms: number): Promise<Readonly<Record<string, string>> | undefined>
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({})

export class NamespaceCache extends Cache implements NamespaceLookup {
  readonly name = 'namespace-cache'
  readonly reflector: Reflector<V1Namespace>
  private readonly waiters = new Map<string, Set<() => void>>()

  constructor(client: KubeClient, log: Logger) {
    super()
    this.reflector = new Reflector<V1Namespace>({
      client,
      log,
      name: 'namespaces',
      path: '/api/v1/namespaces',
      transform: (ns) => ({
        metadata: {
          name: ns.metadata?.name,
          resourceVersion: ns.metadata?.resourceVersion,
          labels: ns.metadata?.labels ?? NO_LABELS,
        },
      }),
    })
    this.reflector.on({ add: (ns) => this.wake(ns.metadata?.name ?? '') })
  }

  labels(name: string): Readonly<Record<string, string>> | undefined {
    return this.reflector.get(name)?.metadata?.labels
  }

  waitFor(name: string, ms: number): Promise<Readonly<Record<string, string>> | undefined> {
    const now = this.labels(name)
    if (now !== undefined || ms <= 0) return Promise.resolve(now)
    return new Promise((resolve) => {
      const set = this.waiters.get(name) ?? new Set()
      this.waiters.set(name, set)
      const done = (): void => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0) this.waiters.delete(name)
        resolve(this.labels(name))
      }
      const timer = setTimeout(done, ms)
      set.add(done)
    })
  }

  private wake(name: string): void {
    const set = this.waiters.get(name)
    if (set) for (const w of [...set]) w()
  }
}

/** A fixed set of namespaces, for `enlist render` and tests. */
export class StaticNamespaces implements NamespaceLookup {
  constructor(private readonly byName: ReadonlyMap<string, Readonly<Record<string, string>>>) {}
  labels(name: string): Readonly<Record<string, string>> | undefined {
    return this.byName.get(name)
  }
  waitFor(name: string): Promise<Readonly<Record<string, string>> | undefined> {
    return Promise.resolve(this.labels(name))
  }
}
