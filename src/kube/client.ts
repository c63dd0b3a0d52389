// A thin JSON client: requests are raw so that watches stream into our own reflector,
// patch types are explicit, and every call shares one keep-alive agent. Credentials come
// from credentials.ts (in-cluster, kubeconfig, or client-node for exec plugins).
//
// What client-go's rest client learned, done here too: every call has a deadline for the
// whole exchange, body included (never an idle timeout a slow drip can defeat), bodies are
// capped, a 429 or 5xx with Retry-After is retried after that delay while the deadline
// allows, a 401 re-reads a rotated token once, and the apiserver's Warning headers are
// logged once per text and counted. Every request is counted by verb, resource and code.

import http from 'node:http'
import https from 'node:https'
import type { Logger } from 'pino'
import { AbortedError, EnlistError } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import type { Credentials, Headers } from './credentials.js'

export class KubeApiError extends EnlistError {
  constructor(
    /** The HTTP status; 0 when no answer came (refused, reset, timed out, too large). */
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly method: string,
    readonly path: string,
    /** The server asked to come back after this long (Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super('ENLIST_UNAVAILABLE', `${method} ${path}: ${status === 0 ? '' : `${status} `}${reason}: ${message}`, status >= 500 || status === 0 ? 503 : status)
    this.name = 'KubeApiError'
  }
  get notFound(): boolean {
    return this.status === 404
  }
  get conflict(): boolean {
    return this.status === 409
  }
  /** The resourceVersion asked for is too old (410 Gone / Expired). */
  get gone(): boolean {
    return this.status === 410
  }
  get tooManyRequests(): boolean {
    return this.status === 429
  }
  get connectionRefused(): boolean {
    return this.status === 0 && this.reason === 'ConnectionRefused'
  }
  /** The answer passed the cap and was cut, unread. */
  get tooLarge(): boolean {
    return this.status === 0 && this.reason === 'ResponseTooLarge'
  }
}

export const PatchType = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
} as const
export type PatchType = (typeof PatchType)[keyof typeof PatchType]

export type Query = Record<string, string | number | boolean | undefined>

/** Per call: a caller's cancellation, and a deadline other than the client's default. */
export interface CallOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /** A smaller answer cap than the client's (a list page asks again for fewer objects). */
  maxBytes?: number
  /** Told the size in bytes of a successful answer (list pages adapt their size to it). */
  onBytes?: (bytes: number) => void
}

export interface RequestOptions extends CallOptions {
  query?: Query
  body?: unknown
  contentType?: string
  /** Accept header (default application/json; /openid/v1/jwks answers only application/jwk-set+json). */
  accept?: string
}

export interface KubeVersionInfo {
  major: number
  minor: number
  gitVersion: string
}

export type KubeMetrics = Pick<Metrics, 'apiRequests' | 'apiWarnings' | 'reflectorBackoff' | 'reflectorFailures' | 'reflectorLists'>

export interface KubeClientOptions {
  /** Every call but a watch stream completes within this, body included (default 30 s). */
  requestTimeoutMs?: number
  /** Largest response body, and largest watch event, accepted (default 64 MiB). */
  maxResponseBytes?: number
  /** Retry-After retries per call at most (client-go's default: 10). */
  maxRetries?: number
  metrics?: KubeMetrics
  log?: Logger
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
// A watch ends when the server ends it (timeoutSeconds); this much later it is cut.
const WATCH_GRACE_MS = 30_000
const RETRY_AFTER_CAP_MS = 5 * 60_000
const MAX_WARNINGS_REMEMBERED = 1000

/** Why an exchange was cut, once we cut it: that, not the socket error it causes, is reported. */
interface Exchange {
  cause?: Error
  /** Stops listening to the caller's signal, once the exchange is over. */
  release?: () => void
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

export class KubeClient {
  readonly server: URL
  readonly metrics: KubeMetrics | undefined
  readonly log: Logger | undefined
  readonly requestTimeoutMs: number
  private readonly maxBytes: number
  private readonly maxRetries: number
  private readonly agent: http.Agent
  private readonly warned = new Set<string>()
  /** Open watch streams: when did each last receive anything, and how to end it. */
  private readonly streams = new Set<{ lastData: number; end: () => void }>()

  constructor(
    readonly credentials: Credentials,
    opts: KubeClientOptions = {},
  ) {
    this.server = credentials.server
    this.metrics = opts.metrics
    this.log = opts.log
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES
    this.maxRetries = opts.maxRetries ?? 10
    const t = credentials.tls
    this.agent =
      this.server.protocol === 'http:'
        ? new http.Agent({ keepAlive: true, maxSockets: 32 })
        : new https.Agent({ keepAlive: true, maxSockets: 32, ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.rejectUnauthorized, servername: t.servername })
  }

