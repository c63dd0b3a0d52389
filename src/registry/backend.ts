// A registry backend. Every operation is idempotent: registering twice, or deregistering
// what is already gone, succeeds. Every operation is bounded in time by the backend itself,
// and should stop early when `opts.signal` aborts (leadership lost, shutdown); one that
// does not is abandoned by the registry all the same.

import type { PodView } from '../kube/pod-view.js'
import { EnlistError } from '../lib/errors.js'
import type { PodRef } from '../kube/pod-ref.js'
import type { ClaimResult, ClusterIdentity, ListedEntry } from './ownership.js'
import type { RegistryRecord } from './record.js'

export interface BackendCallOptions {
  /** Fires when the caller no longer wants the answer. */
  signal?: AbortSignal
  /** Awaited before each request the call makes to the backend (a sweep's rate limit:
   *  a paged list waits before every page). */
  pace?: () => Promise<void>
}

export interface Backend {
  readonly name: string
  readonly type: string
  register(record: RegistryRecord, opts?: BackendCallOptions): Promise<void>
  deregister(ref: PodRef, opts?: BackendCallOptions): Promise<void>
  /** Every enlist entry this backend holds, with the cluster mark each carries
   *  (src/registry/ownership.ts): the sweep removes this cluster's strays only. */
  list(opts?: BackendCallOptions): Promise<ListedEntry[]>
  /** For a backend with a store (etcd, ZooKeeper, the NATS key-value store): claims this
   *  cluster's name (`<root>/.clusters/<name>`, holding the kube-system UID). A claim held
   *  by another UID is refused unless `takeOver`. */
  claim?(self: ClusterIdentity, takeOver: boolean, opts?: BackendCallOptions): Promise<ClaimResult>
  /** `enlist sweep --adopt-unmarked`: makes an unmarked entry (as list() gave it) this
   *  cluster's. `record` given (its pod lives here): the entry is written again with this
   *  cluster's mark and the unmarked copy removed; undefined (its pod is gone): the unmarked
   *  entry alone is removed. Never touches an entry with another cluster's mark. */
  adopt?(entry: ListedEntry, record: RegistryRecord | undefined, opts?: BackendCallOptions): Promise<void>
  /** Why the backend cannot serve now (unreachable, misconfigured), or undefined. Reported
   *  in /readyz?verbose and metrics; it never gates admission. */
  health?(): string | undefined
  /** For a backend that keeps the record on the pod itself (kubernetes): whether the
   *  pod's copy (as the cache keeps it: a digest) differs from `record`, i.e. someone but
   *  enlist edited it. */
  drifted?(pod: PodView, record: RegistryRecord): boolean
  /** Releases connections; called when the policy replaces the backend, and at exit. */
  close?(): Promise<void> | void
}

export type BackendOp = 'register' | 'deregister' | 'list' | 'claim' | 'adopt'

/** A backend call failed. The message reaches the registrar and pod Events, so it says
 *  what failed in words safe for tenants (a status, "timed out"): never a URL, a
 *  credential or what the backend answered. Those go to enlist's own log. */
export class BackendError extends EnlistError {
  constructor(
    readonly backend: string,
    readonly op: BackendOp,
    message: string,
    /** False for errors a retry cannot fix (a 400, a missing Secret): said loudly. */
    readonly retryable = true,
    options?: ErrorOptions,
  ) {
    super('ENLIST_BACKEND_FAILED', `backend ${backend}: ${op} failed: ${message}`, 503, options)
    this.name = 'BackendError'
  }
}
