// The relay's AMQP side: a durable queue bound to the exchange for every registration
// event, consumed with manual acks; the snapshot is enlist's ledger (ConfigMaps in enlist's
// namespace) and the tombstones are ConfigMaps of the relay's own, pruned past retention.
// Dead letters go, confirmed, to a durable direct exchange the relay declares
// (enlist.registrations.dead) and from there to this relay's queue `<queue>.dead`; the
// events queue keeps its arguments (a broker-side DLX would mean re-declaring it).

import type { ConfirmChannel, ConsumeMessage, GetMessage, MessagePropertyHeaders } from 'amqplib'
import { SIGNATURE_HEADER } from '../events/signature.js'
import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import { errorMessage } from '../lib/errors.js'
import { LEDGER_PREFIX, LEDGER_SHARDS } from '../registry/amqp/backend.js'
import { AmqpLink, type AmqpCredentials } from '../registry/amqp/connection.js'
import { ConfigMapStore } from '../registry/events/configmap-store.js'
import type { LedgerEntry } from '../registry/events/backend.js'
import type { RegistryRecord } from '../registry/record.js'
import type { Tombstones } from './apply.js'
import type { DeadLetter, Delivery, EventSource, ReplayResult } from './source.js'

export const DEAD_LETTER_REASON_HEADER = 'Enlist-Dead-Letter-Reason'

/** A header as text: amqplib may hand a long string back as bytes. */
function headerText(h: MessagePropertyHeaders | undefined, name: string): string | undefined {
  const v: unknown = h?.[name]
  if (typeof v === 'string') return v || undefined
  if (Buffer.isBuffer(v)) return v.toString('utf8') || undefined
  return undefined
}

export interface AmqpSourceOptions {
  url: string
  credentials: () => Promise<AmqpCredentials>
  exchange: string
  queue: string
  queueType: 'classic' | 'quorum'
  client: KubeClient
  namespace: string
  /** The amqp backend's name in enlist's policy: its ledger keys start with it. */
  ledgerBackend: string
  tombstoneRetentionMs: number
  /** The dead-letter exchange, and this relay's queue on it (bound with its own name). */
  deadLetterExchange: string
  deadLetterQueue: string
  timeoutMs: number
  log: Logger
}

export const TOMBSTONE_PREFIX = 'enlist-relay-tombstones'
export const TOMBSTONE_SHARDS = 16

export class AmqpSource implements EventSource {
  readonly kind = 'amqp' as const
  private readonly link: AmqpLink
  private readonly ledger: ConfigMapStore
  private readonly tombs: ConfigMapStore
  private stopped = false
  private created = false
  private consumerTag: string | undefined
  private wakeStop: (() => void) | undefined

  constructor(private readonly o: AmqpSourceOptions) {
    this.link = new AmqpLink({
      url: o.url,
      name: 'enlist-relay',
      heartbeatSeconds: 30,
      timeoutMs: o.timeoutMs,
      credentials: o.credentials,
      prefetch: 32,
      setup: async (ch, conn) => {
        const probe = await conn.createChannel()
        probe.on('error', () => undefined) // closed by the broker when the queue is absent
        try {
          await probe.checkQueue(o.queue)
          await probe.close().catch(() => undefined)
        } catch {
          this.created = true
        }
        await ch.assertExchange(o.exchange, 'topic', { durable: true })
        await ch.assertQueue(o.queue, { durable: true, arguments: { 'x-queue-type': o.queueType } })
        await ch.bindQueue(o.queue, o.exchange, '#')
        await ch.assertExchange(o.deadLetterExchange, 'direct', { durable: true })
        await ch.assertQueue(o.deadLetterQueue, { durable: true, arguments: { 'x-queue-type': o.queueType } })
        await ch.bindQueue(o.deadLetterQueue, o.deadLetterExchange, o.deadLetterQueue)
      },
      log: o.log,
    })
    const common = { client: o.client, namespace: o.namespace, timeoutMs: o.timeoutMs }
    this.ledger = new ConfigMapStore({ ...common, prefix: LEDGER_PREFIX, shards: LEDGER_SHARDS, keyPrefix: `${o.ledgerBackend}.`, labels: {} })
    this.tombs = new ConfigMapStore({
      ...common,
      prefix: TOMBSTONE_PREFIX,
      shards: TOMBSTONE_SHARDS,
      keyPrefix: '',
      labels: { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/component': 'relay-tombstones' },
    })
  }

  async open(): Promise<{ created: boolean }> {
    this.link.start()
    await this.link.channel(60_000)
    return { created: this.created }
  }

  async consume(handle: (d: Delivery) => Promise<void>): Promise<void> {
    while (!this.stopped) {
      let ch: ConfirmChannel
      try {
        ch = await this.link.channel(this.o.timeoutMs)
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'cannot consume yet; retrying')
        continue
      }
      // Deliveries are handled strictly one after another, in arrival order.
      let chain = Promise.resolve()
      const closed = new Promise<void>((resolve) => {
        ch.once('close', resolve)
        this.wakeStop = resolve
      })
      try {
        const { consumerTag } = await ch.consume(this.o.queue, (m: ConsumeMessage | null) => {
          if (!m) return // cancelled by the broker (queue deleted): the link reconnects
          chain = chain.then(() =>
            handle({
              body: m.content,
              signature: headerText(m.properties.headers, SIGNATURE_HEADER),
              storedAt: typeof m.properties.timestamp === 'number' ? new Date(m.properties.timestamp * 1000) : undefined,
              redelivered: m.fields.redelivered,
              working: () => undefined,
              ack: async () => ch.ack(m),
              requeue: () => ch.nack(m, false, true),
              deadLetter: async (reason) => {
                await this.publishDeadLetter(ch, m, reason)
                ch.ack(m)
              },
            }).catch((err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'delivery handling failed')),
          )
        })
        this.consumerTag = consumerTag
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'cannot consume yet; retrying')
        continue
      }
      await closed
      await chain
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    const ch = await this.link.channel(1).catch(() => undefined)
    if (ch && this.consumerTag) await ch.cancel(this.consumerTag).catch(() => undefined)
    this.wakeStop?.()
  }

