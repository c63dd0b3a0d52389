// A CMDB or registry with a REST interface: PUT {url}/{uid} with the JSON record,
// DELETE {url}/{uid} (404 counts as done), GET {url} lists what is registered, in pages
// when the CMDB pages it (docs/policy.md, "The http backend's contract"):
//
//   {"items": [...], "continue": "<token>"}   then GET {url}?continue=<token>
//   Link: <{url}?page=2>; rel="next"           then GET that (same origin, under {url})
//
// Every request completes within timeoutSeconds, answer included (a server dripping a byte
// at a time is cut off), answers are capped at maxResponseBytes and lists at maxListPages.
// Only a pod UID ever becomes a path segment. Errors say what failed in words safe for
// tenants; the URL and what the CMDB answered go to enlist's log only.

import http from 'node:http'
import https from 'node:https'
import type { Logger } from 'pino'
import { SecretError, type SecretReader } from '../kube/secrets.js'
import { AbortedError } from '../lib/errors.js'
import { isPodUid } from '../lib/validation.js'
import { silentLogger } from '../log.js'
import { backendUrlErrors } from '../policy/backends/http.js'
import type { HttpBackendSpec } from '../policy/policy.js'
import { type Backend, type BackendCallOptions, BackendError, type BackendOp } from './backend.js'
import type { PodRef } from '../kube/pod-ref.js'
import type { ListedEntry } from './ownership.js'
import type { RegistryRecord } from './record.js'

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

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

const MAX_CONTINUE_LENGTH = 4096
const EXCERPT = 300

export class HttpBackend implements Backend {
  readonly type = 'http'
  readonly name: string
  private readonly base: URL
  private readonly listUrl: URL
  private readonly agent: http.Agent

