// Checks shared by policy fields: URLs and PEM bundles.

import { X509Certificate } from 'node:crypto'
import type { AddError } from './types.js'

export function urlError(value: string, protocols: readonly string[], at: string, add: AddError): void {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    add(at, `"${value}" is not a URL`)
    return
  }
  if (!protocols.includes(u.protocol)) add(at, `"${value}" must use ${protocols.map((p) => p.slice(0, -1)).join(' or ')}`)
}

/** How a backend's connection URL is checked: its schemes, and what the messages name. */
export interface ConnectionRules {
  /** The encrypted scheme ("https:", "tls:", "amqps:") and the one in clear. */
  tls: string
  plain: string
  /** Whether the one in clear is allowed, and the setting that allows it ("allowInsecure: true"). */
  allowInsecure: boolean
  allowSetting: string
  /** Where credentials belong instead of the URL ("credentialsFromSecret"). */
  credentialsIn: string
}

/** How the policy's etcd, nats and amqp backends name the settings the messages point to. */
export const POLICY_CONNECTION_SETTINGS = { allowSetting: 'allowInsecure: true', credentialsIn: 'credentialsFromSecret' } as const

/**
 * A backend's connection URL: a URL with a host, of one of the two schemes, encrypted unless
 * the policy says otherwise (the records, and the credentials from the Secret, would cross the
 * network readable), without credentials, which would end up in logs, metrics and errors.
 * Nothing is echoed but scheme and host: the URL may hold a password. Returns the parsed URL,
 * for checks of the caller's own.
 */
export function connectionUrlErrors(raw: string, r: ConnectionRules, at: string, add: AddError): URL | undefined {
  const tls = r.tls.slice(0, -1)
  const plain = r.plain.slice(0, -1)
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    add(at, `is not a URL; accepted: ${tls}://host:port (or ${plain}:// with ${r.allowSetting})`)
    return undefined
  }
  if (u.protocol !== r.tls && u.protocol !== r.plain) add(at, `must use ${tls} (or ${plain} with ${r.allowSetting}); got ${u.protocol.slice(0, -1)}`)
  else if (u.protocol === r.plain && !r.allowInsecure) {
    add(at, `${u.protocol}//${u.host} is not encrypted (records and credentials would cross the network in clear): use ${tls}://, or set ${r.allowSetting}`)
  }
  if (u.username !== '' || u.password !== '') add(at, `must not hold credentials (user:password@); put them in ${r.credentialsIn}`)
  if (u.hostname === '') add(at, 'has no host')
  return u
}

export function pemError(pem: string, at: string, add: AddError): void {
  if (pem === '') return
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
  if (!blocks) {
    add(at, 'must be PEM certificates (-----BEGIN CERTIFICATE-----)')
    return
  }
  for (const b of blocks) {
    try {
      new X509Certificate(b)
    } catch {
      add(at, 'holds a PEM block that is not a valid X.509 certificate')
      return
    }
  }
}
