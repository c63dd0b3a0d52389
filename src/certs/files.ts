// The serving certificate from files (--tls-cert, --tls-key, --tls-ca). Files are polled and, when they change and form a valid pair,
// swapped into the running server with setSecureContext: new connections get the new
// certificate, open ones carry on, nothing restarts. A half-written pair (cert updated,
// key not yet) is not an error worth more than a retry on the next tick.

import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { EnlistError, errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { type CertificateProvider, checkPair, type ServingCertificate } from './provider.js'

export interface CertificateFilesOptions {
  certFile: string
  keyFile: string
  /** Optional CA bundle file; default: ca.crt beside the certificate, if there is one. */
  caFile?: string
  log: Logger
  metrics: Metrics
  intervalMs?: number
}

export class CertificateFiles implements CertificateProvider {
  readonly name = 'certificate'
  private cur: ServingCertificate
  private digest: string
  private readonly listeners: Array<(c: ServingCertificate) => void> = []
  private timer: NodeJS.Timeout | undefined
  private failures = 0
  private polling: Promise<void> | undefined

  constructor(private readonly opts: CertificateFilesOptions) {
    const { cert, key, ca } = this.readSync()
    this.cur = checkPair(cert, key, ca, opts.certFile)
    this.digest = hash(cert, key, ca)
    opts.metrics.tlsReloads.inc({ result: 'ok' })
    this.track()
  }

  get current(): ServingCertificate {
    return this.cur
  }

  onChange(fn: (c: ServingCertificate) => void): void {
    this.listeners.push(fn)
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.polling = this.poll()
    }, this.opts.intervalMs ?? 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.polling
  }

  private async poll(): Promise<void> {
    const { log, metrics } = this.opts
    let files: { cert: string; key: string; ca: string }
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(this.opts.certFile, 'utf8'),
        readFile(this.opts.keyFile, 'utf8'),
        this.readCa(),
      ])
      files = { cert, key, ca }
    } catch (err) {
      this.fail(`cannot read: ${errorMessage(err)}`)
      return
    }
    const d = hash(files.cert, files.key, files.ca)
    if (d === this.digest) return
    let next: ServingCertificate
    try {
      next = checkPair(files.cert, files.key, files.ca, this.opts.certFile)
    } catch (err) {
      this.fail(errorMessage(err))
      return
    }
    this.digest = d
    this.failures = 0
    this.cur = next
    this.track()
    metrics.tlsReloads.inc({ result: 'ok' })
    log.info({ certFile: this.opts.certFile, notAfter: next.notAfter.toISOString() }, 'serving certificate reloaded')
    for (const l of this.listeners) l(next)
  }

  private fail(reason: string): void {
    // One bad read is usually a write in progress; say so only if it persists.
    if (++this.failures === 3) {
      this.opts.metrics.tlsReloads.inc({ result: 'invalid' })
      this.opts.log.error({ certFile: this.opts.certFile, reason }, 'serving certificate on disk is unusable; still serving the previous one')
    }
  }

  private track(): void {
    this.opts.metrics.tls.notAfter = this.cur.notAfter
  }

  private readSync(): { cert: string; key: string; ca: string } {
    const read = (f: string, what: string): string => {
      try {
        return readFileSync(f, 'utf8')
      } catch (err) {
        throw new EnlistError('ENLIST_TLS_INVALID', `cannot read the TLS ${what} ${f}: ${errorMessage(err)}`, 500)
      }
    }
    const cert = read(this.opts.certFile, 'certificate')
    const key = read(this.opts.keyFile, 'key')
    let ca = ''
    if (this.opts.caFile) ca = read(this.opts.caFile, 'CA bundle')
    else {
      try {
        ca = readFileSync(this.defaultCaPath(), 'utf8')
      } catch {
        ca = ''
      }
    }
    return { cert, key, ca }
  }

  private async readCa(): Promise<string> {
    if (this.opts.caFile) return readFile(this.opts.caFile, 'utf8')
    return readFile(this.defaultCaPath(), 'utf8').catch(() => '')
  }

  private defaultCaPath(): string {
    const dir = this.opts.certFile.includes('/') ? this.opts.certFile.slice(0, this.opts.certFile.lastIndexOf('/')) : '.'
    return `${dir}/ca.crt`
  }
}

function hash(...parts: string[]): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p).update('\u0000')
  return h.digest('hex')
}