  constructor(
    private readonly spec: HttpBackendSpec,
    private readonly headers: HeaderSource,
    private readonly log: Logger = silentLogger(),
  ) {
    this.name = spec.name
    const problems: string[] = []
    backendUrlErrors(spec, 'url', (_, m) => problems.push(m))
    if (problems.length > 0) throw new Error(`backend ${spec.name}: url ${problems.join('; ')}`)
    this.base = new URL(spec.url.endsWith('/') ? spec.url : `${spec.url}/`)
    this.listUrl = new URL(this.base.href)
    this.listUrl.pathname = this.base.pathname.replace(/\/$/, '') || '/'
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, maxSockets: 16, ...(spec.caBundle ? { ca: spec.caBundle } : {}) })
        : new http.Agent({ keepAlive: true, maxSockets: 16 })
  }

  async register(record: RegistryRecord, opts: BackendCallOptions = {}): Promise<void> {
    const res = await this.send('register', 'PUT', this.entryUrl('register', record.uid), opts.signal, JSON.stringify(record))
    if (res.status < 200 || res.status >= 300) throw this.statusError('register', 'PUT', this.entryUrl('register', record.uid), res)
  }

  async deregister(ref: PodRef, opts: BackendCallOptions = {}): Promise<void> {
    const url = this.entryUrl('deregister', ref.uid)
    const res = await this.send('deregister', 'DELETE', url, opts.signal)
    if (res.status === 404 || res.status === 410) return
    if (res.status < 200 || res.status >= 300) throw this.statusError('deregister', 'DELETE', url, res)
  }

  async list(opts: BackendCallOptions = {}): Promise<ListedEntry[]> {
    const out: ListedEntry[] = []
    const visited = new Set<string>()
    let ignored = 0
    let url: URL | undefined = this.listUrl
    for (let page = 1; url; page++) {
      if (page > this.spec.maxListPages) throw new BackendError(this.name, 'list', `the list has more than ${this.spec.maxListPages} pages (maxListPages)`, false)
      visited.add(url.href)
      await opts.pace?.()
      const res = await this.send('list', 'GET', url, opts.signal)
      if (res.status < 200 || res.status >= 300) throw this.statusError('list', 'GET', url, res)
      let body: unknown
      try {
        body = JSON.parse(res.body)
      } catch {
        throw this.contractError(url, res, 'the list is not JSON (expected an array of records, or {"items": [...]})')
      }
      const items = Array.isArray(body) ? body : (body as { items?: unknown } | null)?.items
      if (!Array.isArray(items)) throw this.contractError(url, res, 'expected an array of records, or {"items": [...]}')
      for (const it of items as Array<Partial<Record<keyof RegistryRecord, unknown>> | null>) {
        // Entries without a pod identity are not ours to remove; nor is anything whose
        // uid is not a pod UID, which must never become a request path.
        if (typeof it?.uid !== 'string' || typeof it.namespace !== 'string' || typeof it.pod !== 'string') continue
        if (!isPodUid(it.uid)) {
          ignored++
          continue
        }
        // the record's cluster is the mark (src/registry/ownership.ts): none, an unmarked entry
        const cluster = typeof it.cluster === 'string' && it.cluster !== '' ? it.cluster : undefined
        // and the writer's kube-system UID: this name written by another cluster is reported, never deleted
        const clusterUID = typeof it.clusterUID === 'string' && it.clusterUID !== '' ? it.clusterUID : undefined
        out.push({ uid: it.uid, namespace: it.namespace, pod: it.pod, cluster, ...(clusterUID ? { clusterUID } : {}) })
      }
      url = this.nextPage(body, res, url, visited)
    }
    if (ignored > 0) this.log.warn({ backend: this.name, ignored }, 'the CMDB lists entries whose uid is not a pod UID; they are left alone')
    return out
  }

  /** `enlist sweep --adopt-unmarked`: the CMDB keys entries by pod UID, so an unmarked
   *  entry of a live pod is simply PUT again with the mark (`record`), and that of a pod
   *  that is gone is deleted. An entry with another cluster's mark is never touched. */
  async adopt(entry: ListedEntry, record: RegistryRecord | undefined, opts: BackendCallOptions = {}): Promise<void> {
    if (entry.cluster !== undefined) throw new BackendError(this.name, 'adopt', `the entry of pod ${entry.namespace}/${entry.pod} carries cluster ${entry.cluster}'s mark; only unmarked entries are adopted`, false)
    if (record && record.uid !== entry.uid) throw new BackendError(this.name, 'adopt', `the record is of pod UID ${record.uid}, not the entry's ${entry.uid}`, false)
    // PUT unmarked, the entry would stay unmarked: the record comes through BackendSet.recordFor
    if (record && !record.cluster) throw new BackendError(this.name, 'adopt', `the record of pod ${record.namespace}/${record.pod} carries no cluster mark to adopt it with`, false)
    if (record) await this.register(record, opts)
    else await this.deregister(entry, opts)
  }

  close(): void {
    this.agent.destroy()
  }

  /** The next page, from a `continue` token or a Link rel="next" header. */
  private nextPage(body: unknown, res: Answer, current: URL, visited: Set<string>): URL | undefined {
    let next: URL | undefined
    const token = !Array.isArray(body) && body !== null && typeof body === 'object' ? (body as { continue?: unknown }).continue : undefined
    if (typeof token === 'string' && token !== '') {
      if (token.length > MAX_CONTINUE_LENGTH) throw this.contractError(current, res, `the continue token is longer than ${MAX_CONTINUE_LENGTH} characters`)
      next = new URL(this.listUrl.href)
      next.searchParams.set('continue', token)
    } else {
      const raw = res.headers.link
      const link = linkNext(Array.isArray(raw) ? raw.join(', ') : raw)
      if (link === undefined) return undefined
      try {
        next = new URL(link, current)
      } catch {
        throw this.contractError(current, res, 'the Link rel="next" header is not a URL')
      }
      // never follow a link elsewhere: the credentials go with every request
      if (next.origin !== this.listUrl.origin || next.username !== '' || next.password !== '' || !next.pathname.startsWith(this.listUrl.pathname)) {
        throw this.contractError(current, res, 'the Link rel="next" header points outside the backend url')
      }
    }
    if (visited.has(next.href)) throw this.contractError(current, res, 'the next page is one already read (a loop)')
    return next
  }

  private entryUrl(op: BackendOp, uid: string): URL {
    if (!isPodUid(uid)) throw new BackendError(this.name, op, 'the entry has no valid pod UID', false)
    return new URL(uid, this.base)
  }

  private async send(op: BackendOp, method: string, url: URL, signal: AbortSignal | undefined, body?: string): Promise<Answer> {
    let extra: Record<string, string>
    try {
      extra = await this.headers()
    } catch (err) {
      this.log.warn({ backend: this.name, op, err: (err as Error).message }, 'cannot read the backend credentials')
      throw new BackendError(this.name, op, "its credentials cannot be read (see enlist's log)", !(err instanceof SecretError) || err.retryable, { cause: err })
    }
    if (signal?.aborted) throw new AbortedError(`backend ${this.name}: ${op}`)
    const mod = url.protocol === 'https:' ? https : http
    const timeoutMs = this.spec.timeoutSeconds * 1000
    return new Promise((resolve, reject) => {
      let settled = false
      const req = mod.request(url, {
        method,
        agent: this.agent,
        headers: {
          Accept: 'application/json',
          'User-Agent': 'enlist',
          ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}),
          ...extra,
        },
      })
      const finish = (err: Error | undefined, answer?: Answer, detail?: string): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (!err) {
          resolve(answer!)
          return
        }
        req.destroy()
        if (!(err instanceof AbortedError)) this.log.warn({ backend: this.name, op, method, url: url.href, err: detail ?? err.message }, 'backend request failed')
        reject(err)
      }
      // the whole exchange, answer included: never an idle timeout a drip can defeat
      const timer = setTimeout(() => finish(new BackendError(this.name, op, `no complete answer within ${this.spec.timeoutSeconds}s`, true)), timeoutMs)
      const onAbort = (): void => finish(new AbortedError(`backend ${this.name}: ${op}`))
      signal?.addEventListener('abort', onAbort, { once: true })
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          size += c.length
          if (size > this.spec.maxResponseBytes) {
            finish(new BackendError(this.name, op, `the answer exceeds maxResponseBytes (${this.spec.maxResponseBytes} bytes)`, false))
            return
          }
          chunks.push(c)
        })
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
        const cut = (): void => finish(new BackendError(this.name, op, 'the connection closed before the answer was complete', true))
        res.on('error', cut)
        res.on('close', cut)
      })
      req.on('error', (err) => finish(new BackendError(this.name, op, connectionFailure(err), true, { cause: err }), undefined, err.message))
      req.end(body)
    })
  }

  private statusError(op: BackendOp, method: string, url: URL, res: Answer): BackendError {
    // 4xx (but 408 and 429) will not change by retrying the same request.
    const retryable = res.status >= 500 || res.status === 408 || res.status === 429
    this.log.warn({ backend: this.name, op, method, url: url.href, status: res.status, body: res.body.slice(0, EXCERPT) }, 'backend answered with an error')
    return new BackendError(this.name, op, `HTTP ${res.status}`, retryable)
  }

  private contractError(url: URL, res: Answer, what: string): BackendError {
    this.log.warn({ backend: this.name, op: 'list', url: url.href, status: res.status, body: res.body.slice(0, EXCERPT), problem: what }, 'the CMDB list does not follow the contract')
    return new BackendError(this.name, 'list', what, false)
  }
}

/** The target of a `Link: <...>; rel="next"` header (RFC 8288). */
export function linkNext(header: string | undefined): string | undefined {
  if (!header) return undefined
  for (const m of header.matchAll(/<([^>]*)>((?:\s*;\s*[^;,]+)*)/g)) {
    if (/;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(m[2]! + ';')) return m[1]
  }
  return undefined
}

/** Why a connection failed, in words that name no host or port. */
function connectionFailure(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? ''
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'connection reset'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found'
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable'
  if (/CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO/i.test(code) || /certificate|tls|ssl/i.test(err.message)) return 'TLS verification failed'
  return 'connection failed'
}
