// JetStream names and setup shared by the nats backend and the relay: the events stream
// (created with documented defaults when absent, used as the admin configured it when
// present) and the registrations bucket, the ledger and the snapshot late consumers start from.

import { type JetStreamManager, JetStreamApiError, JetStreamApiCodes, RetentionPolicy, StorageType, DiscardPolicy } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'

export interface StreamSettings {
  stream: string
  subjectPrefix: string
  bucket: string
  replicas: number
  maxAgeHours: number
  duplicateWindowSeconds: number
  timeoutMs: number
}

const NS_PER_MS = 1_000_000

/** Does the subject filter (with * and >) match every subject under `prefix.`? */
export function filterCovers(filter: string, prefix: string): boolean {
  const f = filter.split('.')
  const p = [...prefix.split('.'), '>']
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return true
    if (i >= p.length || p[i] === '>') return false
    if (f[i] !== '*' && f[i] !== p[i]) return false
  }
  return false
}

export function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamNotFound || err.status === 404)
}

/** Ensures the events stream exists and captures `<prefix>.>`; never changes an existing one. */
export async function ensureStream(jsm: JetStreamManager, s: StreamSettings): Promise<void> {
  try {
    const info = await jsm.streams.info(s.stream)
    if (!info.config.subjects?.some((f) => filterCovers(f, s.subjectPrefix))) {
      throw new Error(
        `stream ${s.stream} exists but does not capture ${s.subjectPrefix}.> (its subjects: ${(info.config.subjects ?? []).join(', ') || 'none'}); add the subject to the stream, or set stream/subjectPrefix`,
      )
    }
    return
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
  await jsm.streams.add({
    name: s.stream,
    description: 'enlist registration events (CloudEvents 1.0)',
    subjects: [`${s.subjectPrefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: s.replicas,
    max_age: s.maxAgeHours * 3600 * 1000 * NS_PER_MS,
    duplicate_window: s.duplicateWindowSeconds * 1000 * NS_PER_MS,
  })
}

/** Opens the registrations bucket, creating it when absent (and `create`): history 1, and
 *  reads through the stream leader (no direct get), so a read after a write sees it. */
export async function openBucket(nc: NatsConnection, s: StreamSettings, create: boolean): Promise<KV> {
  const js = jetstream(nc, { timeout: s.timeoutMs })
  const jsm = await js.jetstreamManager()
  const kvm = new Kvm(js)
  try {
    const info = await jsm.streams.info(`KV_${s.bucket}`)
    return await kvm.open(s.bucket, { allow_direct: info.config.allow_direct ?? false, timeout: s.timeoutMs })
  } catch (err) {
    if (!isNotFound(err)) throw err
    if (!create) throw new Error(`key-value bucket ${s.bucket} does not exist (enlist creates it on its first connection)`, { cause: err })
  }
  return kvm.create(s.bucket, {
    history: 1,
    replicas: s.replicas,
    storage: StorageType.File,
    description: 'enlist: pods published as registered, by pod UID',
    allow_direct: false,
    timeout: s.timeoutMs,
  })
}

export async function manager(nc: NatsConnection, timeoutMs: number): Promise<JetStreamManager> {
  return jetstreamManager(nc, { timeout: timeoutMs })
}
