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
//
// Several clusters may feed one CMDB (one relay per source cluster): a rebuild changes only
// the entries whose record carries the relay's cluster (`--cluster`), never another's or an
// unmarked one (src/registry/ownership.ts).

import { type EventKind, kindOf, type RegistrationEvent } from '../events/envelope.js'
import type { PodRef } from '../kube/pod-ref.js'
import { type ListedEntry, ownership } from '../registry/ownership.js'
import type { RegistryRecord } from '../registry/record.js'

export interface Cmdb {
  register(record: RegistryRecord): Promise<void>
  deregister(ref: PodRef): Promise<void>
  /** Every entry, with the cluster mark its record carries. */
  list(): Promise<ListedEntry[]>
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

export interface RebuildResult {
  put: number
  deleted: number
  stale: number
  /** Snapshot records left alone: not marked with the relay's cluster. */
  skipped: number
}

/**
 * Makes the CMDB equal to the snapshot of registered records (`enlist relay --rebuild`, and a
 * relay's first start): PUT every record without a tombstone, then DELETE every CMDB entry
 * in neither the snapshot nor a second snapshot read after listing the CMDB. An entry the live
 * stream PUT meanwhile was in the ledger before it was published (enlist writes the ledger
 * first), so the second read holds it unless it was deregistered: safe beside a running relay.
 *
 * `cluster` scopes it: only records and CMDB entries carrying that cluster's mark are PUT or
 * DELETEd. Without one (a first start without --cluster) nothing is deleted: the CMDB may be
 * fed by other clusters, whose entries this snapshot cannot vouch for.
 */
export async function rebuild(snapshot: () => Promise<RegistryRecord[]>, cmdb: Cmdb, tombstones: Tombstones, cluster?: string): Promise<RebuildResult> {
  const want = new Set<string>()
  const r: RebuildResult = { put: 0, deleted: 0, stale: 0, skipped: 0 }
  for (const record of await snapshot()) {
    // never DELETE what any snapshot record names, ours or not
    want.add(record.uid)
    if (cluster !== undefined && record.cluster !== cluster) {
      r.skipped++
      continue
    }
    if (await tombstones.has(record.uid)) {
      r.stale++
      continue
    }
    await cmdb.register(record)
    r.put++
  }
  if (cluster === undefined) return r
  const listed = await cmdb.list()
  for (const record of await snapshot()) want.add(record.uid)
  for (const entry of listed) {
    if (want.has(entry.uid) || ownership(entry, cluster) !== 'own') continue
    await cmdb.deregister(entry)
    r.deleted++
  }
  return r
}
