// Pods managed by enlist (label enlist.io/managed=true), watched once and shared by the
// controller, the kubernetes backend and the key rotator, as slim views (pod-view.ts): at
// 50,000 pods the cache holds tens of megabytes, not hundreds. Indexed by uid, because
// registry entries outlive pod names: a uid maps to its pod only while that very pod (not
// a namesake that replaced it, whether seen by the watch or found by a relist) is stored.
// A view is bounded whatever its pod carries (pod-view.ts); its list pages adapt to the
// pods' size (reflector.ts).

import type { V1Pod } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { KeyRing } from '../decision/keyring.js'
import { errorMessage } from '../lib/errors.js'
import { MANAGED_LABEL } from '../names.js'
import { Cache } from './cache.js'
import { POD_LIST_PAGE_SIZE, podPath, podsPath } from './pod-ref.js'
import { DEFAULT_RECORD_LABELS, opensWith, type PodView, revalidate, viewOf } from './pod-view.js'
import { KubeApiError } from './client.js'
import { type ListWatchClient, objectKey, Reflector, type ReflectorHandlers } from './reflector.js'

export interface ManagedPodsOptions {
  /** The decision keys: a view holds its pod's decision opened, or none. */
  ring: () => KeyRing | undefined
}

// Pods whose seal waits for a key are read again one by one up to this many; more (a
// replica that started before the keys were read) are read again by one relist.
const REREAD_MAX = 50

export class ManagedPods extends Cache {
  readonly name = 'pod-cache'
  readonly reflector: Reflector<V1Pod, PodView>
  private readonly uidToKey = new Map<string, string>()
  private recordAnnotations: readonly string[] = []
  private recordLabels: readonly string[] = DEFAULT_RECORD_LABELS
  private rereading: Promise<void> | undefined

  constructor(
    private readonly client: ListWatchClient,
    private readonly log: Logger,
    o: ManagedPodsOptions,
  ) {
    super()
    this.reflector = new Reflector<V1Pod, PodView>({
      client,
      log,
      name: 'managed pods',
      path: podsPath(),
      labelSelector: `${MANAGED_LABEL}=true`,
      pageSize: POD_LIST_PAGE_SIZE,
      transform: (p) => viewOf(p, { ring: o.ring(), recordAnnotations: this.recordAnnotations, recordLabels: this.recordLabels }),
    })
    this.reflector.on({
      add: (p) => this.index(p),
      update: (p, old) => {
        if (old.metadata.uid !== p.metadata.uid) this.unindex(old)
        this.index(p)
      },
      delete: (p) => this.unindex(p),
    })
  }

  /**
   * The annotations whose record digests the views keep (each backend's record annotation,
   * from the policy). A change relists: what was dropped from the pods cannot be recovered.
   */
  setRecordAnnotations(keys: readonly string[]): void {
    const next = [...new Set(keys)].sort()
    if (next.join('\n') === this.recordAnnotations.join('\n')) return
    this.recordAnnotations = next
    this.reflector.relistNow()
  }

  /** The labels the views keep (each kubernetes backend's discovery label, from the policy:
   *  recordLabelsOf in src/registry/kubernetes.ts). A change relists, as for the annotations. */
  setRecordLabels(keys: readonly string[]): void {
    const next = [...new Set(keys)].sort()
    if (next.join('\n') === this.recordLabels.join('\n')) return
    this.recordLabels = next
    this.reflector.relistNow()
  }

  /**
   * The key ring changed: drop decisions whose key was revoked, and read again the pods whose
   * seal names a key that has now arrived (the views did not keep their status text). A seal
   * under a key that never arrives (a made-up one) is never read again.
   */
  keysChanged(ring: KeyRing): void {
    const reread: PodView[] = []
    for (const v of this.reflector.list()) {
      if (opensWith(v, ring)) reread.push(v)
      else revalidate(v, ring)
    }
    if (reread.length === 0) return
    if (reread.length > REREAD_MAX) {
      this.log.info({ pods: reread.length }, 'decision keys arrived for many cached pods: relisting to open their seals')
      this.reflector.relistNow()
      return
    }
    const prev = this.rereading ?? Promise.resolve()
    this.rereading = prev.then(() => this.reread(reread)).finally(() => (this.rereading = undefined))
  }

  /** Reads pods again, one at a time; a failure relists (what it would have opened, a list does). */
  private async reread(views: readonly PodView[]): Promise<void> {
    for (const v of views) {
      const m = v.metadata
      try {
        const pod = await this.client.get<V1Pod>(podPath({ namespace: m.namespace, pod: m.name }))
        if (pod.metadata?.uid === m.uid) this.reflector.refresh(v, pod)
      } catch (err) {
        if (err instanceof KubeApiError && err.notFound) continue // gone: the watch says so
        this.log.warn({ pod: `${m.namespace}/${m.name}`, err: errorMessage(err) }, 'could not read a pod again to open its seal; relisting')
        this.reflector.relistNow()
        return
      }
    }
  }

  /** Settles once the pods read again after a key arrived are (tests). */
  async settled(): Promise<void> {
    while (this.rereading) await this.rereading
  }

  on(h: ReflectorHandlers<PodView>): void {
    this.reflector.on(h)
  }

  get(namespace: string, name: string): PodView | undefined {
    return this.reflector.get(`${namespace}/${name}`)
  }

  byUid(uid: string): PodView | undefined {
    const key = this.uidToKey.get(uid)
    const pod = key ? this.reflector.get(key) : undefined
    return pod?.metadata.uid === uid ? pod : undefined
  }

  pods(): Iterable<PodView> {
    return this.reflector.list()
  }

  private index(p: PodView): void {
    if (p.metadata.uid) this.uidToKey.set(p.metadata.uid, objectKey(p))
  }

  private unindex(p: PodView): void {
    const uid = p.metadata.uid
    if (uid && this.uidToKey.get(uid) === objectKey(p)) this.uidToKey.delete(uid)
  }
}
