// registry.backends[] of type http: a CMDB or registry with a REST interface.

import { isDns1123Subdomain } from '../../lib/validation.js'
import { type ConnectionRules, connectionUrlErrors, pemError } from './checks.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import type { AddError, BackendSchema } from './types.js'

export interface HttpBackendSpec {
  name: string
  /** false: the sweep neither removes nor rewrites this backend's entries (upgrading clusters that share it one by one). */
  sweep: boolean
  type: 'http'
  advertise: AdvertiseSpec
  url: string
  /** Plain http is refused unless this is set (the record and credentials cross in clear). */
  allowInsecureHTTP: boolean
  /** Each request, answer included, completes within this. */
  timeoutSeconds: number
  /** The largest answer accepted (one list page included). */
  maxResponseBytes: number
  /** The most pages one list may take (`continue` tokens or Link rel="next"). */
  maxListPages: number
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
      sweep: { type: 'boolean', default: true },
      type: { const: 'http' },
      url: { type: 'string', minLength: 1 },
      allowInsecureHTTP: { type: 'boolean', default: false },
      timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 60, default: 5 },
      maxResponseBytes: { type: 'integer', minimum: 1024, maximum: 1073741824, default: 16777216 },
      maxListPages: { type: 'integer', minimum: 1, maximum: 100000, default: 1000 },
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
    backendUrlErrors(b, `${at}/url`, add)
    pemError(b.caBundle, `${at}/caBundle`, add)
    if (b.headersFromSecret !== '' && !isDns1123Subdomain(b.headersFromSecret)) {
      add(`${at}/headersFromSecret`, `"${b.headersFromSecret}" is not a valid Secret name`)
    }
    if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
  },
}

/** How the messages name the settings: the policy's fields, or the relay's flags. */
const HTTP_URL_SETTINGS = { allowSetting: 'allowInsecureHTTP: true', credentialsIn: 'a Secret named by headersFromSecret' }

/** The URL's problems (checks.ts), and no query or fragment: records are at {url}/{pod uid}. */
export function backendUrlErrors(b: Pick<HttpBackendSpec, 'url' | 'allowInsecureHTTP'>, at: string, add: AddError, settings: Pick<ConnectionRules, 'allowSetting' | 'credentialsIn'> = HTTP_URL_SETTINGS): void {
  const u = connectionUrlErrors(b.url, { tls: 'https:', plain: 'http:', allowInsecure: b.allowInsecureHTTP, ...settings }, at, add)
  if (u && (u.search !== '' || u.hash !== '')) add(at, 'must not have a query or a fragment: records are at {url}/{pod uid}')
}
