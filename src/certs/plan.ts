// Self-managed certificates, decided purely: given what the Secret holds and the time,
// what must change. A serving certificate is renewed when a third of its life is left; a
// CA likewise, but in two steps, so that no request ever fails: the new CA is first
// published beside the old one (the webhook's caBundle and new pods' registrars trust
// both), and only after an overlap does a serving certificate signed by it go live.
//
// Pods keep the CA bundle they were admitted with (in the registrar's env), and their
// init container may run again long after a rotation. So when the new CA takes over, the
// old one also certifies it (a cross-certificate), and the server presents that after its
// leaf for as long as the old CA is valid: registrars that trust only the old CA still
// verify the server.

import { X509Certificate } from 'node:crypto'
import { ipKey } from '../lib/ip.js'

export interface CertState {
  /** The CA that signs serving certificates now. */
  signing?: { cert: string; key: string }
  /** A CA published but not yet signing, and since when. */
  next?: { cert: string; key: string; publishedAt: number }
  /** The trust bundle: every CA cert clients should accept, newest first. */
  bundle: string[]
  /** The signing CA certified by the CA it replaced, while that one is valid. */
  cross?: string
  /** The leaf, followed by `cross` when there is one. */
  serving?: { cert: string; key: string }
}

export interface CertPolicy {
  caValidityMs: number
  servingValidityMs: number
  /** How long a new CA is trusted before anything is signed with it. */
  caOverlapMs: number
  dnsNames: readonly string[]
  ipAddresses: readonly string[]
}

export type CertAction =
  | { kind: 'create-ca'; reason: string }
  | { kind: 'publish-next-ca'; reason: string }
  | { kind: 'promote-next-ca'; reason: string }
  | { kind: 'issue-serving'; reason: string }
  | { kind: 'prune-bundle'; keep: string[]; reason: string }

/** Renew when less than a third of the validity is left (cert-manager's default too). */
export function renewAt(certPem: string, validityMs: number): number {
  return new Date(new X509Certificate(certPem).validTo).getTime() - validityMs / 3
}

export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((c) => c.trim() + '\n') ?? []
}

/** What to do next; at most one step per call, so each is persisted before the next. */
export function planCertificates(s: CertState, now: number, p: CertPolicy): CertAction | undefined {
  if (!s.signing || !valid(s.signing.cert, now)) {
    // a published successor is already trusted by every client: better than starting over
    if (s.next && valid(s.next.cert, now)) return { kind: 'promote-next-ca', reason: 'the CA has expired; promoting the published one' }
    return { kind: 'create-ca', reason: s.signing ? 'the CA has expired' : 'no CA yet' }
  }
  if (s.next && now - s.next.publishedAt >= p.caOverlapMs) return { kind: 'promote-next-ca', reason: 'the new CA has been trusted long enough' }
  if (!s.next && now >= renewAt(s.signing.cert, p.caValidityMs)) return { kind: 'publish-next-ca', reason: 'the CA is due for renewal' }
  const why = servingProblem(s, now, p)
  if (why) return { kind: 'issue-serving', reason: why }
  const keep = s.bundle.filter((c) => valid(c, now))
  for (const must of [s.signing.cert, s.next?.cert]) if (must && !keep.some((c) => same(c, must))) keep.unshift(must)
  if (keep.length !== s.bundle.length || keep.some((c, i) => !same(c, s.bundle[i]!))) return { kind: 'prune-bundle', keep, reason: 'expired or missing CAs in the trust bundle' }
  return undefined
}

function servingProblem(s: CertState, now: number, p: CertPolicy): string | undefined {
  if (!s.serving) return 'no serving certificate yet'
  let x: X509Certificate
  try {
    x = new X509Certificate(s.serving.cert)
  } catch {
    return 'the serving certificate does not parse'
  }
  if (!x.checkIssued(new X509Certificate(s.signing!.cert))) return 'the serving certificate is not signed by the current CA'
  const chain = splitPem(s.serving.cert)
  const cross = s.cross && valid(s.cross, now) ? s.cross : undefined
  if (cross && !chain.slice(1).some((c) => same(c, cross))) return 'the serving chain lacks the cross-certificate from the previous CA'
  if (chain.slice(1).some((c) => !valid(c, now))) return 'the serving chain holds an expired cross-certificate'
  if (now >= renewAt(s.serving.cert, p.servingValidityMs)) return 'the serving certificate is due for renewal'
  const { dns, ips } = subjectAltNames(x)
  for (const n of p.dnsNames) if (!dns.has(n.toLowerCase())) return `the serving certificate lacks DNS name ${n}`
  for (const ip of p.ipAddresses) if (!ips.has(ipKey(ip))) return `the serving certificate lacks IP ${ip}`
  return undefined
}

/** The certificate's DNS names (lowercase) and IP addresses (as ipKey), parsed from
 *  OpenSSL's text ("DNS:a, IP Address:FD00:0:0:0:0:0:0:1"): never compared as text. */
export function subjectAltNames(x: X509Certificate): { dns: Set<string>; ips: Set<string> } {
  const dns = new Set<string>()
  const ips = new Set<string>()
  for (const part of (x.subjectAltName ?? '').split(/,\s*/)) {
    if (part.startsWith('DNS:')) dns.add(part.slice(4).toLowerCase())
    else if (part.startsWith('IP Address:')) {
      try {
        ips.add(ipKey(part.slice('IP Address:'.length)))
      } catch {
        // not an address we could have asked for
      }
    }
  }
  return { dns, ips }
}

function valid(pem: string, now: number): boolean {
  try {
    return new Date(new X509Certificate(pem).validTo).getTime() > now
  } catch {
    return false
  }
}

function same(a: string, b: string): boolean {
  return a.trim() === b.trim()
}