  async get<T>(path: string, query?: Query, opts?: CallOptions): Promise<T> {
    return this.request<T>('GET', path, { ...opts, query })
  }

  async create<T>(path: string, body: unknown, query?: Query, opts?: CallOptions): Promise<T> {
    return this.request<T>('POST', path, { ...opts, body, query })
  }

  async replace<T>(path: string, body: unknown, opts?: CallOptions): Promise<T> {
    return this.request<T>('PUT', path, { ...opts, body })
  }

  async patch<T>(path: string, body: unknown, type: PatchType, query?: Query, opts?: CallOptions): Promise<T> {
    return this.request<T>('PATCH', path, { ...opts, body, contentType: type, query })
  }

  async delete<T>(path: string, body?: unknown, opts?: CallOptions): Promise<T> {
    return this.request<T>('DELETE', path, { ...opts, body })
  }

  async version(opts?: CallOptions): Promise<KubeVersionInfo> {
    const v = await this.get<{ major: string; minor: string; gitVersion: string }>('/version', undefined, opts)
    // Some distributions report minor as "27+".
    return { major: parseInt(v.major, 10), minor: parseInt(v.minor, 10), gitVersion: v.gitVersion }
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const text = await this.requestText(method, path, opts)
    opts.onBytes?.(Buffer.byteLength(text))
    try {
      return (text.length > 0 ? JSON.parse(text) : {}) as T
    } catch {
      throw new KubeApiError(0, 'InvalidResponse', 'the answer is not JSON', method, path)
    }
  }

  /** For endpoints that answer text (/readyz, /metrics). */
  async requestText(method: string, path: string, opts: RequestOptions = {}): Promise<string> {
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs
    const deadline = Date.now() + timeoutMs
    const { verb, resource } = requestInfo(method, path)
    let refreshed = false
    for (let attempt = 0; ; attempt++) {
      const res = await this.exchange(method, path, opts, verb, resource, deadline, timeoutMs)
      if (res.status >= 200 && res.status < 300) return res.body
      // a rotated token: re-read it and try once more
      if (res.status === 401 && !refreshed && this.credentials.refresh?.()) {
        refreshed = true
        continue
      }
      const retryAfter = retryAfterMs(res.status, res.headers)
      if (retryAfter !== undefined && attempt < this.maxRetries && Date.now() + retryAfter < deadline) {
        await abortableSleep(retryAfter, opts.signal, `${method} ${path}`)
        continue
      }
      throw apiError(method, path, res.status, res.body, retryAfter)
    }
  }

