// registry.backends[] of type nats: registration events to a JetStream stream, and the
// registrations bucket (key: pod UID, value: the ledger entry) as the durable record of
// what was published as registered, which is also the snapshot late consumers start from.

import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream } from '@nats-io/jetstream'
import type { KV } from '@nats-io/kv'
import { errors, headers, type NatsConnection } from '@nats-io/transport-node'
import { CONTENT_TYPE, encodeEvent, natsSubject, type RegistrationEvent } from '../../events/envelope.js'
import { SecretError, type SecretReader } from '../../kube/secrets.js'
import type { NatsBackendSpec } from '../../policy/backends/index.js'
import { BackendError } from '../backend.js'
import type { BackendContext } from '../catalogue.js'
import { type Broker, EventBackend, type Ledger, type LedgerEntry, PublishError, type PublishResult } from '../events/backend.js'
import { eventMetrics } from '../events/metrics.js'
import { describe, NatsLink, type NatsCredentials, NotConnectedError } from './connection.js'
import { ensureStream, openBucket, type StreamSettings } from './stream.js'

/** Keys of the credentials Secret (all optional). */
export const NATS_SECRET_KEYS = ['user', 'password', 'token', 'creds', 'ca.crt', 'tls.crt', 'tls.key'] as const

export function natsCredentialsFrom(data: Readonly<Record<string, string>>, caBundle: string): NatsCredentials {
  return {
    user: data.user?.trim(),
    password: data.password,
    token: data.token?.trim(),
    creds: data.creds,
    ca: data['ca.crt'] ?? (caBundle || undefined),
    cert: data['tls.crt'],
    key: data['tls.key'],
  }
}

export async function createNatsBackend(spec: NatsBackendSpec, ctx: BackendContext): Promise<EventBackend> {
  const settings: StreamSettings = { ...spec, timeoutMs: spec.timeoutSeconds * 1000 }
  const state: { js?: JetStreamClient; jsm?: JetStreamManager; kv?: KV } = {}
  const link = new NatsLink({
    url: spec.url,
    name: `enlist/${spec.name}`,
    timeoutMs: settings.timeoutMs,
    credentials: () => secretCredentials(ctx.secrets, spec.credentialsFromSecret, spec.caBundle),
    setup: async (nc: NatsConnection) => {
      const js = jetstream(nc, { timeout: settings.timeoutMs })
      const jsm = await js.jetstreamManager()
      await ensureStream(jsm, settings)
      state.kv = await openBucket(nc, settings, true)
      state.js = js
      state.jsm = jsm
    },
    log: ctx.log.child({ backend: spec.name }),
  }).start()
  const ready = async (): Promise<Required<typeof state>> => {
    await link.connection(settings.timeoutMs)
    if (!state.js || !state.jsm || !state.kv) throw new NotConnectedError('the stream and bucket are not set up yet')
    return state as Required<typeof state>
  }
  return new EventBackend({
    name: spec.name,
    type: 'nats',
    source: spec.source,
    cluster: ctx.cluster,
    broker: new JetStreamBroker(spec.subjectPrefix, settings.timeoutMs, ready, link),
    ledger: new KvLedger(spec.bucket, settings.timeoutMs, ready),
    metrics: eventMetrics(ctx.metrics.registry),
    log: ctx.log,
  })
}

async function secretCredentials(secrets: SecretReader, name: string, caBundle: string): Promise<NatsCredentials> {
  if (name === '') return natsCredentialsFrom({}, caBundle)
  try {
    return natsCredentialsFrom(await secrets.read(name), caBundle)
  } catch (err) {
    throw err instanceof SecretError ? new Error(`credentials: ${err.message}`) : err
  }
}

type Ready = () => Promise<{ js: JetStreamClient; jsm: JetStreamManager; kv: KV }>

class JetStreamBroker implements Broker {
  constructor(
    private readonly prefix: string,
    private readonly timeoutMs: number,
    private readonly ready: Ready,
    private readonly link: NatsLink,
  ) {}

  async publish(e: RegistrationEvent): Promise<PublishResult> {
    const { js } = await this.ready().catch((err: unknown) => {
      throw new PublishError(describe(err), 'not_connected', { cause: err })
    })
    const h = headers()
    h.set('Content-Type', CONTENT_TYPE)
    try {
      // Nats-Msg-Id: the server drops a repeat of this id inside the stream's duplicate window.
      const ack = await js.publish(natsSubject(this.prefix, e), encodeEvent(e), { msgID: e.id, timeout: this.timeoutMs, headers: h })
      return { duplicate: ack.duplicate }
    } catch (err) {
      const reason = err instanceof errors.TimeoutError ? 'timeout' : err instanceof errors.NoRespondersError ? 'unroutable' : 'nack'
      throw new PublishError(describe(err), reason, { cause: err })
    }
  }

  health(): string | undefined {
    return this.link.health()
  }

  close(): Promise<void> {
    return this.link.close()
  }
}

/** The ledger as a key-value bucket: key pod UID, value the LedgerEntry as JSON. */
export class KvLedger implements Ledger {
  constructor(
    private readonly bucket: string,
    private readonly timeoutMs: number,
    private readonly ready: Ready,
  ) {}

  async get(uid: string): Promise<LedgerEntry | undefined> {
    const { kv } = await this.ready()
    const e = await kv.get(uid)
    if (e?.operation !== 'PUT' || e.length === 0) return undefined
    return e.json<LedgerEntry>()
  }

  async put(uid: string, entry: LedgerEntry): Promise<void> {
    const { kv } = await this.ready()
    await kv.put(uid, JSON.stringify(entry), { timeout: this.timeoutMs })
  }

  /** Purges the key's messages from the bucket's stream, leaving no delete marker behind
   *  (a marker per pod ever deregistered would grow without end). */
  async remove(uid: string): Promise<void> {
    const { jsm } = await this.ready()
    await jsm.streams.purge(`KV_${this.bucket}`, { filter: `$KV.${this.bucket}.${uid}` })
  }

  async list(): Promise<Array<{ uid: string; entry: LedgerEntry }>> {
    const { js } = await this.ready()
    return readBucket(js, this.bucket, 120_000)
  }
}

/** Every live value of a bucket, through an ordered consumer (last value per key), within
 *  `timeoutMs`. Used by the sweep and by the relay's snapshot rebuild. */
export async function readBucket(js: JetStreamClient, bucket: string, timeoutMs: number): Promise<Array<{ uid: string; entry: LedgerEntry }>> {
  const prefix = `$KV.${bucket}.`
  const consumer = await js.consumers.get(`KV_${bucket}`, { filter_subjects: `${prefix}>`, deliver_policy: DeliverPolicy.LastPerSubject })
  const info = await consumer.info(true)
  const out: Array<{ uid: string; entry: LedgerEntry }> = []
  if (info.num_pending === 0) {
    await consumer.delete().catch(() => undefined)
    return out
  }
  const iter = await consumer.consume({ max_messages: 1000 })
  const timer = setTimeout(() => void iter.stop(new Error(`reading bucket ${bucket} took longer than ${timeoutMs} ms`)), timeoutMs)
  try {
    for await (const m of iter) {
      const op = m.headers?.get('KV-Operation')
      if (m.data.length > 0 && op !== 'DEL' && op !== 'PURGE') out.push({ uid: m.subject.slice(prefix.length), entry: m.json<LedgerEntry>() })
      if (m.info.pending === 0) break
    }
  } finally {
    clearTimeout(timer)
    await iter.close().catch(() => undefined)
  }
  const err = await iter.closed()
  if (err instanceof Error) throw new BackendError(bucket, 'list', err.message)
  return out
}
