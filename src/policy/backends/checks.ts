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

/**
 * A connection in clear needs the policy to say so: the records, and the credentials from
 * the Secret, would cross the network readable. Only scheme and host are echoed.
 */
export function plaintextError(u: URL, tls: string, allowInsecure: boolean, at: string, add: AddError): void {
  if (allowInsecure || u.protocol === tls) return
  add(at, `${u.protocol}//${u.host} is not encrypted (records and credentials would cross the network in clear): use ${tls}//, or set allowInsecure: true`)
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
