// IP addresses as the bytes a certificate carries (RFC 5280 iPAddress: 4 or 16 octets),
// so that addresses compare however they are written: `fd00::1`, `FD00:0:0:0:0:0:0:1`
// (OpenSSL's form) and `::ffff:10.0.0.1` / `0:0:0:0:0:FFFF:A00:1` are each one address.

import { isIP } from 'node:net'

/** The address's octets; throws for anything but a plain IPv4 or IPv6 address. */
export function ipBytes(ip: string): Uint8Array {
  const v = isIP(ip)
  if (v === 4) return Uint8Array.from(ip.split('.').map(Number))
  if (v !== 6 || ip.includes('%')) throw new Error(`not an IP address: ${ip}`)
  let s = ip
  const tail: number[] = []
  // the last 32 bits may be written as IPv4 (::ffff:10.0.0.1)
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (dotted) {
    const b = dotted[2]!.split('.').map(Number) as [number, number, number, number]
    tail.push((b[0] << 8) | b[1], (b[2] << 8) | b[3])
    s = dotted[1]!.endsWith('::') ? dotted[1]! : dotted[1]!.slice(0, -1)
  }
  const double = s.indexOf('::')
  const head = double === -1 ? s : s.slice(0, double)
  const rest = double === -1 ? '' : s.slice(double + 2)
  const h = head ? head.split(':') : []
  const t = rest ? rest.split(':') : []
  const fill = double === -1 ? 0 : 8 - tail.length - h.length - t.length
  const groups = [...h.map((g) => parseInt(g, 16)), ...Array<number>(fill).fill(0), ...t.map((g) => parseInt(g, 16)), ...tail]
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) throw new Error(`not an IP address: ${ip}`)
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8
    out[i * 2 + 1] = g & 0xff
  })
  return out
}

/** A canonical key for comparing addresses: their octets in hex. */
export function ipKey(ip: string): string {
  return Buffer.from(ipBytes(ip)).toString('hex')
}