  /** Streams a watch: calls onEvent per JSON line until the server ends it or signal aborts;
   *  onOpen once the server has accepted it.
   *  The response must start within the request timeout, and the stream ends at the latest
   *  WATCH_GRACE_MS after the timeoutSeconds asked for. An event that throws ends it. */
  async watch(path: string, query: Query, onEvent: (event: unknown) => void, signal: AbortSignal, onOpen?: () => void): Promise<void> {
    const streamMs = Number(query.timeoutSeconds ?? 600) * 1000 + WATCH_GRACE_MS
    const { resource } = requestInfo('GET', path)
    const state: Exchange = {}
    const req = await this.open('GET', path, { query: { ...query, watch: true }, signal }, state)
    const cut = (cause: Error): void => {
      state.cause ??= cause
      req.destroy(state.cause)
    }
    let timer = setTimeout(() => {
      cut(timeoutError('GET', path, this.requestTimeoutMs))
      this.recycleSilentStreams()
    }, this.requestTimeoutMs)
    let res: http.IncomingMessage
    try {
      res = await this.response(req, 'GET', path, 'WATCH', resource, state)
      const status = res.statusCode ?? 0
      if (status !== 200) {
        const body = await this.readBody(req, res, 'GET', path, state)
        throw apiError('GET', path, status, body, retryAfterMs(status, res.headers))
      }
    } catch (err) {
      state.release?.()
      throw err
    } finally {
      clearTimeout(timer)
    }
    onOpen?.()
    await new Promise<void>((resolve, reject) => {
      let buf = ''
      let settled = false
      const finish = (err?: unknown): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        state.release?.()
        this.streams.delete(stream)
        if (err === undefined || signal.aborted) resolve()
        else reject(err instanceof Error ? err : new Error(String(err)))
      }
      const stream = {
        lastData: Date.now(),
        end: () => {
          res.destroy()
          finish()
        },
      }
      this.streams.add(stream)
      // the server should have ended it by now: a normal end, the reflector rewatches
      timer = setTimeout(stream.end, streamMs)
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        stream.lastData = Date.now()
        buf += chunk
        let nl: number
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          if (line.trim() === '') continue
          try {
            onEvent(JSON.parse(line))
          } catch (err) {
            res.destroy()
            finish(err)
            return
          }
        }
        if (buf.length > this.maxBytes) {
          res.destroy()
          finish(new KubeApiError(0, 'ResponseTooLarge', `a watch event exceeds ${this.maxBytes} bytes`, 'WATCH', path))
        }
      })
      // A stream cut short is a watch that ended, as client-go treats it: the reflector
      // rewatches, or backs off and relists if it lasted under a second with no event.
      res.on('end', () => finish())
      res.on('error', () => finish())
      res.on('close', () => finish())
    })
  }

  /** One request and its whole answer, cut at the deadline. */
  private async exchange(method: string, path: string, opts: RequestOptions, verb: string, resource: string, deadline: number, timeoutMs: number): Promise<Answer> {
    const state: Exchange = {}
    const req = await this.open(method, path, opts, state)
    const timer = setTimeout(() => {
      state.cause ??= timeoutError(method, path, timeoutMs)
      req.destroy(state.cause)
      this.recycleSilentStreams()
    }, Math.max(1, deadline - Date.now()))
    try {
      const res = await this.response(req, method, path, verb, resource, state)
      const body = await this.readBody(req, res, method, path, state, Math.min(opts.maxBytes ?? Infinity, this.maxBytes))
      return { status: res.statusCode ?? 0, headers: res.headers, body }
    } finally {
      clearTimeout(timer)
      state.release?.()
    }
  }

  private async open(method: string, path: string, opts: RequestOptions, state: Exchange): Promise<http.ClientRequest> {
    if (opts.signal?.aborted) throw new AbortedError(`${method} ${path}`)
    const url = new URL(this.server.pathname.replace(/\/$/, '') + path, this.server)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    let agent: http.Agent = this.agent
    const headers: Record<string, string | number | string[]> = { Accept: opts.accept ?? 'application/json', 'User-Agent': 'enlist' }
    if (this.credentials.connection) {
      const c = await this.credentials.connection()
      agent = c.agent
      Object.assign(headers, c.headers)
    } else {
      Object.assign(headers, this.credentials.headers ?? ({} as Headers))
      const auth = await this.credentials.authorization()
      if (auth) headers.Authorization = auth
    }
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body))
    if (body) {
      headers['Content-Type'] = opts.contentType ?? 'application/json'
      headers['Content-Length'] = body.length
    }
    const mod = url.protocol === 'http:' ? http : https
    const req = mod.request(url, { method, headers, agent })
    const signal = opts.signal
    if (signal) {
      // until the caller is done with the answer (a watch: its whole stream), not merely
      // until the request is sent
      const onAbort = (): void => {
        state.cause ??= new AbortedError(`${method} ${path}`)
        req.destroy(state.cause)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      state.release = () => signal.removeEventListener('abort', onAbort)
      // aborted while the credentials were fetched: no event will come
      if (signal.aborted) onAbort()
    }
    req.end(body)
    return req
  }

  private response(req: http.ClientRequest, method: string, path: string, verb: string, resource: string, state: Exchange): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      req.once('response', (res) => {
        this.observe(verb, resource, String(res.statusCode ?? 0), res.headers, path)
        resolve(res)
      })
      req.once('error', (err) => {
        this.observe(verb, resource, '<error>')
        reject(state.cause ?? transportError(err, method, path))
      })
    })
  }

  private readBody(req: http.ClientRequest, res: http.IncomingMessage, method: string, path: string, state: Exchange, maxBytes = this.maxBytes): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      let done = false
      const fail = (err: Error): void => {
        if (done) return
        done = true
        state.cause ??= err
        res.destroy()
        req.destroy()
        reject(state.cause)
      }
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > maxBytes) return fail(new KubeApiError(0, 'ResponseTooLarge', `the answer exceeds ${maxBytes} bytes`, method, path))
        chunks.push(c)
      })
      res.on('end', () => {
        if (done) return
        done = true
        resolve(Buffer.concat(chunks).toString('utf8'))
      })
      res.on('error', (err) => fail(transportError(err, method, path)))
      res.on('close', () => fail(new KubeApiError(0, 'ConnectionReset', 'the connection closed before the answer was complete', method, path)))
      req.on('error', (err) => fail(transportError(err, method, path)))
    })
  }

  /**
   * A request got no answer in time: the apiserver, or the way to it, may be gone without a
   * word (a partition sends no FIN), and a watch on it would wait out its whole timeout,
   * minutes, delivering nothing. Watches silent for as long are ended, so their reflectors
   * watch again (from where they were) on fresh connections. client-go gets the same from
   * HTTP/2 health-check pings.
   */
  private recycleSilentStreams(): void {
    const now = Date.now()
    let ended = 0
    for (const s of [...this.streams]) {
      if (now - s.lastData < this.requestTimeoutMs) continue
      s.end()
      ended++
    }
    if (ended > 0) this.log?.info({ watches: ended }, 'a request to the apiserver timed out: ending watches silent as long, to reconnect them')
  }

  private observe(verb: string, resource: string, code: string, headers?: http.IncomingHttpHeaders, path?: string): void {
    this.metrics?.apiRequests.inc({ verb, resource, code })
    const raw = headers?.warning
    if (!raw) return
    for (const text of parseWarnings(Array.isArray(raw) ? raw.join(', ') : raw)) {
      this.metrics?.apiWarnings.inc()
      if (this.warned.has(text)) continue
      if (this.warned.size >= MAX_WARNINGS_REMEMBERED) this.warned.clear()
      this.warned.add(text)
      this.log?.warn({ warning: text, path }, 'the apiserver sent a warning')
    }
  }

  close(): void {
    this.agent.destroy()
  }
}

