// Pods managed by enlist (label enlist.io/managed=true), watched once and shared by the
// controller, the kubernetes backend and the key rotator, as slim views (pod-view.ts): at
// 50,000 pods the cache holds tens of megabytes, not hundreds. Indexed by uid, because
// registry entries outlive pod names: a uid maps to its pod only while that very pod (not
// a namesake that replaced it, whether seen by the watch or found by a relist) is stored.

import type { V1Pod } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { KeyRing } from '../decision/keyring.js'
import { MANAGED_LABEL } from '../names.js'
import { Cache } from './cache.js'
import { POD_LIST_PAGE_SIZE, podsPath } from './pod-ref.js'
import { type PodView, reopen, revalidate, viewOf } from './pod-view.js'
import { type ListWatchClient, objectKey, Reflector, type ReflectorHandlers } from './reflector.js'

export interface ManagedPodsOptions {
  /** The decision keys: a view holds its pod's decision opened, or none. */
  ring: () => KeyRing | undefined
}

export class ManagedPods extends Cache {
  readonly name = 'pod-cache'
  readonly reflector: Reflector<V1Pod, PodView>
  private readonly uidToKey = new Map<string, string>()
  private recordAnnotations: readonly string[] = []

  constructor(
    client: ListWatchClient,
    log: Logger,
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
      transform: (p) => viewOf(p, { ring: o.ring(), recordAnnotations: this.recordAnnotations }),
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

  /** The key ring changed: open the seals that waited for a key, drop decisions whose key
   *  was revoked. */
  keysChanged(ring: KeyRing): void {
    for (const v of this.reflector.list()) {
      if (v.enlist.pending) reopen(v, ring)
      else revalidate(v, ring)
    }
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
