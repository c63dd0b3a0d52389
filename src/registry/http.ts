// A CMDB or registry with a REST interface: PUT {url}/{uid} with the JSON record,
// DELETE {url}/{uid} (404 counts as done), GET {url} lists what is registered.

import http from 'node:http'
import https from 'node:https'
import { SecretError, type SecretReader } from '../kube/secrets.js'
import type { HttpBackendSpec } from '../policy/policy.js'
import { type Backend, BackendError, type BackendOp } from './backend.js'
import type { EntryRef, RegistryRecord } from './record.js'

export type HeaderSource = () => Promise<Record<string, string>>

/** Headers from a Secret in enlist's namespace: each key a header name. */
export function secretHeaders(secrets: SecretReader, name: string): HeaderSource {
  if (name === '') return async () => ({})
  return async () => {
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(await secrets.read(name))) headers[k] = v.trim()
    return headers
  }
}

export class HttpBackend implements Backend {
  readonly type = 'http'
  readonly name: string
  private readonly base: URL
  private readonly agent: http.Agent

  constructor(
    private readonly spec: HttpBackendSpec,
    private readonly headers: HeaderSource,
  ) {
    this.name = spec.name
    this.base = new URL(spec.url.endsWith('/') ? spec.url : `${spec.url}/`)
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, maxSockets: 16, ...(spec.caBundle ? { ca: spec.caBundle } : {}) })
        : new http.Agent({ keepAlive: true, maxSockets: 16 })
  }

  async register(record: RegistryRecord): Promise<void> {
    const res = await this.send('register', 'PUT', encodeURIComponent(record.uid), JSON.stringify(record))
    if (res.status < 200 || res.status >= 300) throw this.statusError('register', res)
  }

  async deregister(ref: EntryRef): Promise<void> {
    const res = await this.send('deregister', 'DELETE', encodeURIComponent(ref.uid))
    if (res.status === 404 || res.status === 410) return
    if (res.status < 200 || res.status >= 300) throw this.statusError('deregister', res)
  }

  async list(): Promise<EntryRef[]> {
    const res = await this.send('list', 'GET', '')
    if (res.status < 200 || res.status >= 300) throw this.statusError('list', res)
    let body: unknown
    try {
      body = JSON.parse(res.body)
    } catch {
      throw new BackendError(this.name, 'list', 'the list is not JSON (expected an array of records, or {"items": [...]})', false)
    }
    const items = Array.isArray(body) ? body : (body as { items?: unknown }).items
    if (!Array.isArray(items)) throw new BackendError(this.name, 'list', 'expected an array of records, or {"items": [...]}', false)
    const out: EntryRef[] = []
    for (const it of items as Array<Partial<RegistryRecord>>) {
      // Entries without a pod identity are not ours to remove.
      if (typeof it?.uid === 'string' && it.uid !== '' && typeof it.namespace === 'string' && typeof it.pod === 'string') {
        out.push({ uid: it.uid, namespace: it.namespace, pod: it.pod })
      }
    }
    return out
  }

  close(): void {
    this.agent.destroy()
  }

  private async send(op: BackendOp, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
    let extra: Record<string, string>
    try {
      extra = await this.headers()
    } catch (err) {
      throw new BackendError(this.name, op, (err as Error).message, !(err instanceof SecretError) || err.retryable, { cause: err })
    }
    const url = new URL(path, this.base)
    if (path === '') url.pathname = this.base.pathname.replace(/\/$/, '') || '/'
    const mod = url.protocol === 'https:' ? https : http
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            Accept: 'application/json',
            'User-Agent': 'enlist',
            ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}),
            ...extra,
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
          res.on('error', (err) => reject(new BackendError(this.name, op, err.message, true, { cause: err })))
        },
      )
      req.setTimeout(this.spec.timeoutSeconds * 1000, () => req.destroy(new Error(`no answer within ${this.spec.timeoutSeconds}s`)))
      req.on('error', (err) => reject(new BackendError(this.name, op, `${method} ${url.href}: ${err.message}`, true, { cause: err })))
      req.end(body)
    })
  }

  private statusError(op: BackendOp, res: { status: number; body: string }): BackendError {
    // 4xx (but 408 and 429) will not change by retrying the same request.
    const retryable = res.status >= 500 || res.status === 408 || res.status === 429
    return new BackendError(this.name, op, `HTTP ${res.status}${res.body ? `: ${res.body.slice(0, 200)}` : ''}`, retryable)
  }
}
