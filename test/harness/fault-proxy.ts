// A fault-injecting proxy between enlist and the real kube-apiserver, on loopback. It
// terminates TLS with a certificate from the control plane's CA (so enlist verifies it as
// it would the apiserver), forwards every request with its own credentials, records each
// one (time, verb, resource, status), and misbehaves on demand as a troubled control plane
// does: watches that end at once, 410 on every watch or on every continue token, 429 with
// Retry-After, 500s, stalls, slow drips, resets, and a partition (nothing answered, nothing
// in flight delivered) of just the replica behind it.

import type { ClientRequest, ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { issueServing } from '../../src/certs/x509.js'
import { requestInfo } from '../../src/kube/client.js'
import type { ControlPlane } from './control-plane.js'

export type Fault =
  /** every watch answers 200 and ends at once, with nothing in it */
  | 'watch-end'
  /** every watch answers 410 Expired */
  | 'watch-gone'
  /** lists are paged one object at a time and every continue token answers 410; so that
   *  relists keep coming, every watch answers 410 too */
  | 'continue-gone'
  /** every request answers 429 with Retry-After */
  | 'throttle'
  /** every request answers 500 */
  | 'error'
  /** every request is accepted and never answered */
  | 'stall'
  /** answers (but watch streams) come one byte every 200 ms; watches end, so lists follow */
  | 'drip'
  /** every connection is closed as soon as a request arrives */
  | 'reset'
  /** new requests are never answered, and nothing in flight is delivered */
  | 'partition'

export interface ProxiedRequest {
  at: number
  method: string
  verb: string
  resource: string
  path: string
  query: string
  status: number | 'reset' | 'stalled'
}

export interface FaultProxy {
  url: string
  readonly fault: Fault | undefined
  /** Sets (or, with undefined, heals) the fault. Every fault but a partition ends the watches
   *  in flight (they come back under it); a partition freezes them; what a stall or partition
   *  held is dropped when it ends. */
  setFault(fault: Fault | undefined): void
  retryAfterSeconds: number
  requests: ProxiedRequest[]
  /** Requests per resource (LIST, WATCH, GET... together) that arrived in [from, to). */
  perResource(from: number, to: number): Map<string, number>
  close(): Promise<void>
}

const STATUS = (code: number, reason: string, message: string): string => JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code })

export async function startFaultProxy(cp: ControlPlane): Promise<FaultProxy> {
  const serving = await issueServing({ ca: cp.ca, commonName: 'fault-proxy', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityMs: 24 * 3600_000 })
  const upstream = new URL(cp.server)
  const agent = new https.Agent({ keepAlive: true, maxSockets: 64, ca: cp.ca.cert })
  /** Exchanges held open (stalled, or frozen by a partition), dropped on heal. */
  const held = new Set<{ res: ServerResponse; up?: ClientRequest; watch?: boolean }>()
  const drips = new Set<NodeJS.Timeout>()
  let fault: Fault | undefined

  const server = https.createServer({ cert: serving.cert, key: serving.key, keepAliveTimeout: 120_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://proxy')
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1'
    const info = requestInfo(req.method ?? 'GET', url.pathname)
    const rec: ProxiedRequest = { at: Date.now(), method: req.method ?? '', verb: watch ? 'WATCH' : info.verb, resource: info.resource, path: url.pathname, query: url.search, status: 0 }
    proxy.requests.push(rec)
    const answer = (code: number, reason: string, message: string, headers: Record<string, string> = {}): void => {
      req.resume()
      rec.status = code
      res.writeHead(code, { 'content-type': 'application/json', ...headers })
      res.end(STATUS(code, reason, message))
    }
    const hold = (): void => {
      req.resume()
      rec.status = 'stalled'
      const h = { res }
      held.add(h)
      res.on('close', () => held.delete(h))
    }
    switch (fault) {
      case 'stall':
      case 'partition':
        return hold()
      case 'reset':
        rec.status = 'reset'
        return void req.socket.destroy()
      case 'error':
        return answer(500, 'InternalError', 'an error on the server ("injected") has prevented the request from succeeding')
      case 'throttle':
        return answer(429, 'TooManyRequests', 'too many requests, please try again later', { 'retry-after': String(proxy.retryAfterSeconds) })
      case 'watch-gone':
        if (watch) return answer(410, 'Expired', 'too old resource version: injected')
        break
      case 'watch-end':
        if (watch) {
          req.resume()
          rec.status = 200
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
          return void res.end()
        }
        break
      case 'continue-gone':
        if (watch) return answer(410, 'Expired', 'too old resource version: injected')
        if (url.searchParams.has('continue')) return answer(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.')
        // page everything one object at a time, so that every list needs a continue token
        if (url.searchParams.has('limit')) url.searchParams.set('limit', '1')
        break
      case 'drip':
      case undefined:
        break
    }

    const dripping = fault === 'drip' && !watch
    const up = https.request(
      { protocol: 'https:', hostname: upstream.hostname, port: upstream.port, method: req.method, path: url.pathname + url.search, headers: { ...req.headers, host: upstream.host }, agent },
      (upRes) => {
        upRes.on('error', () => undefined) // cut by a partition: the client side decides
        rec.status = upRes.statusCode ?? 0
        const headers = { ...upRes.headers }
        if (dripping) delete headers['content-length']
        res.writeHead(upRes.statusCode ?? 502, headers)
        // as the apiserver does: a watch's headers go out before its first event
        res.flushHeaders()
        if (!dripping) {
          upRes.pipe(res)
          return
        }
        const chunks: Buffer[] = []
        upRes.on('data', (c: Buffer) => chunks.push(c))
        upRes.on('end', () => {
          const body = Buffer.concat(chunks)
          let i = 0
          const t = setInterval(() => {
            if (res.destroyed || i >= body.length) {
              clearInterval(t)
              drips.delete(t)
              return void res.end()
            }
            res.write(body.subarray(i, ++i))
          }, 200)
          drips.add(t)
        })
      },
    )
    const exchange = { res, up, watch }
    held.add(exchange)
    res.on('close', () => {
      held.delete(exchange)
      up.destroy()
    })
    up.on('error', () => {
      if (held.has(exchange) && exchange.up) res.destroy()
    })
    req.pipe(up)
  })
  server.on('clientError', (_err, socket) => socket.destroy())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))

  const proxy: FaultProxy = {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get fault() {
      return fault
    },
    retryAfterSeconds: 2,
    requests: [],
    setFault(next) {
      // what a stall or partition held is dropped when it ends, as the server's side has long gone
      if ((fault === 'partition' || fault === 'stall') && next !== fault) {
        for (const h of [...held]) if (!h.up) h.res.destroy()
      }
      if (next === 'partition') {
        // what is in flight stops arriving: the upstream side is cut, the client side stays open
        for (const h of held) {
          if (!h.up) continue
          const up = h.up
          delete h.up
          up.destroy()
        }
      } else if (next !== undefined) {
        // a misbehaving apiserver ends the watches it has, so they come back under the fault
        for (const h of [...held]) {
          if (!h.watch || !h.up) continue
          const up = h.up
          delete h.up
          up.destroy()
          if (next === 'reset') h.res.destroy()
          else h.res.end()
        }
      }
      fault = next
    },
    perResource(from, to) {
      const m = new Map<string, number>()
      for (const r of proxy.requests) if (r.at >= from && r.at < to) m.set(r.resource, (m.get(r.resource) ?? 0) + 1)
      return m
    },
    close: () =>
      new Promise<void>((r) => {
        for (const t of drips) clearInterval(t)
        for (const h of held) h.res.destroy()
        agent.destroy()
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
  return proxy
}
