// registry.backends[] of type http: a CMDB or registry with a REST interface.

import { isDns1123Subdomain } from '../../lib/validation.js'
import { pemError, urlError } from './checks.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import type { BackendSchema } from './types.js'

export interface HttpBackendSpec {
  name: string
  type: 'http'
  advertise: AdvertiseSpec
  url: string
  timeoutSeconds: number
  caBundle: string
  headersFromSecret: string
  retry: { initialDelayMs: number; maxDelayMs: number }
}

export const httpBackend: BackendSchema<HttpBackendSpec> = {
  type: 'http',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type', 'url'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 63 },
      type: { const: 'http' },
      url: { type: 'string', minLength: 1 },
      timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 60, default: 5 },
      caBundle: { type: 'string', default: '' },
      headersFromSecret: { type: 'string', default: '' },
      advertise: advertiseSchema,
      retry: {
        type: 'object',
        additionalProperties: false,
        default: {},
        properties: {
          initialDelayMs: { type: 'integer', minimum: 10, maximum: 60000, default: 200 },
          maxDelayMs: { type: 'integer', minimum: 100, maximum: 600000, default: 30000 },
        },
      },
    },
  },
  check(b, at, add) {
    urlError(b.url, ['https:', 'http:'], `${at}/url`, add)
    pemError(b.caBundle, `${at}/caBundle`, add)
    if (b.headersFromSecret !== '' && !isDns1123Subdomain(b.headersFromSecret)) {
      add(`${at}/headersFromSecret`, `"${b.headersFromSecret}" is not a valid Secret name`)
    }
    if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
  },
}