/** The verb (GET, LIST, POST, ...) and resource (pods, pods/status, ...) of a request path,
 *  for metrics: a fixed, small set of label values. */
export function requestInfo(method: string, path: string): { verb: string; resource: string } {
  const segs = path.split('?')[0]!.split('/').filter(Boolean)
  let rest: string[]
  if (segs[0] === 'api' && segs.length >= 2) rest = segs.slice(2)
  else if (segs[0] === 'apis' && segs.length >= 3) rest = segs.slice(3)
  else return { verb: method, resource: segs[0] === 'api' || segs[0] === 'apis' ? 'discovery' : (segs[0] ?? 'root') }
  if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2)
  const [resource, name, sub] = rest
  if (!resource) return { verb: method, resource: 'discovery' }
  return { verb: method === 'GET' && name === undefined ? 'LIST' : method, resource: sub ? `${resource}/${sub}` : resource }
}

/** The texts of RFC 7234 Warning headers (`299 - "text"`, several comma-separated). */
export function parseWarnings(header: string): string[] {
  const out: string[] = []
  for (const m of header.matchAll(/\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"/g)) out.push(m[1]!.replace(/\\(.)/g, '$1'))
  return out
}

/** Retry-After on a 429 or 5xx, in ms (integer seconds, as client-go reads it). */
export function retryAfterMs(status: number, headers: http.IncomingHttpHeaders): number | undefined {
  if (status !== 429 && status < 500) return undefined
  const v = headers['retry-after']
  if (typeof v !== 'string' || !/^\d+$/.test(v.trim())) return undefined
  return Math.min(Number(v.trim()) * 1000, RETRY_AFTER_CAP_MS)
}

function abortableSleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(what))
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new AbortedError(what))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function timeoutError(method: string, path: string, ms: number): KubeApiError {
  return new KubeApiError(0, 'Timeout', `no complete answer within ${ms} ms`, method, path)
}

const TRANSPORT_REASONS: Record<string, string> = {
  ECONNREFUSED: 'ConnectionRefused',
  ECONNRESET: 'ConnectionReset',
  EPIPE: 'ConnectionReset',
  ETIMEDOUT: 'Timeout',
  ENOTFOUND: 'HostNotFound',
  EAI_AGAIN: 'HostNotFound',
}

function transportError(err: Error, method: string, path: string): Error {
  if (err instanceof KubeApiError || err instanceof AbortedError) return err
  const code = (err as NodeJS.ErrnoException).code ?? ''
  return new KubeApiError(0, TRANSPORT_REASONS[code] ?? 'ConnectionFailed', err.message, method, path)
}

function apiError(method: string, path: string, status: number, text: string, retryAfter?: number): KubeApiError {
  let reason = 'Unknown'
  let message = text.slice(0, 500)
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string }
    reason = s.reason ?? reason
    message = s.message ?? message
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, message, method, path, retryAfter)
}
