// The relay's idempotency rules, in one place (docs/events.md, "The relay"):
//
//   * deregistered(uid): write the tombstone, then DELETE {url}/{uid} (404 is done).
//   * registered(uid):   no tombstone: PUT {url}/{uid}; then look again: a tombstone that
//                        appeared meanwhile (another relay replica applied the deregistration
//                        between our check and our PUT) means DELETE again.
//                        tombstone: drop it as stale.
//
// A pod UID is never reused, so a deregistration is final for its UID: whatever order
// duplicates, redeliveries and late re-publishes arrive in, the CMDB ends holding exactly
// the UIDs with a registered and no deregistered event. A tombstone is written before the
// DELETE and checked after the PUT, so a PUT can never land after both.

import { type EventKind, kindOf, type RegistrationEvent } from '../events/envelope.js'
import type { PodRef } from '../kube/pod-ref.js'
import type { RegistryRecord } from '../registry/record.js'

export interface Cmdb {
  register(record: RegistryRecord): Promise<void>
  deregister(ref: PodRef): Promise<void>
  list(): Promise<PodRef[]>
}

export interface Tombstones {
  has(uid: string): Promise<boolean>
  add(uid: string, at: Date): Promise<void>
}

export type Outcome = 'applied' | 'stale' | 'duplicate'

/** Ids applied lately, so an immediate redelivery costs no CMDB call. */
export class RecentIds {
  private readonly ids = new Set<string>()
  constructor(private readonly max = 10_000) {}
  has(id: string): boolean {
    return this.ids.has(id)
  }
  add(id: string): void {
    this.ids.delete(id)
    this.ids.add(id)
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as string)
  }
}

export async function applyEvent(e: RegistrationEvent, cmdb: Cmdb, tombstones: Tombstones, recent: RecentIds): Promise<{ kind: EventKind; outcome: Outcome }> {
  const kind = kindOf(e)
  if (recent.has(e.id)) return { kind, outcome: 'duplicate' }
  const ref: PodRef = { uid: e.data.uid, namespace: e.data.namespace, pod: e.data.pod }
  let outcome: Outcome = 'applied'
  if (e.type === 'io.enlist.registration.deregistered') {
    await tombstones.add(ref.uid, new Date())
    await cmdb.deregister(ref)
  } else if (await tombstones.has(ref.uid)) {
    outcome = 'stale'
  } else {
    await cmdb.register(e.data)
    if (await tombstones.has(ref.uid)) {
      await cmdb.deregister(ref)
      outcome = 'stale'
    }
  }
  recent.add(e.id)
  return { kind, outcome }
}

/**
 * Makes the CMDB equal to the snapshot of registered records (`enlist relay --rebuild`, and a
 * relay's first start): PUT every record without a tombstone, then DELETE every CMDB entry
 * in neither the snapshot nor a second snapshot read after listing the CMDB. An entry the live
 * stream PUT meanwhile was in the ledger before it was published (enlist writes the ledger
 * first), so the second read holds it unless it was deregistered: safe beside a running relay.
 */
export async function rebuild(snapshot: () => Promise<RegistryRecord[]>, cmdb: Cmdb, tombstones: Tombstones): Promise<{ put: number; deleted: number; stale: number }> {
  const want = new Set<string>()
  let put = 0
  let stale = 0
  for (const r of await snapshot()) {
    if (await tombstones.has(r.uid)) {
      stale++
      continue
    }
    want.add(r.uid)
    await cmdb.register(r)
    put++
  }
  const listed = await cmdb.list()
  for (const r of await snapshot()) want.add(r.uid)
  let deleted = 0
  for (const ref of listed) {
    if (want.has(ref.uid)) continue
    await cmdb.deregister(ref)
    deleted++
  }
  return { put, deleted, stale }
}
