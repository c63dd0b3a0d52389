// A registry backend that publishes registration events to a broker (NATS JetStream,
// RabbitMQ) and keeps a ledger: the durable record of what it published as registered,
// so deregistrations reach consumers even for pods that vanished while enlist or the broker
// was down. The broker and the ledger are the broker-specific parts.
//
// Order (docs/events.md): the ledger is written before the registered event is published
// (an intent log: no published registration the sweep does not know); a deregistration marks
// the entry, publishes, then removes it, so an interruption anywhere is finished by the next
// call or sweep, with the same event id.

import type { Logger } from 'pino'
import {
  type DeregisteredData,
  deregisteredEvent,
  encodeEvent,
  type EventKind,
  kindOf,
  type RegistrationEvent,
  registeredEvent,
} from '../../events/envelope.js'
import { errorMessage } from '../../lib/errors.js'
import { type Backend, type BackendCallOptions, BackendError, type BackendOp } from '../backend.js'
import type { PodRef } from '../../kube/pod-ref.js'
import type { ClaimResult, ClusterIdentity, ListedEntry } from '../ownership.js'
import type { RegistryRecord } from '../record.js'
import type { EventMetrics } from './metrics.js'

/** The largest event body enlist publishes: an AMQP ledger shard holds 900 KiB, so without a
 *  cap a few pods with huge metadata would fill the shard every pod hashing there needs
 *  (and NATS refuses bodies over its max_payload). 16 KiB holds the 8 KiB of metadata the
 *  policy allows by default with room to spare. */
export const MAX_EVENT_BYTES = 16 * 1024

export interface LedgerEntry {
  /** registered: published (or about to be); deregistered: its deregistered event is being published. */
  state: 'registered' | 'deregistered'
  data: RegistryRecord | DeregisteredData
  deregisteredAt?: string
}

/** One ledger entry as list() reads it. */
export interface LedgerItem {
  uid: string
  entry: LedgerEntry
  /** Kept where no cluster's entries are (a shared NATS bucket's key from before keys were
   *  per cluster): unmarked, never this cluster's to finish or remove but by adoption. */
  unmarked?: boolean
}

/** The ledger is this cluster's own (docs/events.md): a NATS bucket's keys under the
 *  cluster's name, the AMQP ConfigMaps in the cluster itself. get() of a pod of this cluster
 *  may find its entry where it was kept before keys were per cluster: the pod UID is the key,
 *  so that entry is this pod's, and get() moves it under this cluster's mark. */
export interface Ledger {
  get(uid: string): Promise<LedgerEntry | undefined>
  put(uid: string, entry: LedgerEntry): Promise<void>
  remove(uid: string): Promise<void>
  list(): Promise<LedgerItem[]>
  health?(): string | undefined
  close?(): Promise<void> | void
}

export interface PublishResult {
  /** The broker already had this id (JetStream's duplicate window). */
  duplicate: boolean
}

/** Why a publish failed, for the failure metric. */
export type FailureReason = 'timeout' | 'nack' | 'unroutable' | 'not_connected' | 'no_signing_key' | 'error'

export class PublishError extends Error {
  constructor(
    message: string,
    readonly reason: FailureReason,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'PublishError'
  }
}

export interface Broker {
  /** Resolves once the broker acknowledged the event; rejects with PublishError, bounded. */
  publish(e: RegistrationEvent): Promise<PublishResult>
  health(): string | undefined
  close(): Promise<void>
}

export interface EventBackendOptions {
  name: string
  type: 'nats' | 'amqp'
  source: string
  /** This cluster's name (policy cluster.name): its ledger's entries are its own, and the
   *  events' data carry it (the records are stamped by the BackendSet). */
  cluster: string
  broker: Broker
  ledger: Ledger
  /** Claims the cluster's name where the broker has a store (the NATS bucket); absent for
   *  AMQP, whose ledger lives in the cluster itself. */
  claim?: Backend['claim']
  metrics: EventMetrics
  log: Logger
  /** Why events cannot be signed now (signer.ts), for health(). */
  signerHealth?: () => string | undefined
}

export class EventBackend implements Backend {
  readonly name: string
  readonly type: 'nats' | 'amqp'
  /** Operations on one pod run one at a time (a registration racing its deregistration). */
  private readonly locks = new Map<string, Promise<void>>()
  /** The last publish failure, shown by health() for a minute unless a publish succeeds:
   *  a connected broker can still refuse (permissions, no stream for the subject). */
  private lastFailure: { at: number; message: string } | undefined
  readonly claim?: (self: ClusterIdentity, takeOver: boolean, opts?: BackendCallOptions) => Promise<ClaimResult>

  constructor(private readonly o: EventBackendOptions) {
    this.name = o.name
    this.type = o.type
    if (o.claim) this.claim = o.claim
  }

  register(record: RegistryRecord): Promise<void> {
    const size = encodeEvent(registeredEvent(this.o.source, record)).length
    if (size > MAX_EVENT_BYTES) {
      // refused before the ledger: it would never fit a message, and would crowd a ledger shard
      return Promise.reject(
        new BackendError(this.name, 'register', `the event of pod ${record.namespace}/${record.pod} would be ${size} bytes, over the ${MAX_EVENT_BYTES} an event may carry: reduce its metadata`, false),
      )
    }
    return this.locked(record.uid, async () => {
      const existing = await this.ledger('register', 'get', () => this.o.ledger.get(record.uid))
      // A deregistration in progress is final for this uid: finish it rather than undo it.
      if (existing?.state === 'deregistered') {
        await this.finishDeregistration(record.uid, existing)
        throw new BackendError(this.name, 'register', `pod ${record.namespace}/${record.pod} (${record.uid}) was already deregistered`, false)
      }
      await this.ledger('register', 'put', () => this.o.ledger.put(record.uid, { state: 'registered', data: record }))
      await this.publish('register', registeredEvent(this.o.source, record))
    })
  }

