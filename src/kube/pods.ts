// Pods managed by enlist (label enlist.io/managed=true), watched once and shared by the
// registration API, the kubernetes backend and the controller. Indexed by uid, because
// registry entries outlive pod names: a uid maps to its pod only while that very pod (not
// a namesake that replaced it, whether seen by the watch or found by a relist) is stored.

import type { V1Pod } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { MANAGED_LABEL } from '../names.js'
import { type ListWatchClient, objectKey, Reflector, type ReflectorHandlers } from './reflector.js'

export class ManagedPods {
  readonly reflector: Reflector<V1Pod>
  private readonly uidToKey = new Map<string, string>()

  constructor(client: ListWatchClient, log: Logger) {
    this.reflector = new Reflector<V1Pod>({
      client,
      log,
      name: 'managed pods',
      path: '/api/v1/pods',
      labelSelector: `${MANAGED_LABEL}=true`,
      // managedFields are most of a pod's bytes and nothing here reads them
      transform: (p) => {
        if (p.metadata?.managedFields) delete p.metadata.managedFields
        return p
      },
    })
    this.reflector.on({
      add: (p) => this.index(p),
      update: (p, old) => {
        if (old.metadata?.uid !== p.metadata?.uid) this.unindex(old)
        this.index(p)
      },
      delete: (p) => this.unindex(p),
    })
  }

  on(h: ReflectorHandlers<V1Pod>): void {
    this.reflector.on(h)
  }

  start(): void {
    this.reflector.start()
  }

  stop(): Promise<void> {
    return this.reflector.stop()
  }

  get synced(): boolean {
    return this.reflector.synced
  }

  get(namespace: string, name: string): V1Pod | undefined {
    return this.reflector.get(`${namespace}/${name}`)
  }

  byUid(uid: string): V1Pod | undefined {
    const key = this.uidToKey.get(uid)
    const pod = key ? this.reflector.get(key) : undefined
    return pod?.metadata?.uid === uid ? pod : undefined
  }

  pods(): Iterable<V1Pod> {
    return this.reflector.list()
  }

  private index(p: V1Pod): void {
    if (p.metadata?.uid) this.uidToKey.set(p.metadata.uid, objectKey(p))
  }

  private unindex(p: V1Pod): void {
    const uid = p.metadata?.uid
    if (uid && this.uidToKey.get(uid) === objectKey(p)) this.uidToKey.delete(uid)
  }
}
