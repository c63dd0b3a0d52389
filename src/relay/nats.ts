// The relay's NATS JetStream side: a durable pull consumer on the events stream (explicit
// acks), the registrations bucket as the snapshot, and a tombstone bucket whose entries
// expire after the retention (a tombstone older than the stream's max age guards nothing).
// Dead letters go to a stream of their own (ENLIST_REGISTRATIONS_DEAD, subjects
// `<deadLetterPrefix>.>`, declared here), under `<deadLetterPrefix>.<consumer>`: one relay's.

import { AckPolicy, type Consumer, type ConsumerMessages, DeliverPolicy, DiscardPolicy, type JetStreamClient, type JetStreamManager, jetstream, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node'
import { SIGNATURE_HEADER } from '../events/signature.js'
import { Kvm, type KV } from '@nats-io/kv'
import type { Logger } from 'pino'
import { errorMessage } from '../lib/errors.js'
import { readBucket } from '../registry/nats/backend.js'
import { NatsLink, type NatsCredentials } from '../registry/nats/connection.js'
import { isNotFound } from '../registry/nats/stream.js'
import type { RegistryRecord } from '../registry/record.js'
import type { Tombstones } from './apply.js'
import type { DeadLetter, Delivery, EventSource, ReplayResult } from './source.js'

export const DEAD_LETTER_REASON_HEADER = 'Enlist-Dead-Letter-Reason'
const DEAD_LETTER_MAX_AGE_NS = 30 * 24 * 3600 * 1e9

export interface NatsSourceOptions {
  url: string
  credentials: () => Promise<NatsCredentials>
  stream: string
  subjectPrefix: string
  consumer: string
  bucket: string
  tombstoneBucket: string
  tombstoneRetentionMs: number
  /** The dead-letter stream and its subject prefix (this relay's: `<prefix>.<consumer>`). */
  deadLetterStream: string
  deadLetterPrefix: string
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
    await this.ensureDeadLetterStream()
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
          signature: m.headers?.get(SIGNATURE_HEADER) || undefined,
          storedAt: new Date(Number(m.info.timestampNanos) / 1e6),
          redelivered: m.info.redelivered,
          working: () => m.working(),
          ack: async () => {
            await m.ackAck({ timeout: this.o.timeoutMs })
          },
          requeue: () => m.nak(),
          deadLetter: async (reason) => {
            await this.publishDeadLetter(m.data, m.headers, reason, m.subject)
            await m.ackAck({ timeout: this.o.timeoutMs })
          },
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

  private get deadLetterSubject(): string {
    return `${this.o.deadLetterPrefix}.${this.o.consumer}`
  }

  /** Declared like the events stream (absent: created; present: used as the admin made it). */
  private async ensureDeadLetterStream(): Promise<void> {
    try {
      await this.jsm!.streams.info(this.o.deadLetterStream)
      return
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
    const events = await this.jsm!.streams.info(this.o.stream).catch(() => undefined)
    await this.jsm!.streams.add({
      name: this.o.deadLetterStream,
      description: 'enlist relay: events it could not apply (docs/events.md, dead letters)',
      subjects: [`${this.o.deadLetterPrefix}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: events?.config.num_replicas ?? 1,
      max_age: DEAD_LETTER_MAX_AGE_NS,
    })
  }

  /** The very bytes and signature, so a replay checks what enlist signed. */
  private async publishDeadLetter(body: Uint8Array, from: MsgHdrs | undefined, reason: string, subject: string): Promise<void> {
    const h = natsHeaders()
    for (const k of ['Content-Type', SIGNATURE_HEADER, 'Nats-Msg-Id']) {
      const v = from?.get(k)
      if (v) h.set(k === 'Nats-Msg-Id' ? 'Enlist-Event-Id' : k, v)
    }
    h.set(DEAD_LETTER_REASON_HEADER, reason.replace(/[\r\n]/g, ' ').slice(0, 1024))
    h.set('Enlist-Dead-Letter-Subject', subject)
    await this.js!.publish(this.deadLetterSubject, body, { headers: h, timeout: this.o.timeoutMs })
  }

  async replayDeadLetters(apply: (d: DeadLetter) => Promise<boolean>): Promise<ReplayResult> {
    const r: ReplayResult = { replayed: 0, kept: 0 }
    const consumer = await this.js!.consumers.get(this.o.deadLetterStream, { filter_subjects: this.deadLetterSubject, deliver_policy: DeliverPolicy.All })
    // each once: those present now, not those a failing replay would add
    const total = (await consumer.info(true)).num_pending
    if (total === 0) {
      await consumer.delete().catch(() => undefined)
      return r
    }
    const iter = await consumer.consume({ max_messages: 64 })
    let seen = 0
    try {
      for await (const m of iter) {
        seen++
        const ok = await apply({ body: m.data, signature: m.headers?.get(SIGNATURE_HEADER) || undefined, reason: m.headers?.get(DEAD_LETTER_REASON_HEADER) ?? '' })
        if (ok) {
          await this.jsm!.streams.deleteMessage(this.o.deadLetterStream, m.seq, false)
          r.replayed++
        } else r.kept++
        if (seen >= total || m.info.pending === 0) break
      }
    } finally {
      await iter.close().catch(() => undefined)
    }
    return r
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
