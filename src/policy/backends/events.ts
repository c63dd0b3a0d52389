// What the two event-stream backend types (nats, amqp) share in the policy: the CloudEvents
// source, credentials and CA from a Secret, the bounded wait per publish, retries. Their
// checks say what is wrong and what is accepted; credentials never go in a URL.

import { DEFAULT_SIGNING_SECRET } from '../../events/signature.js'
import { isDns1123Subdomain } from '../../lib/validation.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import { connectionUrlErrors, pemError, POLICY_CONNECTION_SETTINGS } from './checks.js'
import type { AddError } from './types.js'

export interface EventBackendCommon {
  name: string
  /** false: the sweep neither removes nor rewrites this backend's entries (upgrading clusters that share it one by one). */
  sweep: boolean
  url: string
  source: string
  credentialsFromSecret: string
  /** The Secret (key keyring.json) whose newest active key signs every event; "": unsigned. */
  signingKeyFromSecret: string
  caBundle: string
  /** Accept a plaintext URL (nats://, amqp://): the policy must say so. */
  allowInsecure: boolean
  timeoutSeconds: number
  retry: { initialDelayMs: number; maxDelayMs: number }
  advertise: AdvertiseSpec
}

export const EVENT_COMMON_PROPERTIES = {
  name: { type: 'string', minLength: 1, maxLength: 63 },
  sweep: { type: 'boolean', default: true },
  url: { type: 'string', minLength: 1 },
  source: { type: 'string', minLength: 1, maxLength: 1024 },
  credentialsFromSecret: { type: 'string', default: '' },
  signingKeyFromSecret: { type: 'string', default: DEFAULT_SIGNING_SECRET },
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
  const rules = { ...schemes, allowInsecure: b.allowInsecure, ...POLICY_CONNECTION_SETTINGS }
  const urls = b.url.split(',').map((u) => u.trim())
  // several servers: say which one is at fault
  urls.forEach((raw, i) => connectionUrlErrors(raw, rules, urls.length > 1 ? `${at}/url (server ${i + 1})` : `${at}/url`, add))
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$|^\/\S*$/.test(b.source)) {
    add(`${at}/source`, `"${b.source}" is not a URI reference naming the cluster; accepted e.g. "https://k8s.example.com/clusters/prod-eu-1" or "/clusters/prod-eu-1"`)
  }
  if (b.credentialsFromSecret !== '' && !isDns1123Subdomain(b.credentialsFromSecret)) {
    add(`${at}/credentialsFromSecret`, `"${b.credentialsFromSecret}" is not a valid Secret name`)
  }
  if (b.signingKeyFromSecret !== '' && !isDns1123Subdomain(b.signingKeyFromSecret)) {
    add(`${at}/signingKeyFromSecret`, `"${b.signingKeyFromSecret}" is not a valid Secret name; accepted: a Secret name, or "" to publish unsigned (consumers must then accept unsigned events: enlist relay --allow-unsigned)`)
  }
  pemError(b.caBundle, `${at}/caBundle`, add)
  if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
}
