// registry.backends[] of type amqp: registration events to a durable topic exchange with
// publisher confirms, persistent messages and mandatory routing (an event no queue would
// keep is a failure, not a silent loss). RabbitMQ has no key-value store, so the ledger of
// what was published as registered lives in ConfigMaps of enlist's namespace
// (docs/events.md weighs the alternatives). That ledger is in the cluster itself, so it is
// per cluster already: clusters sharing the broker never see, nor deregister, each other's
// entries. Nothing to claim a cluster name in either: the events' data carry the mark.

import type { ChannelModel, ConfirmChannel, Message } from 'amqplib'
import { CONTENT_TYPE, encodeEvent, type RegistrationEvent, routingKey } from '../../events/envelope.js'
import { SecretError, type SecretReader } from '../../kube/secrets.js'
import type { AmqpBackendSpec } from '../../policy/backends/index.js'
import type { BackendContext } from '../catalogue.js'
import { type Broker, EventBackend, type Ledger, type LedgerEntry, PublishError, type PublishResult } from '../events/backend.js'
import { ConfigMapStore } from '../events/configmap-store.js'
import { eventMetrics } from '../events/metrics.js'
import { secretSigner, type Signer } from '../events/signer.js'
import { SIGNATURE_HEADER } from '../../events/signature.js'
import { AmqpLink, type AmqpCredentials, describe } from './connection.js'

/** The ledger's ConfigMaps: enlist-ledger-00 .. enlist-ledger-63 (the Role names them). */
export const LEDGER_PREFIX = 'enlist-ledger'
export const LEDGER_SHARDS = 64

export const AMQP_SECRET_KEYS = ['username', 'password', 'ca.crt', 'tls.crt', 'tls.key'] as const

export function amqpCredentialsFrom(data: Readonly<Record<string, string>>, caBundle: string): AmqpCredentials {
  return {
    username: data.username?.trim(),
    password: data.password,
    ca: data['ca.crt'] ?? (caBundle || undefined),
    cert: data['tls.crt'],
    key: data['tls.key'],
  }
}

