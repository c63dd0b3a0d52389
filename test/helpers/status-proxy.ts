// A proxy in front of a CMDB that answers chosen requests itself: a CMDB that refuses one
// event (413 for a record with large metadata) while applying the others.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface StatusProxy {
  url: string
  /** Path suffix (a pod UID) -> the status answered to any request on it. */
  statuses: Map<string, number>
  close(): Promise<void>
}

export async function startStatusProxy(target: string): Promise<StatusProxy> {
  const base = new URL(target)
  const statuses = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    const status = [...statuses].find(([uid]) => path.endsWith(`/${uid}`))?.[1]
    if (status !== undefined) {
      req.resume()
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `refused with ${status}` }))
      return
    }
    const up = http.request({ host: base.hostname, port: base.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    up.on('error', () => res.writeHead(502).end())
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const { port } = server.address() as AddressInfo
  const prefix = base.pathname.replace(/\/$/, '')
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    statuses,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}
