// A Dubbo consumer's view of a ZooKeeper registry, written from Dubbo's documented registry
// format and not from enlist's code: the providers of an interface are the children of
// /dubbo/<interface>/providers, each the provider URL escaped as java.net.URLEncoder does;
// a provider URL is protocol://host:port/path?key=value&..., a consumer matching it on
// interface, version, group, category (default providers) and enabled (default true).

import zookeeper from 'node-zookeeper-client'

export interface DubboProviderView {
  protocol: string
  host: string
  port: number
  params: Record<string, string>
}

export async function dubboProviders(connect: string, iface: string, want: { version?: string; group?: string } = {}, root = '/dubbo'): Promise<DubboProviderView[]> {
  const client = zookeeper.createClient(connect, { sessionTimeout: 10_000, retries: 0 })
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ZooKeeper session with ${connect}`)), 15_000)
    client.once('connected', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  client.connect()
  try {
    await ready
    // interface names are letters, digits and dots: URLEncoder leaves them as they are
    const children = await new Promise<string[]>((resolve, reject) =>
      client.getChildren(`${root}/${iface}/providers`, (err, c) => {
        if (err && (err as { code?: number }).code === zookeeper.Exception.NO_NODE) return resolve([])
        if (err) return reject(err)
        resolve(c)
      }),
    )
    const out: DubboProviderView[] = []
    for (const child of children) {
      const url = new URL(decodeURIComponent(child.replace(/\+/g, ' ')))
      const params = Object.fromEntries(url.searchParams)
      if ((params.interface ?? url.pathname.slice(1)) !== iface) continue
      if ((params.category ?? 'providers') !== 'providers' || params.enabled === 'false') continue
      if (want.version !== undefined && params.version !== want.version) continue
      if (want.group !== undefined && params.group !== want.group) continue
      out.push({ protocol: url.protocol.slice(0, -1), host: url.hostname, port: Number(url.port), params })
    }
    return out.sort((a, b) => `${a.host}:${a.port}`.localeCompare(`${b.host}:${b.port}`))
  } finally {
    client.close()
  }
}
