// What the server serves with: a certificate provider (files: files.ts; the self-managed
// CA and Secret: self-managed.ts), and the check every pair passes before it is served.

import { X509Certificate } from 'node:crypto'
import tls from 'node:tls'
import { EnlistError, errorMessage } from '../lib/errors.js'

export interface ServingCertificate {
  cert: string
  key: string
  /** CA bundle that verifies `cert`; handed to the registrar. */
  ca: string
  notAfter: Date
}

/** A runnable (src/manager.ts) serving the current pair and announcing each new one. */
export interface CertificateProvider {
  readonly name: string
  readonly current: ServingCertificate
  onChange(fn: (c: ServingCertificate) => void): void
  start(): void
  stop(): Promise<void>
}

/** Checks a cert/key pair; throws ENLIST_TLS_INVALID naming what is wrong. */
export function checkPair(cert: string, key: string, ca: string, origin: string): ServingCertificate {
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch (err) {
    throw new EnlistError('ENLIST_TLS_INVALID', `${origin}: the certificate is not PEM X.509: ${errorMessage(err)}`, 500)
  }
  try {
    tls.createSecureContext({ cert, key })
  } catch (err) {
    throw new EnlistError('ENLIST_TLS_INVALID', `${origin}: certificate and key do not form a pair: ${errorMessage(err)}`, 500)
  }
  return { cert, key, ca, notAfter: new Date(x509.validTo) }
}
