// The one reference to a pod: its namespace, name and uid. The field is `pod`, as in the
// registry record (docs/design.md), so every record, token identity and backend entry is a
// PodRef as it stands; the uid tells the pod from a namesake that replaced it. Registry
// entries outlive their pods, so a PodRef is what deregistration works from.

export interface PodRef {
  namespace: string
  pod: string
  uid: string
}

/** A pod in the shape the apiserver and the caches keep (metadata.name). */
export interface PodObject {
  metadata: { namespace: string; name: string; uid: string }
}

/** Just the reference, from anything that is one: a record, a token identity, an entry
 *  (each carries more, a record even a `metadata` of its own, which is not the pod's). */
export function podRef(r: PodRef): PodRef {
  return { namespace: r.namespace, pod: r.pod, uid: r.uid }
}

/** The reference to a pod the apiserver or a cache holds. */
export function podRefOf(p: PodObject): PodRef {
  const m = p.metadata
  return { namespace: m.namespace, pod: m.name, uid: m.uid }
}

/** The pod's API path (or its subresource's); names are escaped. */
export function podPath(ref: Pick<PodRef, 'namespace' | 'pod'>, subresource?: 'status' | 'binding'): string {
  return `${podsPath(ref.namespace)}/${encodeURIComponent(ref.pod)}${subresource ? `/${subresource}` : ''}`
}

/**
 * Pods per list page, where client-go lists 500 of anything. An injected pod runs to tens of
 * KB of JSON, so 500 of them are a body of 10 MB and more, read and parsed whole: at 50,000
 * pods that page, not the cache, set the heap's peak and left the replica's RSS 70 MB higher.
 */
export const POD_LIST_PAGE_SIZE = 100

/** The pods collection of a namespace, or of every namespace. */
export function podsPath(namespace?: string): string {
  return namespace === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`
}

/** namespace/name, as logs and messages say it. */
export function podName(ref: Pick<PodRef, 'namespace' | 'pod'>): string {
  return `${ref.namespace}/${ref.pod}`
}
