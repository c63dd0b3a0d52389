// A thin JSON client: requests are raw so that watches stream into our own reflector,
// patch types are explicit, and every call shares one keep-alive agent. Credentials come
// from credentials.ts (in-cluster, kubeconfig, or client-node for exec plugins).

import http from 'node:http'
import https from 'node:https'
import { EnlistError } from '../lib/errors.js'
import type { Credentials } from './credentials.js'

export class KubeApiError extends EnlistError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly method: string,
    readonly path: string,
  ) {
    super('ENLIST_UNAVAILABLE', `${method} ${path}: ${status} ${reason}: ${message}`, status >= 500 || status === 0 ? 503 : status)
    this.name = 'KubeApiError'
  }
  get notFound(): boolean {
    return this.status === 404
  }
  get conflict(): boolean {
    return this.status === 409
  }
  get gone(): boolean {
    return this.status === 410
  }
}

export const PatchType = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
} as const
export type PatchType = (typeof PatchType)[keyof typeof PatchType]

export type Query = Record<string, string | number | boolean | undefined>

export interface RequestOptions {
  query?: Query
  body?: unknown
  contentType?: string
  timeoutMs?: number
  signal?: AbortSignal
}

export interface KubeVersionInfo {
  major: number
  minor: number
  gitVersion: string
}

export class KubeClient {
  readonly server: URL
  private readonly agent: https.Agent

  constructor(readonly credentials: Credentials) {
    this.server = credentials.server
    const t = credentials.tls
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.rejectUnauthorized, servername: t.servername })
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query })
  }

  async create<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('POST', path, { body, query })
  }

  async replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body })
  }

  async patch<T>(path: string, body: unknown, type: PatchType, query?: Query): Promise<T> {
    return this.request<T>('PATCH', path, { body, contentType: type, query })
  }

  async delete<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, { body })
  }

  async version(): Promise<KubeVersionInfo> {
    const v = await this.get<{ major: string; minor: string; gitVersion: string }>('/version')
    // Some distributions report minor as "27+".
    return { major: parseInt(v.major, 10), minor: parseInt(v.minor, 10), gitVersion: v.gitVersion }
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const text = await this.requestText(method, path, opts)
    return (text.length > 0 ? JSON.parse(text) : {}) as T
  }

  /** For endpoints that answer text (/readyz, /metrics). */
  async requestText(method: string, path: string, opts: RequestOptions = {}): Promise<string> {
    const res = await this.send(method, path, opts)
    const text = await readAll(res)
    const status = res.statusCode ?? 0
    if (status < 200 || status >= 300) throw apiError(method, path, status, text)
    return text
  }

  /** Streams a watch: calls onEvent per JSON line until the server ends it or signal aborts. */
  async watch(path: string, query: Query, onEvent: (event: unknown) => void, signal: AbortSignal): Promise<void> {
    // A silent peer (apiserver gone without a FIN) must not hang the watch forever.
    const idleMs = (Number(query.timeoutSeconds ?? 600) + 30) * 1000
    const res = await this.send('GET', path, { query: { ...query, watch: true }, signal, timeoutMs: idleMs })
    const status = res.statusCode ?? 0
    if (status !== 200) throw apiError('GET', path, status, await readAll(res))
    await new Promise<void>((resolve, reject) => {
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buf += chunk
        let nl: number
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          if (line.trim() === '') continue
          try {
            onEvent(JSON.parse(line))
          } catch (err) {
            res.destroy(err as Error)
            return
          }
        }
      })
      res.on('end', () => resolve())
      res.on('error', (err) => (signal.aborted ? resolve() : reject(err)))
      res.on('close', () => resolve())
    })
  }

  private async send(method: string, path: string, opts: RequestOptions): Promise<http.IncomingMessage> {
    const url = new URL(this.server.pathname.replace(/\/$/, '') + path, this.server)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    const headers: Record<string, string | number> = { Accept: 'application/json', 'User-Agent': 'enlist' }
    const auth = await this.credentials.authorization()
    if (auth) headers.Authorization = auth
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body))
    if (body) {
      headers['Content-Type'] = opts.contentType ?? 'application/json'
      headers['Content-Length'] = body.length
    }
    const reqOpts: https.RequestOptions = { method, headers, agent: url.protocol === 'http:' ? undefined : this.agent }
    const mod = url.protocol === 'http:' ? http : https
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...reqOpts, signal: opts.signal }, resolve)
      req.on('error', (err) => reject(new KubeApiError(0, 'ConnectionFailed', err.message, method, path)))
      if (opts.timeoutMs) {
        req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no response within ${opts.timeoutMs} ms`)))
      }
      req.end(body)
    })
  }

  close(): void {
    this.agent.destroy()
  }
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    res.on('data', (c: Buffer) => chunks.push(c))
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    res.on('error', reject)
  })
}

function apiError(method: string, path: string, status: number, text: string): KubeApiError {
  let reason = 'Unknown'
  let message = text.slice(0, 500)
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string }
    reason = s.reason ?? reason
    message = s.message ?? message
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, message, method, path)
}
