// What the relay needs from a broker: a durable stream of deliveries it acks only after the
// CMDB answered, the snapshot of what is registered, and a tombstone store.

import type { RegistryRecord } from '../registry/record.js'
import type { Tombstones } from './apply.js'

export interface Delivery {
  body: Uint8Array
  /** The `Enlist-Signature` transport header, if any. */
  signature: string | undefined
  /** When the broker stored the message (for the lag metric). */
  storedAt: Date | undefined
  redelivered: boolean
  /** Keeps the delivery from being redelivered while the CMDB is retried. */
  working(): void
  ack(): Promise<void>
  /** Hands the message back for redelivery (at stop). */
  requeue(): void
  /** Stores the message, signature header included, in the dead-letter place with `reason`
   *  (confirmed by the broker), then acks it. Throws when the broker did not take it. */
  deadLetter(reason: string): Promise<void>
}

/** One dead letter, as `--replay-dead-letters` reads it. */
export interface DeadLetter {
  body: Uint8Array
  signature: string | undefined
  reason: string
}

export interface ReplayResult {
  /** Applied, and removed from the dead-letter place. */
  replayed: number
  /** Failed again: left there. */
  kept: number
}

export interface EventSource {
  readonly kind: 'nats' | 'amqp'
  /** Connects; true when the durable consumer or queue did not exist yet (a late start:
   *  the relay rebuilds from the snapshot first). */
  open(): Promise<{ created: boolean }>
  /** Calls `handle` for each delivery, one at a time, until stop(). */
  consume(handle: (d: Delivery) => Promise<void>): Promise<void>
  stop(): Promise<void>
  /** The records published as registered; `cluster`: at least those of that cluster (a
   *  source may leave the others out). */
  snapshot(cluster?: string): Promise<RegistryRecord[]>
  tombstones(): Tombstones
  /** Visits each dead letter present when called, once: `apply` true removes it, false
   *  leaves it (after the others: a second replay sees it again). */
  replayDeadLetters(apply: (d: DeadLetter) => Promise<boolean>): Promise<ReplayResult>
  /** Messages waiting for this relay (consumer pending or queue depth), if known. */
  pending(): Promise<number | undefined>
  health(): string | undefined
  close(): Promise<void>
}
