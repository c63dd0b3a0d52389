// registry.backends[] of type amqp: registration events to an AMQP 0-9-1 topic exchange
// (RabbitMQ), with publisher confirms; the record of what is registered is a ledger of
// ConfigMaps in enlist's namespace (docs/events.md).

import type { BackendSchema } from './types.js'
import { EVENT_COMMON_PROPERTIES, type EventBackendCommon, eventCommonErrors } from './events.js'

export interface AmqpBackendSpec extends EventBackendCommon {
  type: 'amqp'
  exchange: string
  heartbeatSeconds: number
}

// AMQP shortstr exchange names as RabbitMQ accepts them; amq.* is reserved.
const EXCHANGE = /^[A-Za-z0-9_.:-]{1,255}$/

export const amqpBackend: BackendSchema<AmqpBackendSpec> = {
  type: 'amqp',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type', 'url', 'source'],
    properties: {
      ...EVENT_COMMON_PROPERTIES,
      type: { const: 'amqp' },
      exchange: { type: 'string', default: 'enlist.registrations' },
      heartbeatSeconds: { type: 'integer', minimum: 0, maximum: 600, default: 30 },
    },
  },
  check(b, at, add) {
    eventCommonErrors(b, { plain: 'amqp:', tls: 'amqps:' }, at, add)
    if (b.url.includes(',')) add(`${at}/url`, 'one broker URL (a RabbitMQ cluster is reached through one address: a load balancer or Service)')
    if (!EXCHANGE.test(b.exchange)) add(`${at}/exchange`, `"${b.exchange}" is not an exchange name; accepted: letters, digits, '-', '_', '.', ':'`)
    if (b.exchange.startsWith('amq.')) add(`${at}/exchange`, `"${b.exchange}" is reserved: amq.* exchanges belong to the broker`)
  },
}
