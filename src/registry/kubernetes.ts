// The embedded backend: the record is the pod's own discovery annotation (and label), so
// peers discover each other with LIST+WATCH on pods and nothing else has to run.
// `layout: dubbo` writes dubbo-go's Kubernetes registry instead (src/registry/dubbo-go.ts), so
// unmodified dubbo-go consumers discover the pods, and the apps need no RBAC of their own.

import type { PodView } from '../kube/pod-view.js'
import { recordDigest } from '../kube/pod-view.js'
import { type KubeClient, KubeApiError, PatchType } from '../kube/client.js'
import type { KubernetesBackendSpec, PolicySpec } from '../policy/policy.js'
import { type Backend, type BackendCallOptions, BackendError } from './backend.js'
import { dubboProviderOf } from './dubbo.js'
import { DUBBO_GO_ANNOTATION, DUBBO_GO_LABEL, dubboGoPairs, encodeDubboGoAnnotation } from './dubbo-go.js'
import { type PodRef, podPath } from '../kube/pod-ref.js'
import type { ListedEntry } from './ownership.js'
import { encodeRecord, type RegistryRecord } from './record.js'

export interface PodLookup {
  /** Managed pods from the cache. */
  pods(): Iterable<PodView>
}

export class KubernetesBackend implements Backend {
  readonly type = 'kubernetes'
  readonly name: string
  private readonly label: { key: string; value: string }
  private readonly annotation: string

  constructor(
    private readonly spec: Pick<KubernetesBackendSpec, 'name' | 'layout' | 'dubboLabelValue'>,
    private readonly client: KubeClient,
    discovery: PolicySpec['discovery'],
    private readonly cache: PodLookup,
    /** This cluster's name: the entries are its own pods, whatever they carry. */
    private readonly cluster = '',
    /** Metadata keys the dubbo-go provider URL may carry (policy tenancy.dubbo.parameters); undefined: the built-in list. */
    private readonly dubboParameters?: ReadonlySet<string>,
  ) {
    this.name = spec.name
    const dubbo = spec.layout === 'dubbo'
    this.label = dubbo ? { key: DUBBO_GO_LABEL, value: spec.dubboLabelValue } : discovery.label
    this.annotation = dubbo ? DUBBO_GO_ANNOTATION : discovery.annotation
  }

  async register(record: RegistryRecord, opts: BackendCallOptions = {}): Promise<void> {
    let value: string
    try {
      value = this.encode(record)
    } catch (err) {
      throw new BackendError(this.name, 'register', (err as Error).message, false, { cause: err })
    }
    const patch = {
      metadata: {
        // the uid precondition: never write onto a namesake that replaced the pod
        uid: record.uid,
        labels: { [this.label.key]: this.label.value },
        annotations: { [this.annotation]: value },
      },
    }
    try {
      await this.client.patch(podPath(record), patch, PatchType.merge, undefined, { signal: opts.signal })
    } catch (err) {
      throw this.error('register', err)
    }
  }

  async deregister(ref: PodRef, opts: BackendCallOptions = {}): Promise<void> {
    try {
      // dubbo-go consumers drop a pod's keys only on its watch DELETED event: taking the label
      // away in the same patch moves the pod out of their selector, and the apiserver sends
      // DELETED with the pod as it was, annotation included.
      const labels = this.spec.layout === 'dubbo' ? { labels: { [this.label.key]: null } } : {}
      await this.client.patch(podPath(ref), { metadata: { uid: ref.uid, ...labels, annotations: { [this.annotation]: null } } }, PatchType.merge, undefined, { signal: opts.signal })
    } catch (err) {
      // gone, or a namesake with another uid: either way this entry no longer exists
      if (err instanceof KubeApiError && (err.notFound || err.conflict)) return
      throw this.error('deregister', err)
    }
  }

  drifted(pod: PodView, record: RegistryRecord): boolean {
    let want: string
    try {
      want = this.encode(record)
    } catch {
      return false // nothing enlist could write either
    }
    return pod.enlist.records[this.annotation] !== recordDigest(want) || pod.metadata.labels[this.label.key] !== this.label.value
  }

  /** The annotation that holds the record in this layout (what the pod cache keeps a digest of). */
  get recordAnnotation(): string {
    return this.annotation
  }

  /** The annotation's value for this layout; throws DubboFormatError for unusable metadata. */
  private encode(record: RegistryRecord): string {
    return this.spec.layout === 'dubbo' ? encodeDubboGoAnnotation(dubboGoPairs(dubboProviderOf(record, undefined, this.dubboParameters))) : encodeRecord(record)
  }

  async list(): Promise<ListedEntry[]> {
    const out: ListedEntry[] = []
    const cluster = this.cluster === '' ? undefined : this.cluster
    for (const pod of this.cache.pods()) {
      // The entry is the annotation on this pod: it is this pod's whatever the record says
      // (a record a tenant wrote may name any uid).
      if (pod.enlist.records[this.annotation] === undefined) continue
      out.push({ uid: pod.metadata.uid, namespace: pod.metadata.namespace, pod: pod.metadata.name, cluster })
    }
    return out
  }

  private error(op: 'register' | 'deregister', err: unknown): BackendError {
    const retryable = !(err instanceof KubeApiError) || err.status === 0 || err.status >= 500 || err.status === 429 || err.status === 409
    return new BackendError(this.name, op, (err as Error).message, retryable, { cause: err })
  }
}

/** The annotations the kubernetes backends of a policy write records into (what the pod
 *  cache keeps a digest of, to tell an edited record). */
export function recordAnnotationsOf(policy: Pick<PolicySpec, 'registry' | 'discovery'>): string[] {
  return policy.registry.backends.filter((b) => b.type === 'kubernetes').map((b) => (b.layout === 'dubbo' ? DUBBO_GO_ANNOTATION : policy.discovery.annotation))
}

/** The labels the kubernetes backends of a policy write (what the pod cache keeps of a pod's
 *  labels): the discovery label, or dubbo-go's with the dubbo layout. */
export function recordLabelsOf(policy: Pick<PolicySpec, 'registry' | 'discovery'>): string[] {
  return policy.registry.backends.filter((b) => b.type === 'kubernetes').map((b) => (b.layout === 'dubbo' ? DUBBO_GO_LABEL : policy.discovery.label.key))
}