  deregister(ref: PodRef): Promise<void> {
    return this.locked(ref.uid, async () => {
      // Not in the ledger: never published as registered, or its deregistration was already
      // acked (the entry goes only after that). Publishing again from what the pod cache says
      // would make a duplicate that differs from the original: the ledger alone decides.
      const entry = await this.ledger('deregister', 'get', () => this.o.ledger.get(ref.uid))
      if (!entry) return
      await this.finishDeregistration(ref.uid, entry)
    })
  }

  /** Every pod the ledger holds as registered. Deregistrations an interruption left half
   *  done are finished here, so the sweep completes them too. */
  async list(): Promise<ListedEntry[]> {
    const entries = await this.ledger('list', 'list', () => this.o.ledger.list())
    const out: ListedEntry[] = []
    for (const { uid, entry, unmarked } of entries) {
      // An unmarked entry may be another cluster's (a bucket shared before keys were per
      // cluster): reported, never finished nor removed here (adopt() does that, when asked).
      if (unmarked) {
        out.push({ uid, namespace: entry.data.namespace, pod: entry.data.pod, cluster: undefined })
        continue
      }
      if (entry.state === 'deregistered') {
        await this.locked(uid, () => this.finishDeregistration(uid, entry))
        continue
      }
      // The ledger is this cluster's own (docs/events.md): every marked entry in it is its.
      out.push({ uid, namespace: entry.data.namespace, pod: entry.data.pod, cluster: this.o.cluster || undefined })
    }
    this.o.metrics.ledgerEntries.set({ backend: this.name }, out.length)
    return out
  }

  /** `enlist sweep --adopt-unmarked`: the pod lives here (`record`): its entry is written
   *  again under this cluster's mark (the registered event re-published, the same id);
   *  its pod is gone: its deregistered event is published, marked, and the entry removed. */
  adopt(entry: ListedEntry, record: RegistryRecord | undefined): Promise<void> {
    if (entry.cluster !== undefined) {
      return Promise.reject(new BackendError(this.name, 'adopt', `the entry of pod ${entry.namespace}/${entry.pod} carries cluster ${entry.cluster}'s mark; only unmarked entries are adopted`, false))
    }
    if (record) return this.register(record)
    return this.locked(entry.uid, async () => {
      // get() moves the unmarked entry under this cluster's mark (Ledger)
      const found = await this.ledger('adopt', 'get', () => this.o.ledger.get(entry.uid))
      if (!found) return
      const data = this.o.cluster === '' ? found.data : { ...found.data, cluster: this.o.cluster }
      await this.finishDeregistration(entry.uid, { ...found, data })
    })
  }

  health(): string | undefined {
    const recent = this.lastFailure && Date.now() - this.lastFailure.at < 60_000 ? `publishing failed: ${this.lastFailure.message}` : undefined
    const reason = this.o.broker.health() ?? this.o.signerHealth?.() ?? this.o.ledger.health?.() ?? recent
    this.o.metrics.up.set({ backend: this.name }, reason === undefined ? 1 : 0)
    return reason
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.o.broker.close(), this.o.ledger.close?.()])
  }

  private async finishDeregistration(uid: string, entry: LedgerEntry): Promise<void> {
    let marked = entry
    if (entry.state !== 'deregistered') {
      marked = { state: 'deregistered', data: entry.data, deregisteredAt: new Date().toISOString() }
      await this.ledger('deregister', 'put', () => this.o.ledger.put(uid, marked))
    }
    await this.publish('deregister', deregisteredEvent(this.o.source, marked.data, marked.deregisteredAt ?? new Date().toISOString()))
    await this.ledger('deregister', 'remove', () => this.o.ledger.remove(uid))
  }

  private async publish(op: BackendOp, e: RegistrationEvent): Promise<void> {
    const type: EventKind = kindOf(e)
    const { metrics, broker } = this.o
    metrics.published.inc({ backend: this.name, type })
    const end = metrics.publishDuration.startTimer({ backend: this.name })
    try {
      const r = await broker.publish(e)
      end()
      metrics.acked.inc({ backend: this.name, type, duplicate: String(r.duplicate) })
      this.lastFailure = undefined
    } catch (err) {
      const reason = err instanceof PublishError ? err.reason : 'error'
      metrics.failed.inc({ backend: this.name, type, reason })
      this.lastFailure = { at: Date.now(), message: errorMessage(err) }
      throw new BackendError(this.name, op, `publish ${e.id}: ${errorMessage(err)}`, true, { cause: err })
    }
  }

  private async ledger<T>(op: BackendOp, what: string, fn: () => Promise<T>): Promise<T> {
    const end = this.o.metrics.ledgerDuration.startTimer({ backend: this.name, op: what })
    try {
      return await fn()
    } catch (err) {
      if (err instanceof BackendError) throw err
      throw new BackendError(this.name, op, `ledger ${what}: ${errorMessage(err)}`, true, { cause: err })
    } finally {
      end()
    }
  }

  private async locked<T>(uid: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(uid) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.then(
      () => undefined,
      () => undefined,
    )
    this.locks.set(uid, tail)
    try {
      return await run
    } finally {
      if (this.locks.get(uid) === tail) this.locks.delete(uid)
    }
  }
}
