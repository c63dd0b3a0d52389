// Which cluster an entry in a shared registry belongs to: the one home of the cluster mark.
// Several clusters write one ZooKeeper, etcd, CMDB or broker; each entry carries the name of
// the cluster that wrote it (policy `cluster.name`), in the backend's own terms:
//
// * the record (every backend, the events' data, the HTTP CMDB's body): field `cluster`;
// * ZooKeeper layout dubbo: URL parameter `enlist.cluster` (CLUSTER_PARAM, src/registry/dubbo.ts);
//   layout enlist: `<root>/<cluster>/<namespace>/<service>/<uid>`;
// * etcd: `<prefix><cluster>/<namespace>/<service>/<uid>`;
// * NATS / AMQP: the event's `data.cluster`; the ledgers are the cluster's own.
//
// Ownership decides every delete: an enlist removes only entries marked with its own name.
// Another cluster's entry is never touched; an unmarked one (written by someone else, or
// before marks existed) is counted and reported, and removed only by an explicit adoption
// (`enlist sweep --adopt-unmarked`). Pure.

import type { PodRef } from '../kube/pod-ref.js'

/** This cluster, as its entries and claims name it. */
export interface ClusterIdentity {
  /** policy `cluster.name`: a DNS-1123 label. Empty where the policy names none (allowed
   *  only with the kubernetes backend alone, whose entries are this cluster's pods). */
  readonly name: string
  /** The `kube-system` namespace's UID: tells two clusters of one name apart in a claim. It
   *  is not the mark: a DR cluster restored from an etcd snapshot has the same UID. */
  readonly uid: string
}

/** One entry a backend holds, and the mark it carries. */
export interface ListedEntry extends PodRef {
  /** The cluster the entry names; undefined: it carries no mark. */
  cluster: string | undefined
  /** The writing cluster's kube-system UID, where the backend keeps it in the record (http). */
  clusterUID?: string
}

/** duplicate: this cluster's name, written by a cluster with another kube-system UID (two
 *  clusters share a name where no claim could stop them: http). */
export type Ownership = 'own' | 'other' | 'unmarked' | 'duplicate'
/** The kinds of entries that are not this cluster's (enlist_registry_foreign_entries). */
export const FOREIGN_KINDS = ['other', 'unmarked', 'duplicate'] as const

/** Whose an entry is, seen from cluster `self` (and its kube-system UID, when known). A
 *  cluster with no name (kubernetes backend alone) owns what it lists: that backend lists
 *  only this cluster's pods. */
export function ownership(entry: Pick<ListedEntry, 'cluster' | 'clusterUID'>, self: string, selfUID = ''): Ownership {
  if (entry.cluster === undefined) return self === '' ? 'own' : 'unmarked'
  if (entry.cluster !== self) return 'other'
  return entry.clusterUID !== undefined && selfUID !== '' && entry.clusterUID !== selfUID ? 'duplicate' : 'own'
}

/** Where a backend with a store keeps the claims on cluster names, beneath its root:
 *  `<root>/.clusters/<name>` (ZooKeeper), `<prefix>.clusters/<name>` (etcd). A cluster name
 *  is a DNS-1123 label, so `.clusters` can never be one. */
export const CLAIMS_DIR = '.clusters'

/** A claim record: which cluster (by its kube-system UID) holds a name. */
export interface ClusterClaim {
  name: string
  uid: string
  claimedAt: string
}

export function encodeClaim(c: ClusterClaim): string {
  return JSON.stringify({ name: c.name, uid: c.uid, claimedAt: c.claimedAt })
}

/** A claim as stored, or undefined for a value that is not one (treated as no claim of ours). */
export function decodeClaim(text: string): ClusterClaim | undefined {
  try {
    const v = JSON.parse(text) as Partial<ClusterClaim>
    if (typeof v.name === 'string' && typeof v.uid === 'string') return { name: v.name, uid: v.uid, claimedAt: typeof v.claimedAt === 'string' ? v.claimedAt : '' }
  } catch {
    // not JSON: someone else's node
  }
  return undefined
}

/** A claim on this cluster's name held by another cluster: the backend refuses to write. */
export class ClaimRefusedError extends Error {
  readonly code = 'ENLIST_CLUSTER_CLAIMED'
  constructor(
    readonly backend: string,
    readonly holder: ClusterClaim,
    readonly self: ClusterIdentity,
  ) {
    super(
      `cluster name "${self.name}" is claimed in backend ${backend} by another cluster (kube-system UID ${holder.uid}, since ${holder.claimedAt || 'unknown'}; ` +
        `this cluster's is ${self.uid}): two clusters must not share a name. Give this cluster another cluster.name, ` +
        `or, for a DR cluster taking over, run "enlist claim --take-over --backend ${backend}"`,
    )
    this.name = 'ClaimRefusedError'
  }
}

/** What a claim attempt found. */
export type ClaimResult = { held: true; claim: ClusterClaim; created: boolean } | { held: false; holder: ClusterClaim }

/** The claim to write for `self`, or whether an existing one refuses it. */
export function judgeClaim(existing: ClusterClaim | undefined, self: ClusterIdentity, takeOver: boolean, now = new Date()): { write?: ClusterClaim; result: ClaimResult } {
  if (existing && existing.uid === self.uid) return { result: { held: true, claim: existing, created: false } }
  if (existing && !takeOver) return { result: { held: false, holder: existing } }
  const claim = { name: self.name, uid: self.uid, claimedAt: now.toISOString() }
  return { write: claim, result: { held: true, claim, created: true } }
}
