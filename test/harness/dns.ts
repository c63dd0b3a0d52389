// The cluster's DNS for a test node, as kube-dns answers it for Services: the A record of
// SERVICE.NAMESPACE.svc.cluster.local is the Service's ClusterIP, read from the apiserver
// when asked. Pods get it as their nameserver (the kubelet's clusterDNS) with the usual
// search path, so `enlist.enlist-system.svc` - the registrar's default URL - resolves as on
// any cluster. Nothing outside cluster.local is answered (there is no upstream: REFUSED).

import dgram from 'node:dgram'
import type { KubeClient } from '../../src/kube/client.js'

export interface DnsQuery {
  name: string
  type: number
  from: string
  answer?: string
}

export interface ClusterDns {
  address: string
  port: number
  /** Every query answered so far. */
  queries: DnsQuery[]
  close(): Promise<void>
}

const TYPE_A = 1
const RCODE = { ok: 0, servfail: 2, nxdomain: 3, refused: 5 } as const

/** Parses the first question; undefined for anything that is not a well-formed query. */
function question(msg: Buffer): { id: number; flags: number; name: string; type: number; end: number } | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return undefined
  const labels: string[] = []
  let i = 12
  for (;;) {
    const len = msg[i]
    if (len === undefined || len > 63) return undefined
    i++
    if (len === 0) break
    labels.push(msg.subarray(i, i + len).toString('ascii'))
    i += len
  }
  if (i + 4 > msg.length) return undefined
  return { id: msg.readUInt16BE(0), flags: msg.readUInt16BE(2), name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(i), end: i + 4 }
}

function reply(query: Buffer, q: { flags: number; end: number }, rcode: number, ipv4?: string): Buffer {
  const head = Buffer.from(query.subarray(0, q.end))
  // QR, authoritative, the client's opcode and RD kept, no recursion available
  head.writeUInt16BE(0x8000 | (q.flags & 0x7900) | 0x0400 | rcode, 2)
  head.writeUInt16BE(1, 4)
  head.writeUInt16BE(ipv4 ? 1 : 0, 6)
  head.writeUInt16BE(0, 8)
  head.writeUInt16BE(0, 10)
  if (!ipv4) return head
  const rr = Buffer.alloc(16)
  rr.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
  rr.writeUInt16BE(TYPE_A, 2)
  rr.writeUInt16BE(1, 4) // IN
  rr.writeUInt32BE(5, 6) // TTL 5 s
  rr.writeUInt16BE(4, 10)
  ipv4.split('.').forEach((o, k) => {
    rr.writeUInt8(Number(o), 12 + k)
  })
  return Buffer.concat([head, rr])
}

export async function startClusterDns(client: KubeClient, address: string, port = 53, domain = 'cluster.local'): Promise<ClusterDns> {
  const socket = dgram.createSocket('udp4')
  const queries: DnsQuery[] = []
  const serviceRe = new RegExp(`^([a-z0-9-]+)\\.([a-z0-9-]+)\\.svc\\.${domain.replace(/\./g, '\\.')}$`)
  const inZone = (name: string) => name === domain || name.endsWith(`.${domain}`)

  socket.on('message', (msg, rinfo) => {
    const q = question(msg)
    if (!q) return
    const send = (rcode: number, ip?: string) => {
      queries.push({ name: q.name, type: q.type, from: rinfo.address, ...(ip ? { answer: ip } : {}) })
      socket.send(reply(msg, q, rcode, ip), rinfo.port, rinfo.address)
    }
    if (!inZone(q.name)) return send(RCODE.refused)
    const m = serviceRe.exec(q.name)
    if (!m) return send(RCODE.nxdomain)
    client
      .get<{ spec?: { clusterIP?: string } }>(`/api/v1/namespaces/${m[2]}/services/${m[1]}`)
      .then((svc) => {
        const ip = svc.spec?.clusterIP
        if (!ip || ip === 'None') return send(RCODE.nxdomain)
        // A: the ClusterIP; any other type: the name exists, no data of that type
        send(RCODE.ok, q.type === TYPE_A ? ip : undefined)
      })
      .catch((err: { notFound?: boolean }) => send(err.notFound ? RCODE.nxdomain : RCODE.servfail))
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, address, () => {
      socket.off('error', reject)
      resolve()
    })
  })
  return {
    address,
    port: socket.address().port,
    queries,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  }
}
