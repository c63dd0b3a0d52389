// registry.backends[] of type etcd: etcd v3, keys <prefix><cluster>/<namespace>/<service>/<pod uid>.

import { isDns1123Subdomain } from '../../lib/validation.js'
import { connectionUrlErrors, pemError, POLICY_CONNECTION_SETTINGS } from './checks.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import type { BackendSchema } from './types.js'

export interface EtcdBackendSpec {
  name: string
  /** false: the sweep neither removes nor rewrites this backend's entries (upgrading clusters that share it one by one). */
  sweep: boolean
  type: 'etcd'
  advertise: AdvertiseSpec
  endpoints: string[]
  prefix: string
  caBundle: string
  credentialsFromSecret: string
  /** Accept http:// endpoints: the policy must say so. */
  allowInsecure: boolean
  timeoutSeconds: number
  retry: { initialDelayMs: number; maxDelayMs: number }
}

export const etcdBackend: BackendSchema<EtcdBackendSpec> = {
  type: 'etcd',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type', 'endpoints'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 63 },
      sweep: { type: 'boolean', default: true },
      type: { const: 'etcd' },
      endpoints: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1 } },
      prefix: { type: 'string', minLength: 1, default: '/enlist/' },
      caBundle: { type: 'string', default: '' },
      credentialsFromSecret: { type: 'string', default: '' },
      allowInsecure: { type: 'boolean', default: false },
      advertise: advertiseSchema,
      timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 60, default: 5 },
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
    const rules = { tls: 'https:', plain: 'http:', allowInsecure: b.allowInsecure, ...POLICY_CONNECTION_SETTINGS }
    b.endpoints.forEach((e, i) => connectionUrlErrors(e, rules, `${at}/endpoints/${i}`, add))
    const schemes = new Set(b.endpoints.map((e) => e.split(':')[0]))
    if (schemes.size > 1) add(`${at}/endpoints`, 'must all use https, or all http: one connection setting serves every endpoint')
    // The prefix is the scope the sweep owns: "/enlist" would also own "/enlist-other/...".
    if (!b.prefix.endsWith('/')) add(`${at}/prefix`, `"${b.prefix}" must end with "/" (keys are <prefix><cluster>/<namespace>/<service>/<pod uid>)`)
    pemError(b.caBundle, `${at}/caBundle`, add)
    if (b.credentialsFromSecret !== '' && !isDns1123Subdomain(b.credentialsFromSecret)) {
      add(`${at}/credentialsFromSecret`, `"${b.credentialsFromSecret}" is not a valid Secret name`)
    }
    if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
  },
}
