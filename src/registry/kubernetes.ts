// The embedded backend: the record is the pod's own discovery annotation (and label), so
// peers discover each other with LIST+WATCH on pods and nothing else has to run.

import type { V1Pod } from '@kubernetes/client-node'
import { type KubeClient, KubeApiError, PatchType } from '../kube/client.js'
import type { PolicySpec } from '../policy/policy.js'
import { type Backend, BackendError } from './backend.js'
import { encodeRecord, type EntryRef, type RegistryRecord } from './record.js'

export interface PodLookup {
  /** Managed pods from the cache. */
  pods(): Iterable<V1Pod>
}

export class KubernetesBackend implements Backend {
  readonly type = 'kubernetes'

  constructor(
    readonly name: string,
    private readonly client: KubeClient,
    private readonly discovery: PolicySpec['discovery'],
    private readonly cache: PodLookup,
  ) {}

  async register(record: RegistryRecord): Promise<void> {
    const patch = {
      metadata: {
        // the uid precondition: never write onto a namesake that replaced the pod
        uid: record.uid,
        labels: { [this.discovery.label.key]: this.discovery.label.value },
        annotations: { [this.discovery.annotation]: encodeRecord(record) },
      },
    }
    try {
      await this.client.patch(podPath(record), patch, PatchType.merge)
    } catch (err) {
      throw this.error('register', err)
    }
  }

  async deregister(ref: EntryRef): Promise<void> {
    try {
      await this.client.patch(podPath(ref), { metadata: { uid: ref.uid, annotations: { [this.discovery.annotation]: null } } }, PatchType.merge)
    } catch (err) {
      // gone, or a namesake with another uid: either way this entry no longer exists
      if (err instanceof KubeApiError && (err.notFound || err.conflict)) return
      throw this.error('deregister', err)
    }
  }

  drifted(pod: V1Pod, record: RegistryRecord): boolean {
    const m = pod.metadata
    return m?.annotations?.[this.discovery.annotation] !== encodeRecord(record) || m?.labels?.[this.discovery.label.key] !== this.discovery.label.value
  }

  async list(): Promise<EntryRef[]> {
    const out: EntryRef[] = []
    for (const pod of this.cache.pods()) {
      // The entry is the annotation on this pod: it is this pod's whatever the record says
      // (a record a tenant wrote may name any uid).
      if (pod.metadata?.annotations?.[this.discovery.annotation] === undefined) continue
      out.push({ uid: pod.metadata?.uid ?? '', namespace: pod.metadata?.namespace ?? '', pod: pod.metadata?.name ?? '' })
    }
    return out
  }

  private error(op: 'register' | 'deregister', err: unknown): BackendError {
    const retryable = !(err instanceof KubeApiError) || err.status === 0 || err.status >= 500 || err.status === 429 || err.status === 409
    return new BackendError(this.name, op, (err as Error).message, retryable, { cause: err })
  }
}

function podPath(r: { namespace: string; pod: string }): string {
  return `/api/v1/namespaces/${encodeURIComponent(r.namespace)}/pods/${encodeURIComponent(r.pod)}`
}
