// A TCP proxy on loopback that a test can cut, to partition a client from a server:
// `reset` drops every connection and refuses new ones; `blackhole` keeps connections open
// but passes nothing either way (packets lost, as in a real partition) until `heal`.

import net from 'node:net'

export interface TcpProxy {
  port: number
  url(scheme: string): string
  cut(mode?: 'reset' | 'blackhole'): void
  heal(): void
  close(): Promise<void>
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let state: 'open' | 'reset' | 'blackhole' = 'open'
  const pairs = new Set<{ a: net.Socket; b: net.Socket }>()
  const server = net.createServer((a) => {
    if (state === 'reset') {
      a.destroy()
      return
    }
    const b = net.connect(targetPort, targetHost)
    const pair = { a, b }
    pairs.add(pair)
    const end = (): void => {
      pairs.delete(pair)
      a.destroy()
      b.destroy()
    }
    a.on('error', end).on('close', end)
    b.on('error', end).on('close', end)
    // Data is forwarded only while the link is open; in a blackhole it is dropped.
    a.on('data', (d: Buffer) => {
      if (state === 'open') b.write(d)
    })
    b.on('data', (d: Buffer) => {
      if (state === 'open') a.write(d)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    cut(mode = 'reset') {
      state = mode
      if (mode === 'reset') {
        for (const p of pairs) {
          p.a.resetAndDestroy()
          p.b.destroy()
        }
        pairs.clear()
      }
    },
    heal() {
      // after a blackhole the connections are broken beyond repair (bytes were lost): drop them
      if (state === 'blackhole') {
        for (const p of pairs) {
          p.a.resetAndDestroy()
          p.b.destroy()
        }
        pairs.clear()
      }
      state = 'open'
    },
    close: () =>
      new Promise<void>((r) => {
        for (const p of pairs) {
          p.a.destroy()
          p.b.destroy()
        }
        server.close(() => r())
      }),
  }
}