export async function createAmqpBackend(spec: AmqpBackendSpec, ctx: BackendContext): Promise<EventBackend> {
  const timeoutMs = spec.timeoutSeconds * 1000
  const link = new AmqpLink({
    url: spec.url,
    name: `enlist/${spec.name}`,
    heartbeatSeconds: spec.heartbeatSeconds,
    timeoutMs,
    credentials: () => secretCredentials(ctx.secrets, spec.credentialsFromSecret, spec.caBundle),
    setup: async (ch, conn) => declareExchange(ch, conn, spec.exchange),
    log: ctx.log.child({ backend: spec.name }),
  }).start()
  const store = new ConfigMapStore({
    client: ctx.client,
    namespace: ctx.secrets.namespace,
    prefix: LEDGER_PREFIX,
    shards: LEDGER_SHARDS,
    keyPrefix: `${spec.name}.`,
    labels: { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/component': 'ledger' },
    timeoutMs,
  })
  const signer = secretSigner(ctx.secrets, spec.signingKeyFromSecret)
  return new EventBackend({
    name: spec.name,
    type: 'amqp',
    source: spec.source,
    cluster: ctx.cluster,
    broker: new ConfirmBroker(link, spec.exchange, timeoutMs, signer),
    signerHealth: () => signer.health(),
    ledger: new ConfigMapLedger(store),
    metrics: eventMetrics(ctx.metrics.registry),
    log: ctx.log,
  })
}

/** Declares the durable topic exchange unless it exists: an existing one is used as is
 *  (checked on a throwaway channel, since a failed check closes its channel). */
export async function declareExchange(ch: ConfirmChannel, conn: ChannelModel, exchange: string): Promise<void> {
  const probe = await conn.createChannel()
  // the broker closes the probe when the exchange is absent: expected, not a crash
  probe.on('error', () => undefined)
  try {
    await probe.checkExchange(exchange)
    await probe.close().catch(() => undefined)
    return
  } catch {
    // 404: absent (the probe channel is closed by the broker)
  }
  await ch.assertExchange(exchange, 'topic', { durable: true, autoDelete: false })
}

async function secretCredentials(secrets: SecretReader, name: string, caBundle: string): Promise<AmqpCredentials> {
  if (name === '') return amqpCredentialsFrom({}, caBundle)
  try {
    return amqpCredentialsFrom(await secrets.read(name), caBundle)
  } catch (err) {
    throw err instanceof SecretError ? new Error(`credentials: ${err.message}`) : err
  }
}

class ConfirmBroker implements Broker {
  /** Message ids the broker returned as unroutable, until their confirm arrives. */
  private readonly returned = new Set<string>()
  private watched: ConfirmChannel | undefined

  constructor(
    private readonly link: AmqpLink,
    private readonly exchange: string,
    private readonly timeoutMs: number,
    private readonly signer: Signer,
  ) {}

  async publish(e: RegistrationEvent): Promise<PublishResult> {
    const body = encodeEvent(e)
    // over the very bytes sent: the relay checks what it receives, no canonical form needed
    const sig = await this.signer.sign(body)
    let ch: ConfirmChannel
    try {
      ch = await this.link.channel(this.timeoutMs)
    } catch (err) {
      throw new PublishError(describe(err), 'not_connected', { cause: err })
    }
    if (this.watched !== ch) {
      this.watched = ch
      // basic.return arrives before the confirm of the same message
      ch.on('return', (m: Message) => {
        if (typeof m.properties.messageId === 'string') this.returned.add(m.properties.messageId)
      })
    }
    const key = routingKey(e)
    return new Promise<PublishResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new PublishError(`no confirmation from the broker within ${this.timeoutMs} ms`, 'timeout'))
      }, this.timeoutMs)
      try {
        ch.publish(
          this.exchange,
          key,
          body,
          {
            persistent: true,
            mandatory: true,
            messageId: e.id,
            contentType: CONTENT_TYPE,
            type: e.type,
            timestamp: Math.floor(Date.now() / 1000),
            appId: 'enlist',
            ...(sig !== undefined ? { headers: { [SIGNATURE_HEADER]: sig } } : {}),
          },
          (err: unknown) => {
            clearTimeout(timer)
            const unroutable = this.returned.delete(e.id)
            if (err) reject(new PublishError(`the broker refused the message (nack): ${describe(err)}`, 'nack', { cause: err }))
            else if (unroutable) {
              reject(new PublishError(`no queue is bound to exchange ${this.exchange} for routing key ${key}: the event would be lost; bind a queue (enlist relay declares one)`, 'unroutable'))
            } else resolve({ duplicate: false })
          },
        )
      } catch (err) {
        clearTimeout(timer)
        reject(new PublishError(describe(err), 'not_connected', { cause: err }))
      }
    })
  }

  health(): string | undefined {
    return this.link.health()
  }

  close(): Promise<void> {
    return this.link.close()
  }
}

/** The ledger in the ConfigMap shards: key pod UID, value the LedgerEntry as JSON. */
export class ConfigMapLedger implements Ledger {
  constructor(private readonly store: ConfigMapStore) {}

  async get(uid: string): Promise<LedgerEntry | undefined> {
    const v = await this.store.get(uid)
    return v === undefined ? undefined : (JSON.parse(v) as LedgerEntry)
  }

  put(uid: string, entry: LedgerEntry): Promise<void> {
    return this.store.set(uid, JSON.stringify(entry))
  }

  remove(uid: string): Promise<void> {
    return this.store.set(uid, undefined)
  }

  async list(): Promise<Array<{ uid: string; entry: LedgerEntry }>> {
    return (await this.store.entries()).map(([uid, v]) => ({ uid, entry: JSON.parse(v) as LedgerEntry }))
  }
}
