// A small HTTPS client for tests: keep-alive like the apiserver, and it reports which
// certificate the server presented.

import { X509Certificate } from 'node:crypto'
import https from 'node:https'
import type { TLSSocket } from 'node:tls'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createCA, issueServing, type IssuedCertificate } from '../../src/certs/x509.js'
import { tempDir } from './temp.js'

export interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json<T = unknown>(): T
  serial: string | undefined
}

export function request(
  url: string,
  opts: { method?: string; body?: string | Buffer; headers?: Record<string, string>; agent?: https.Agent; ca?: string; timeoutMs?: number } = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method ?? 'GET',
        agent: opts.agent,
        ca: opts.agent ? undefined : opts.ca,
        headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      },
      (res) => {
        const chunks: Buffer[] = []
        const serial = (res.socket as TLSSocket).getPeerCertificate?.()?.serialNumber
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T, serial })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('timeout')))
    req.end(opts.body)
  })
}

export interface TestPki {
  dir: string
  ca: IssuedCertificate
  serving: IssuedCertificate
  certFile: string
  keyFile: string
  caFile: string
  /** Issues a new serving certificate from the same CA and writes it in place. */
  rotate(): Promise<IssuedCertificate>
}

export async function makePki(opts: { validityMs?: number } = {}): Promise<TestPki> {
  const dir = tempDir('enlist-pki-')
  const ca = await createCA({ commonName: 'enlist-test-ca', validityMs: 24 * 3600_000 })
  const issue = () =>
    issueServing({ ca, commonName: 'enlist', dnsNames: ['localhost', 'enlist.enlist-system.svc'], ipAddresses: ['127.0.0.1'], validityMs: opts.validityMs ?? 3600_000 })
  const serving = await issue()
  const pki: TestPki = {
    dir,
    ca,
    serving,
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    caFile: join(dir, 'ca.crt'),
    async rotate() {
      const next = await issue()
      writeFileSync(pki.keyFile, next.key)
      writeFileSync(pki.certFile, next.cert)
      pki.serving = next
      return next
    },
  }
  writeFileSync(pki.certFile, serving.cert)
  writeFileSync(pki.keyFile, serving.key)
  writeFileSync(pki.caFile, ca.cert)
  return pki
}

export function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber
}
