// What the relay needs from a broker: a durable stream of deliveries it acks only after the
// CMDB answered, the snapshot of what is registered, and a tombstone store.

import type { RegistryRecord } from '../registry/record.js'
import type { Tombstones } from './apply.js'

export interface Delivery {
  body: Uint8Array
  /** When the broker stored the message (for the lag metric). */
  storedAt: Date | undefined
  redelivered: boolean
  /** Keeps the delivery from being redelivered while the CMDB is retried. */
  working(): void
  ack(): Promise<void>
  /** Hands the message back for redelivery (at stop). */
  requeue(): void
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
  /** Messages waiting for this relay (consumer pending or queue depth), if known. */
  pending(): Promise<number | undefined>
  health(): string | undefined
  close(): Promise<void>
}
