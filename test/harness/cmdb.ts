// A CMDB with a REST interface, in memory, on loopback: PUT/DELETE {base}/{uid}, GET {base}.
// It can be taken down (503) and brought back, and it records what it was sent.

import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Cmdb {
  url: string
  records: Map<string, Record<string, unknown>>
  /** What it was sent, with when it arrived (Date.now()). */
  requests: Array<{ method: string; path: string; authorization?: string; at: number }>
  down: boolean
  /** When set, requests without this Authorization header get 401. */
  requireAuthorization?: string
  close(): Promise<void>
}

/** `host`: where it listens; pods on a real node reach it on the node's host address. */
export async function startCmdb(base = '/api/v1/instances', host = '127.0.0.1'): Promise<Cmdb> {
  const cmdb: Cmdb = {
    url: '',
    records: new Map(),
    requests: [],
    down: false,
    close: async () => undefined,
  }
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]!
      cmdb.requests.push({ method: req.method ?? '', path, authorization: req.headers.authorization, at: Date.now() })
      const reply = (status: number, payload?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(payload === undefined ? '' : JSON.stringify(payload))
      }
      if (cmdb.down) return reply(503, { error: 'maintenance' })
      if (cmdb.requireAuthorization && req.headers.authorization !== cmdb.requireAuthorization) return reply(401, { error: 'unauthorized' })
      if (path === base && req.method === 'GET') return reply(200, { items: [...cmdb.records.values()] })
      if (!path.startsWith(`${base}/`)) return reply(404, { error: 'no such path' })
      const uid = decodeURIComponent(path.slice(base.length + 1))
      if (req.method === 'PUT') {
        cmdb.records.set(uid, JSON.parse(body) as Record<string, unknown>)
        return reply(200, { ok: true })
      }
      if (req.method === 'DELETE') return cmdb.records.delete(uid) ? reply(204) : reply(404, { error: 'not found' })
      if (req.method === 'GET') return cmdb.records.has(uid) ? reply(200, cmdb.records.get(uid)) : reply(404, {})
      reply(405, { error: 'method' })
    })
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  cmdb.url = `http://${host}:${(server.address() as AddressInfo).port}${base}`
  cmdb.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  return cmdb
}
