// What the two event-stream backend types (nats, amqp) share in the policy: the CloudEvents
// source, credentials and CA from a Secret, the bounded wait per publish, retries. Their
// checks say what is wrong and what is accepted; credentials never go in a URL.

import { isDns1123Subdomain } from '../../lib/validation.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import { pemError, plaintextError } from './checks.js'
import type { AddError } from './types.js'

export interface EventBackendCommon {
  name: string
  url: string
  source: string
  credentialsFromSecret: string
  caBundle: string
  /** Accept a plaintext URL (nats://, amqp://): the policy must say so. */
  allowInsecure: boolean
  timeoutSeconds: number
  retry: { initialDelayMs: number; maxDelayMs: number }
  advertise: AdvertiseSpec
}

export const EVENT_COMMON_PROPERTIES = {
  name: { type: 'string', minLength: 1, maxLength: 63 },
  url: { type: 'string', minLength: 1 },
  source: { type: 'string', minLength: 1, maxLength: 1024 },
  credentialsFromSecret: { type: 'string', default: '' },
  caBundle: { type: 'string', default: '' },
  allowInsecure: { type: 'boolean', default: false },
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
  advertise: advertiseSchema,
} as const

/** Checks the URLs (comma-separated for a cluster: each its `plain` scheme only with
 *  allowInsecure, else `tls`), the source, the Secret name, the CA. */
export function eventCommonErrors(b: EventBackendCommon, schemes: { plain: string; tls: string }, at: string, add: AddError): void {
  const protocols = [schemes.plain, schemes.tls]
  const urls = b.url.split(',').map((u) => u.trim())
  urls.forEach((raw) => {
    let u: URL
    try {
      u = new URL(raw)
    } catch {
      add(`${at}/url`, `"${raw}" is not a URL; accepted: ${protocols.map((p) => `${p}//host:port`).join(', ')}, comma separated for several servers`)
      return
    }
    if (!protocols.includes(u.protocol)) add(`${at}/url`, `"${raw}" must use ${protocols.map((p) => p.slice(0, -1)).join(' or ')}`)
    // Credentials in a URL end up in logs, metrics and error messages: they belong in the Secret.
    if (u.username !== '' || u.password !== '') add(`${at}/url`, `must not hold credentials (user:password@); put them in credentialsFromSecret`)
    if (u.hostname === '') add(`${at}/url`, `"${raw}" has no host`)
    else if (protocols.includes(u.protocol)) plaintextError(u, schemes.tls, b.allowInsecure, `${at}/url`, add)
  })
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$|^\/\S*$/.test(b.source)) {
    add(`${at}/source`, `"${b.source}" is not a URI reference naming the cluster; accepted e.g. "https://k8s.example.com/clusters/prod-eu-1" or "/clusters/prod-eu-1"`)
  }
  if (b.credentialsFromSecret !== '' && !isDns1123Subdomain(b.credentialsFromSecret)) {
    add(`${at}/credentialsFromSecret`, `"${b.credentialsFromSecret}" is not a valid Secret name`)
  }
  pemError(b.caBundle, `${at}/caBundle`, add)
  if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
}
