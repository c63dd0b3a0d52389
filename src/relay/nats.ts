// The relay's NATS JetStream side: a durable pull consumer on the events stream (explicit
// acks), the registrations bucket as the snapshot, and a tombstone bucket whose entries
// expire after the retention (a tombstone older than the stream's max age guards nothing).

import { AckPolicy, type Consumer, type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import type { Logger } from 'pino'
import { errorMessage } from '../lib/errors.js'
import { readBucket } from '../registry/nats/backend.js'
import { NatsLink, type NatsCredentials } from '../registry/nats/connection.js'
import { isNotFound } from '../registry/nats/stream.js'
import type { RegistryRecord } from '../registry/record.js'
import type { Tombstones } from './apply.js'
import type { Delivery, EventSource } from './source.js'

export interface NatsSourceOptions {
  url: string
  credentials: () => Promise<NatsCredentials>
  stream: string
  subjectPrefix: string
  consumer: string
  bucket: string
  tombstoneBucket: string
  tombstoneRetentionMs: number
  timeoutMs: number
  log: Logger
}

export class NatsSource implements EventSource {
  readonly kind = 'nats' as const
  private readonly link: NatsLink
  private js: JetStreamClient | undefined
  private jsm: JetStreamManager | undefined
  private tombs: KV | undefined
  private messages: ConsumerMessages | undefined
  private stopped = false

  constructor(private readonly o: NatsSourceOptions) {
    this.link = new NatsLink({ url: o.url, name: 'enlist-relay', timeoutMs: o.timeoutMs, credentials: o.credentials, log: o.log })
  }

  async open(): Promise<{ created: boolean }> {
    this.link.start()
    const nc = await this.link.connection(60_000)
    this.js = jetstream(nc, { timeout: this.o.timeoutMs })
    this.jsm = await this.js.jetstreamManager()
    this.tombs = await new Kvm(this.js).create(this.o.tombstoneBucket, {
      history: 1,
      ttl: this.o.tombstoneRetentionMs,
      allow_direct: false,
      description: 'enlist relay: pod UIDs whose deregistration was applied',
    })
    try {
      await this.jsm.consumers.info(this.o.stream, this.o.consumer)
      return { created: false }
    } catch (err) {
      if (!isNotFound(err) && !/consumer not found/i.test(errorMessage(err))) throw err
    }
    // A late start: deliver what comes after the stream's present end; the snapshot covers
    // what came before (the relay rebuilds from it before consuming).
    const si = await this.jsm.streams.info(this.o.stream)
    await this.jsm.consumers.add(this.o.stream, {
      durable_name: this.o.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: si.state.last_seq + 1,
      filter_subject: `${this.o.subjectPrefix}.>`,
      ack_wait: 30_000_000_000,
      max_ack_pending: 256,
      description: 'enlist relay: registration events to the CMDB',
    })
    return { created: true }
  }

  async consume(handle: (d: Delivery) => Promise<void>): Promise<void> {
    while (!this.stopped) {
      let consumer: Consumer
      try {
        await this.link.connection(this.o.timeoutMs)
        consumer = await this.js!.consumers.get(this.o.stream, this.o.consumer)
        this.messages = await consumer.consume({ max_messages: 64 })
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'cannot consume yet; retrying')
        await new Promise((r) => setTimeout(r, 1000))
        continue
      }
      for await (const m of this.messages) {
        await handle({
          body: m.data,
          storedAt: new Date(Number(m.info.timestampNanos) / 1e6),
          redelivered: m.info.redelivered,
          working: () => m.working(),
          ack: async () => {
            await m.ackAck({ timeout: this.o.timeoutMs })
          },
          requeue: () => m.nak(),
        })
        if (this.stopped) break
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.messages?.close().catch(() => undefined)
  }

  /** The bucket's registered records: with a cluster, only its keys are read. */
  async snapshot(cluster?: string): Promise<RegistryRecord[]> {
    const entries = await readBucket(this.js!, this.o.bucket, 120_000, cluster === undefined ? '>' : `${cluster}.*`)
    return entries.filter((e) => e.entry.state === 'registered').map((e) => e.entry.data as RegistryRecord)
  }

  tombstones(): Tombstones {
    return {
      has: async (uid) => {
        const e = await this.tombs!.get(uid)
        return e !== null && e.operation === 'PUT'
      },
      add: async (uid, at) => {
        await this.tombs!.put(uid, at.toISOString())
      },
    }
  }

  async pending(): Promise<number | undefined> {
    const ci = await this.jsm?.consumers.info(this.o.stream, this.o.consumer)
    return ci ? ci.num_pending + ci.num_ack_pending : undefined
  }

  health(): string | undefined {
    return this.link.health()
  }

  close(): Promise<void> {
    return this.link.close()
  }
}
