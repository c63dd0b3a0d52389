// registry.backends[] of type nats: registration events to NATS JetStream, with a key-value
// bucket keyed by pod UID as the durable record of what is registered (docs/events.md).

import type { BackendSchema } from './types.js'
import { EVENT_COMMON_PROPERTIES, type EventBackendCommon, eventCommonErrors } from './events.js'

export interface NatsBackendSpec extends EventBackendCommon {
  type: 'nats'
  stream: string
  subjectPrefix: string
  bucket: string
  replicas: 1 | 3 | 5
  maxAgeHours: number
  duplicateWindowSeconds: number
}

// JetStream stream and bucket names: no whitespace, dots, wildcards or path separators.
const NAME = /^[A-Za-z0-9_-]{1,255}$/
// Subject tokens: anything but whitespace, dots (separators) and wildcards.
const SUBJECT = /^[^\s.*>]+(\.[^\s.*>]+)*$/

export const natsBackend: BackendSchema<NatsBackendSpec> = {
  type: 'nats',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type', 'url', 'source'],
    properties: {
      ...EVENT_COMMON_PROPERTIES,
      type: { const: 'nats' },
      stream: { type: 'string', default: 'ENLIST_REGISTRATIONS' },
      subjectPrefix: { type: 'string', default: 'enlist.registrations' },
      bucket: { type: 'string', default: 'enlist-registrations' },
      replicas: { enum: [1, 3, 5], default: 1 },
      maxAgeHours: { type: 'integer', minimum: 1, maximum: 87600, default: 168 },
      duplicateWindowSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 120 },
    },
  },
  check(b, at, add) {
    eventCommonErrors(b, { plain: 'nats:', tls: 'tls:' }, at, add)
    if (!NAME.test(b.stream)) add(`${at}/stream`, `"${b.stream}" is not a JetStream stream name; accepted: letters, digits, '-' and '_'`)
    if (!NAME.test(b.bucket)) add(`${at}/bucket`, `"${b.bucket}" is not a key-value bucket name; accepted: letters, digits, '-' and '_'`)
    if (!SUBJECT.test(b.subjectPrefix)) {
      add(`${at}/subjectPrefix`, `"${b.subjectPrefix}" is not a subject prefix; accepted: dot-separated tokens without spaces or wildcards, e.g. "enlist.registrations"`)
    }
    if (b.subjectPrefix.startsWith('$')) add(`${at}/subjectPrefix`, `"${b.subjectPrefix}" is reserved: subjects starting with $ belong to the server`)
    if (b.duplicateWindowSeconds > b.maxAgeHours * 3600) add(`${at}/duplicateWindowSeconds`, 'must not exceed maxAgeHours')
  },
}
