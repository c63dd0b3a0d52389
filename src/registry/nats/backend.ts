// registry.backends[] of type nats: registration events to a JetStream stream, and the
// registrations bucket (key: `<cluster>.<pod UID>`, value: the ledger entry) as the durable
// record of what was published as registered, which is also the snapshot late consumers
// start from. Clusters on one NATS server share the bucket: each keeps its entries under its
// own name (so its sweep never deregisters another's pods) and claims that name in the
// bucket (`_clusters.<name>`, holding its kube-system UID).

import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream } from '@nats-io/jetstream'
import type { KV, KvEntry } from '@nats-io/kv'
import { errors, headers, type NatsConnection } from '@nats-io/transport-node'
import { CONTENT_TYPE, encodeEvent, natsSubject, type RegistrationEvent } from '../../events/envelope.js'
import { SecretError, type SecretReader } from '../../kube/secrets.js'
import type { NatsBackendSpec } from '../../policy/backends/index.js'
import { BackendError } from '../backend.js'
import type { BackendContext } from '../catalogue.js'
import { type Broker, EventBackend, type Ledger, type LedgerEntry, type LedgerItem, PublishError, type PublishResult } from '../events/backend.js'
import { type ClaimResult, type ClusterIdentity, decodeClaim, encodeClaim, judgeClaim } from '../ownership.js'
import { eventMetrics } from '../events/metrics.js'
import { secretSigner, type Signer } from '../events/signer.js'
import { SIGNATURE_HEADER } from '../../events/signature.js'
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
  const signer = secretSigner(ctx.secrets, spec.signingKeyFromSecret)
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
    broker: new JetStreamBroker(spec.subjectPrefix, settings.timeoutMs, ready, link, signer),
    signerHealth: () => signer.health(),
    ledger: new KvLedger(spec.bucket, ctx.cluster, settings.timeoutMs, ready),
    claim: (self, takeOver) => claimInBucket(ready, self, takeOver, settings.timeoutMs),
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
    private readonly signer: Signer,
  ) {}

  async publish(e: RegistrationEvent): Promise<PublishResult> {
    const { js } = await this.ready().catch((err: unknown) => {
      throw new PublishError(describe(err), 'not_connected', { cause: err })
    })
    const body = encodeEvent(e)
    const h = headers()
    h.set('Content-Type', CONTENT_TYPE)
    // over the very bytes sent: the relay checks what it receives, no canonical form needed
    const sig = await this.signer.sign(body)
    if (sig !== undefined) h.set(SIGNATURE_HEADER, sig)
    try {
      // Nats-Msg-Id: the server drops a repeat of this id inside the stream's duplicate window.
      const ack = await js.publish(natsSubject(this.prefix, e), body, { msgID: e.id, timeout: this.timeoutMs, headers: h })
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

/** Where the bucket keeps the claims on cluster names: `_clusters.<name>`. A KV key may not
 *  start with a dot (CLAIMS_DIR's `.clusters`), and a cluster name (a DNS-1123 label) never
 *  holds `_`, so no cluster's entries can be read as claims, nor claims as entries. */
export const CLAIMS_KEY_PREFIX = '_clusters'

/** The bucket key of pod `uid`'s ledger entry: `<cluster>.<uid>`; the bare uid where the
 *  policy names no cluster (as every key was before keys were per cluster). */
export function ledgerKey(cluster: string, uid: string): string {
  return cluster === '' ? uid : `${cluster}.${uid}`
}

/** What a bucket key names: a pod's entry (with its cluster, undefined for a bare uid, the
 *  layout before keys were per cluster), or undefined for a claim or a key not enlist's. */
export function parseLedgerKey(key: string): { cluster: string | undefined; uid: string } | undefined {
  const parts = key.split('.')
  if (parts.length === 1) return { cluster: undefined, uid: key }
  if (parts.length === 2 && parts[0] !== CLAIMS_KEY_PREFIX && parts[0] !== '' && parts[1] !== '') return { cluster: parts[0], uid: parts[1]! }
  return undefined
}

const live = (e: KvEntry | null): e is KvEntry => e !== null && e.operation === 'PUT' && e.length > 0

/** The ledger as a key-value bucket: key `<cluster>.<pod UID>`, value the LedgerEntry as JSON. */
export class KvLedger implements Ledger {
  constructor(
    private readonly bucket: string,
    private readonly cluster: string,
    private readonly timeoutMs: number,
    private readonly ready: Ready,
  ) {}

  /** The pod's entry under this cluster's key; else under its bare uid (kept before keys
   *  were per cluster): the UID names this pod of this cluster, so the entry is moved under
   *  the mark (written there first, then the old key purged: never in neither place). */
  async get(uid: string): Promise<LedgerEntry | undefined> {
    const { kv, jsm } = await this.ready()
    const e = await kv.get(ledgerKey(this.cluster, uid))
    if (live(e)) return e.json<LedgerEntry>()
    if (this.cluster === '') return undefined
    const old = await kv.get(uid)
    if (!live(old)) return undefined
    const entry = old.json<LedgerEntry>()
    await kv.put(ledgerKey(this.cluster, uid), JSON.stringify(entry), { timeout: this.timeoutMs })
    await jsm.streams.purge(`KV_${this.bucket}`, { filter: `$KV.${this.bucket}.${uid}` })
    return entry
  }

  async put(uid: string, entry: LedgerEntry): Promise<void> {
    const { kv } = await this.ready()
    await kv.put(ledgerKey(this.cluster, uid), JSON.stringify(entry), { timeout: this.timeoutMs })
  }

  /** Purges the key's messages from the bucket's stream, leaving no delete marker behind
   *  (a marker per pod ever deregistered would grow without end). */
  async remove(uid: string): Promise<void> {
    const { jsm } = await this.ready()
    await jsm.streams.purge(`KV_${this.bucket}`, { filter: `$KV.${this.bucket}.${ledgerKey(this.cluster, uid)}` })
  }

  /** This cluster's entries, and the bare-uid ones (unmarked: they may be any cluster's).
   *  Other clusters' keys are not read at all. */
  async list(): Promise<LedgerItem[]> {
    const { js } = await this.ready()
    // two reads, one filter each: several filters in one consumer need NATS 2.10
    const read = this.cluster === '' ? [await readBucket(js, this.bucket, 120_000)] : [await readBucket(js, this.bucket, 120_000, `${this.cluster}.*`), await readBucket(js, this.bucket, 120_000, '*')]
    const out: LedgerItem[] = []
    for (const e of read.flat()) {
      if (e.cluster === undefined) out.push({ uid: e.uid, entry: e.entry, ...(this.cluster === '' ? {} : { unmarked: true }) })
      else if (e.cluster === this.cluster) out.push({ uid: e.uid, entry: e.entry })
    }
    return out
  }
}

/** Claims `self.name` in the bucket: created if absent (kv.create fails when another wrote
 *  it first), else judged (ownership.ts); a take-over overwrites it. */
export async function claimInBucket(ready: Ready, self: ClusterIdentity, takeOver: boolean, timeoutMs: number): Promise<ClaimResult> {
  const { kv } = await ready()
  const key = `${CLAIMS_KEY_PREFIX}.${self.name}`
  for (let attempt = 0; ; attempt++) {
    const current = await kv.get(key)
    const existing = live(current) ? decodeClaim(current.string()) : undefined
    const { write, result } = judgeClaim(existing, self, takeOver)
    if (!write) return result
    try {
      if (takeOver) await kv.put(key, encodeClaim(write), { timeout: timeoutMs })
      // no claim yet (or a value that is not one): only if nobody wrote meanwhile
      else if (live(current)) await kv.update(key, encodeClaim(write), current.revision, timeoutMs)
      else await kv.create(key, encodeClaim(write))
      return result
    } catch (err) {
      // another cluster wrote first: read again and judge its claim
      if (attempt >= 2) throw err
    }
  }
}

/** Every live ledger value of a bucket (claims and keys not enlist's left out), through an
 *  ordered consumer (last value per key), within `timeoutMs`; `keys`: only keys matching
 *  this filter (`<cluster>.*`: one cluster's; `*`: the bare UIDs of before). Used by the
 *  sweep and by the relay's snapshot rebuild. */
export async function readBucket(
  js: JetStreamClient,
  bucket: string,
  timeoutMs: number,
  keys = '>',
): Promise<Array<{ uid: string; cluster: string | undefined; entry: LedgerEntry }>> {
  const prefix = `$KV.${bucket}.`
  const consumer = await js.consumers.get(`KV_${bucket}`, { filter_subjects: `${prefix}${keys}`, deliver_policy: DeliverPolicy.LastPerSubject })
  const info = await consumer.info(true)
  const out: Array<{ uid: string; cluster: string | undefined; entry: LedgerEntry }> = []
  if (info.num_pending === 0) {
    await consumer.delete().catch(() => undefined)
    return out
  }
  const iter = await consumer.consume({ max_messages: 1000 })
  const timer = setTimeout(() => void iter.stop(new Error(`reading bucket ${bucket} took longer than ${timeoutMs} ms`)), timeoutMs)
  try {
    for await (const m of iter) {
      const op = m.headers?.get('KV-Operation')
      const key = parseLedgerKey(m.subject.slice(prefix.length))
      if (key && m.data.length > 0 && op !== 'DEL' && op !== 'PURGE') out.push({ ...key, entry: m.json<LedgerEntry>() })
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
