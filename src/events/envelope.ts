// The registration event: its one home. CloudEvents 1.0 in structured JSON mode, the
// deterministic id, NATS subjects and AMQP routing keys, and the parser consumers (and
// `enlist relay`) use. docs/events.md and docs/events.schema.json describe the same
// contract; the unit tests hold the three together. Pure.

import type { RecordPort, RegistryRecord } from '../registry/record.js'
import type { ErrorCode } from '../lib/errors.js'
import { isDns1123Label } from '../lib/validation.js'

export const EVENT_TYPES = {
  registered: 'io.enlist.registration.registered',
  deregistered: 'io.enlist.registration.deregistered',
} as const

export type EventKind = keyof typeof EVENT_TYPES
export const EVENT_KINDS: readonly EventKind[] = ['registered', 'deregistered']

export const CONTENT_TYPE = 'application/cloudevents+json'
export const SPEC_VERSION = '1.0'

/** What a deregistered event carries: the pod's identity and service, and, when enlist still
 *  knew it, the whole record it had published as registered, `cluster` (the mark) included. */
export type DeregisteredData = Pick<RegistryRecord, 'uid' | 'namespace' | 'pod' | 'service'> & Partial<RegistryRecord>

export interface RegisteredEvent extends EnvelopeBase {
  type: (typeof EVENT_TYPES)['registered']
  data: RegistryRecord
}

export interface DeregisteredEvent extends EnvelopeBase {
  type: (typeof EVENT_TYPES)['deregistered']
  data: DeregisteredData
}

interface EnvelopeBase {
  specversion: '1.0'
  id: string
  source: string
  subject: string
  time: string
  datacontenttype: 'application/json'
}

export type RegistrationEvent = RegisteredEvent | DeregisteredEvent

export function kindOf(e: RegistrationEvent): EventKind {
  return e.type === EVENT_TYPES.registered ? 'registered' : 'deregistered'
}

/**
 * The event id: the same fact re-published has the same id, so JetStream's duplicate window
 * and consumers drop repeats. A pod UID is never reused, so (uid, kind) names one fact:
 * a pod is registered once and deregistered once, and "deregistered" is final for its UID.
 */
export function eventId(uid: string, kind: EventKind): string {
  return `${uid}.${kind}`
}

export function registeredEvent(source: string, record: RegistryRecord): RegisteredEvent {
  return {
    specversion: SPEC_VERSION,
    id: eventId(record.uid, 'registered'),
    source,
    type: EVENT_TYPES.registered,
    subject: `${record.namespace}/${record.pod}`,
    // registeredAt survives re-registration, so a re-published event is byte-identical
    time: record.registeredAt,
    datacontenttype: 'application/json',
    data: record,
  }
}

export function deregisteredEvent(source: string, data: DeregisteredData, time: string): DeregisteredEvent {
  return {
    specversion: SPEC_VERSION,
    id: eventId(data.uid, 'deregistered'),
    source,
    type: EVENT_TYPES.deregistered,
    subject: `${data.namespace}/${data.pod}`,
    time,
    datacontenttype: 'application/json',
    data,
  }
}

// --- subjects and routing keys ---------------------------------------------------------

/**
 * A namespace or service name as one subject / routing-key token. Kubernetes names are DNS
 * labels or subdomains, so the only character that would split a token is the dot of a
 * subdomain: it becomes `_` (which no DNS name holds, so the mapping stays unambiguous).
 */
export function token(name: string): string {
  return name.replace(/[.\s*>]/g, '_') || '_'
}

/** `<prefix>.<namespace>.<service>.<registered|deregistered>` (NATS). */
export function natsSubject(prefix: string, e: RegistrationEvent): string {
  return `${prefix}.${routingKey(e)}`
}

/** `<namespace>.<service>.<registered|deregistered>` (AMQP topic exchange). */
export function routingKey(e: RegistrationEvent): string {
  return `${token(e.data.namespace)}.${token(e.data.service)}.${kindOf(e)}`
}

export function encodeEvent(e: RegistrationEvent): Buffer {
  return Buffer.from(JSON.stringify(e))
}