  /** Enlist's ledger in the cluster the kubeconfig reaches: that cluster's records alone
   *  (the rebuild still takes only those marked with --cluster). */
  async snapshot(): Promise<RegistryRecord[]> {
    const out: RegistryRecord[] = []
    for (const [, v] of await this.ledger.entries()) {
      const e = JSON.parse(v) as LedgerEntry
      if (e.state === 'registered') out.push(e.data as RegistryRecord)
    }
    return out
  }

  tombstones(): Tombstones {
    return {
      has: async (uid) => {
        const v = await this.tombs.get(uid)
        return v !== undefined
      },
      add: async (uid, at) => {
        await this.tombs.set(uid, at.toISOString())
        void this.prune(uid)
      },
    }
  }

  /** Drops tombstones past retention from the shard just written (cheap, incremental). */
  private async prune(uid: string): Promise<void> {
    try {
      const cutoff = Date.now() - this.o.tombstoneRetentionMs
      for (const [k, v] of await this.tombs.shardEntries(this.tombs.shardOf(uid))) {
        if (Date.parse(v) < cutoff) await this.tombs.set(k, undefined)
      }
    } catch (err) {
      this.o.log.debug({ err: errorMessage(err) }, 'tombstone pruning failed; the next write retries')
    }
  }

  /** The very bytes and signature, so a replay checks what enlist signed; resolves once
   *  the broker confirmed it. */
  private publishDeadLetter(ch: ConfirmChannel, m: ConsumeMessage | GetMessage, reason: string): Promise<void> {
    const sig = headerText(m.properties.headers, SIGNATURE_HEADER)
    const was = headerText(m.properties.headers, 'Enlist-Dead-Letter-Routing-Key') ?? m.fields.routingKey
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no confirmation of the dead letter within ${this.o.timeoutMs} ms`)), this.o.timeoutMs)
      ch.publish(
        this.o.deadLetterExchange,
        this.o.deadLetterQueue,
        m.content,
        {
          persistent: true,
          mandatory: true,
          ...(typeof m.properties.messageId === 'string' ? { messageId: m.properties.messageId } : {}),
          ...(typeof m.properties.contentType === 'string' ? { contentType: m.properties.contentType } : {}),
          headers: { ...(sig ? { [SIGNATURE_HEADER]: sig } : {}), [DEAD_LETTER_REASON_HEADER]: reason.slice(0, 1024), 'Enlist-Dead-Letter-Routing-Key': was },
        },
        (err: unknown) => {
          clearTimeout(timer)
          if (err) reject(new Error(`the broker refused the dead letter: ${errorMessage(err)}`))
          else resolve()
        },
      )
    })
  }

  async replayDeadLetters(apply: (d: DeadLetter) => Promise<boolean>): Promise<ReplayResult> {
    const r: ReplayResult = { replayed: 0, kept: 0 }
    const ch = await this.link.channel(this.o.timeoutMs)
    // each once: those present now; one that fails again goes back to the tail
    const total = (await ch.checkQueue(this.o.deadLetterQueue)).messageCount
    for (let i = 0; i < total; i++) {
      const m = await ch.get(this.o.deadLetterQueue, { noAck: false })
      if (m === false) break
      const ok = await apply({ body: m.content, signature: headerText(m.properties.headers, SIGNATURE_HEADER), reason: headerText(m.properties.headers, DEAD_LETTER_REASON_HEADER) ?? '' })
      if (ok) r.replayed++
      else {
        await this.publishDeadLetter(ch, m, headerText(m.properties.headers, DEAD_LETTER_REASON_HEADER) ?? 'kept at replay')
        r.kept++
      }
      ch.ack(m)
    }
    // acks have no answer: a synchronous call on the same channel after them means the broker
    // has processed them before the connection closes (else they would be requeued)
    await ch.checkQueue(this.o.deadLetterQueue)
    return r
  }

  async pending(): Promise<number | undefined> {
    const ch = await this.link.channel(1).catch(() => undefined)
    if (!ch) return undefined
    return (await ch.checkQueue(this.o.queue)).messageCount
  }

  health(): string | undefined {
    return this.link.health()
  }

  close(): Promise<void> {
    return this.link.close()
  }
}
