// A CMDB with a REST interface, in memory, on loopback: PUT/DELETE {base}/{uid}, GET {base}.
// It records what it was sent, and misbehaves on demand: down (503), 500s, stalls (accept,
// never answer), slow-drip answers, connection resets, floods, and pages its list with
// `continue` tokens or Link headers, correctly or not.

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Owner, owned, waitFor } from './processes.js'

export type CmdbFault =
  /** 500 to everything */
  | 'error'
  /** accept the request, never answer */
  | 'stall'
  /** answer 200, then one byte every 200 ms */
  | 'drip'
  /** close the connection without an answer */
  | 'reset'
  /** answer a list of 1 MiB and more */
  | 'flood'

export type CmdbPaging =
  | 'continue'
  | 'link'
  /** a continue token that leads back to the first page */
  | 'loop'
  /** a Link rel="next" to another host */
  | 'elsewhere'

export interface CmdbRequest {
  method: string
  path: string
  query: string
  authorization?: string
  at: number
}

export interface Cmdb {
  url: string
  records: Map<string, Record<string, unknown>>
  /** What it was sent, with when it arrived (Date.now()). */
  requests: CmdbRequest[]
  /** 503 to everything (maintenance). */
  down: boolean
  fault?: CmdbFault
  /** DELETEs of these uids fail with 500 (one bad entry among good ones). */
  failDelete: Set<string>
  /** Lists in pages of this many records, linked as `paging` says. */
  pageSize?: number
  paging: CmdbPaging
  /** When set, requests without this Authorization header get 401. */
  requireAuthorization?: string
  close(): Promise<void>
}

/** A CMDB closed when `t` ends. */
export function cmdbFor(t: Owner): Promise<Cmdb> {
  return owned(t, startCmdb(), (c) => c.close())
}

/** Waits until the CMDB holds an entry for `uid`. */
export function waitForEntry(cmdb: Cmdb, uid: string, what: string, timeoutMs = 30_000, intervalMs = 100): Promise<true> {
  return waitFor(what, async () => cmdb.records.has(uid), timeoutMs, intervalMs)
}

/** Waits until the CMDB holds no entry for `uid` (deregistered). */
export function waitForNoEntry(cmdb: Cmdb, uid: string, what: string, timeoutMs = 30_000, intervalMs = 100): Promise<true> {
  return waitFor(what, async () => !cmdb.records.has(uid), timeoutMs, intervalMs)
}

/** `host`: where it listens; pods on a real node reach it on the node's host address. */
export async function startCmdb(base = '/api/v1/instances', host = '127.0.0.1'): Promise<Cmdb> {
  const cmdb: Cmdb = {
    url: '',
    records: new Map(),
    requests: [],
    down: false,
    failDelete: new Set(),
    paging: 'continue',
    close: async () => undefined,
  }
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const [path, query = ''] = (req.url ?? '').split('?') as [string, string?]
      cmdb.requests.push({ method: req.method ?? '', path, query, authorization: req.headers.authorization, at: Date.now() })
      const reply = (status: number, payload?: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers })
        res.end(payload === undefined ? '' : JSON.stringify(payload))
      }
      switch (cmdb.fault) {
        case 'stall':
          return
        case 'reset':
          return req.socket.destroy()
        case 'error':
          return reply(500, { error: 'internal error at cmdb.internal:8443' })
        case 'drip': {
          res.writeHead(200, { 'content-type': 'application/json' })
          const text = JSON.stringify({ items: [...cmdb.records.values()] }) + ' '.repeat(64)
          let i = 0
          const t = setInterval(() => {
            if (i >= text.length || res.destroyed) {
              clearInterval(t)
              timers.delete(t)
              return void res.end()
            }
            res.write(text[i++])
          }, 200)
          timers.add(t)
          return
        }
        case 'flood':
          return reply(200, { items: Array.from({ length: 20_000 }, (_, i) => ({ uid: `u-${i}`, namespace: 'flood', pod: `p-${i}`, padding: 'x'.repeat(40) })) })
        case undefined:
          break
      }
      if (cmdb.down) return reply(503, { error: 'maintenance' })
      if (cmdb.requireAuthorization && req.headers.authorization !== cmdb.requireAuthorization) return reply(401, { error: 'unauthorized' })
      if (path === base && req.method === 'GET') return list(query, reply)
      if (!path.startsWith(`${base}/`)) return reply(404, { error: 'no such path' })
      const uid = decodeURIComponent(path.slice(base.length + 1))
      if (req.method === 'PUT') {
        cmdb.records.set(uid, JSON.parse(body) as Record<string, unknown>)
        return reply(200, { ok: true })
      }
      if (req.method === 'DELETE') {
        if (cmdb.failDelete.has(uid)) return reply(500, { error: 'this one cannot be deleted' })
        return cmdb.records.delete(uid) ? reply(204) : reply(404, { error: 'not found' })
      }
      if (req.method === 'GET') return cmdb.records.has(uid) ? reply(200, cmdb.records.get(uid)) : reply(404, {})
      reply(405, { error: 'method' })
    })
  })

  const list = (query: string, reply: (status: number, payload?: unknown, headers?: Record<string, string>) => void): void => {
    const all = [...cmdb.records.values()]
    const size = cmdb.pageSize
    if (!size) {
      reply(200, { items: all })
      return
    }
    const q = new URLSearchParams(query)
    const from = cmdb.paging === 'link' || cmdb.paging === 'elsewhere' ? (Number(q.get('page') ?? '1') - 1) * size : Number(q.get('continue') ?? '0')
    const items = all.slice(from, from + size)
    const more = from + size < all.length
    switch (cmdb.paging) {
      case 'continue':
        reply(200, { items, ...(more ? { continue: String(from + size) } : {}) })
        break
      case 'loop':
        reply(200, { items, continue: '0' })
        break
      case 'link':
        reply(200, items, more ? { link: `<${base}?page=${from / size + 2}>; rel="next"` } : {})
        break
      case 'elsewhere':
        reply(200, items, { link: '<http://127.0.0.2:1/steal?page=2>; rel="next"' })
        break
    }
  }

  await new Promise<void>((r) => server.listen(0, host, r))
  cmdb.url = `http://${host}:${(server.address() as AddressInfo).port}${base}`
  cmdb.close = () =>
    new Promise<void>((r) => {
      for (const t of timers) clearInterval(t)
      server.closeAllConnections()
      server.close(() => r())
    })
  return cmdb
}
