// Every version of some objects as the apiserver stored them, from a list and then a watch:
// resourceVersions are etcd revisions, one sequence for the whole cluster, so versions of
// different objects can be put in the order they were written.

import type { KubeClient, Query } from '../../src/kube/client.js'

export interface Observed<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'LISTED'
  /** The object's resourceVersion as a number: its place in the cluster's write order. */
  rv: number
  /** When this process saw it (Date.now()). */
  at: number
  object: T
}

export interface Observer<T> {
  seen: Observed<T>[]
  stop(): void
}

type Meta = { metadata?: { resourceVersion?: string } }

export async function observe<T extends Meta>(client: KubeClient, path: string, query: Query = {}): Promise<Observer<T>> {
  const list = await client.get<{ metadata: { resourceVersion: string }; items: T[] }>(path, query)
  const seen: Observed<T>[] = list.items.map((object) => ({ type: 'LISTED', rv: Number(object.metadata?.resourceVersion), at: Date.now(), object }))
  const ac = new AbortController()
  void client
    .watch(
      path,
      { ...query, resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 3600 },
      (e) => {
        const { type, object } = e as { type: Observed<T>['type'] | 'BOOKMARK' | 'ERROR'; object: T }
        if (type === 'BOOKMARK' || type === 'ERROR') return
        seen.push({ type, rv: Number(object.metadata?.resourceVersion), at: Date.now(), object })
      },
      ac.signal,
    )
    .catch(() => undefined)
  return { seen, stop: () => ac.abort() }
}