// --- parsing (consumers) ----------------------------------------------------------------

export class EventFormatError extends Error {
  readonly code = 'ENLIST_EVENT_INVALID' satisfies ErrorCode
  constructor(message: string) {
    super(message)
    this.name = 'EventFormatError'
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string'

/** Parses and checks one event: what docs/events.schema.json says, as code (no ajv in the
 *  relay's hot path). Throws EventFormatError naming the first problem. */
export function parseEvent(body: Uint8Array | string): RegistrationEvent {
  let v: unknown
  try {
    v = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'))
  } catch (err) {
    throw new EventFormatError(`not JSON: ${(err as Error).message}`)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new EventFormatError('not a JSON object')
  const e = v as Record<string, unknown>
  if (e.specversion !== SPEC_VERSION) throw new EventFormatError(`specversion must be "1.0"; got ${JSON.stringify(e.specversion)}`)
  for (const k of ['id', 'source', 'subject', 'time'] as const) {
    if (!isStr(e[k]) || e[k] === '') throw new EventFormatError(`${k} must be a non-empty string`)
  }
  if (e.type !== EVENT_TYPES.registered && e.type !== EVENT_TYPES.deregistered) {
    throw new EventFormatError(`type must be ${EVENT_TYPES.registered} or ${EVENT_TYPES.deregistered}; got ${JSON.stringify(e.type)}`)
  }
  const d = e.data
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new EventFormatError('data must be an object')
  const data = d as Record<string, unknown>
  for (const k of ['uid', 'namespace', 'pod', 'service'] as const) {
    if (!isStr(data[k]) || data[k] === '') throw new EventFormatError(`data.${k} must be a non-empty string`)
  }
  const kind: EventKind = e.type === EVENT_TYPES.registered ? 'registered' : 'deregistered'
  if (e.id !== eventId(data.uid as string, kind)) throw new EventFormatError(`id must be "${eventId(data.uid as string, kind)}"; got ${JSON.stringify(e.id)}`)
  // the cluster mark (src/registry/ownership.ts); absent in events of an enlist before marks
  if (data.cluster !== undefined && (!isStr(data.cluster) || !isDns1123Label(data.cluster))) {
    throw new EventFormatError(`data.cluster must be a cluster name (a DNS-1123 label); got ${JSON.stringify(data.cluster)}`)
  }
  if (kind === 'registered') checkRecord(data)
  return v as RegistrationEvent
}

/** The cluster that published the event (its data's mark), or undefined: unmarked. */
export function eventCluster(e: RegistrationEvent): string | undefined {
  return e.data.cluster
}

function checkRecord(d: Record<string, unknown>): void {
  for (const k of ['ip', 'hostIP', 'node', 'registeredAt'] as const) if (!isStr(d[k])) throw new EventFormatError(`data.${k} must be a string`)
  if (!Array.isArray(d.ips) || !d.ips.every(isStr)) throw new EventFormatError('data.ips must be an array of strings')
  if (!Array.isArray(d.ports) || !d.ports.every(isPort)) throw new EventFormatError('data.ports must be an array of {port, protocol[, name]}')
  if (d.metadata === null || typeof d.metadata !== 'object' || Array.isArray(d.metadata) || !Object.values(d.metadata).every(isStr)) {
    throw new EventFormatError('data.metadata must be an object of strings')
  }
  const a = d.advertised as Record<string, unknown> | null | undefined
  if (a === null || typeof a !== 'object' || !isStr(a.mode) || !isStr(a.address) || !Array.isArray(a.ports) || !a.ports.every(isAdvertisedPort)) {
    throw new EventFormatError('data.advertised must be {mode, address, ports: [{port, containerPort, protocol[, name]}]}')
  }
}

function isAdvertisedPort(p: unknown): boolean {
  return isPort(p) && Number.isInteger((p as unknown as Record<string, unknown>).containerPort)
}

function isPort(p: unknown): p is RecordPort {
  if (p === null || typeof p !== 'object') return false
  const x = p as Record<string, unknown>
  return Number.isInteger(x.port) && isStr(x.protocol) && (x.name === undefined || isStr(x.name))
}
