// Certificates: what x509.ts makes, and every step of the self-managed rotation plan.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { type CertPolicy, type CertState, planCertificates, renewAt, splitPem } from '../../src/certs/plan.js'
import { stateOf } from '../../src/certs/self-managed.js'
import { createCA, crossSign, issueServing, randomSerial } from '../../src/certs/x509.js'

const HOUR = 3600_000
const policy: CertPolicy = {
  caValidityMs: 300 * HOUR,
  servingValidityMs: 30 * HOUR,
  caOverlapMs: 2 * HOUR,
  dnsNames: ['enlist.enlist-system.svc', 'enlist'],
  ipAddresses: ['127.0.0.1'],
}

t.test('x509: serials are positive, minimal DER integers, every time', async (t) => {
  // a zero first byte followed by one below 0x80 is padding DER forbids: OpenSSL then
  // refuses the whole certificate, so no draw may produce it
  let bad = 0
  const firsts = new Set<number>()
  for (let i = 0; i < 20_000; i++) {
    const s = randomSerial()
    if (s.length !== 16 || s[0]! === 0 || s[0]! >= 0x80) bad++
    firsts.add(s[0]!)
  }
  t.equal(bad, 0, 'no zero or negative first byte in 20000 draws')
  t.ok(firsts.size > 32, 'and still random in the first byte')
  const ca = await createCA({ commonName: 'serial-ca', validityMs: HOUR })
  t.match(new X509Certificate(ca.cert).serialNumber, /^[4-7][0-9A-F]{31}$/, 'a certificate carries all 16 bytes')
})

t.test('x509: a CA and a serving certificate Go and Node both accept', async (t) => {
  const ca = await createCA({ commonName: 'enlist-ca', validityMs: HOUR })
  const s = await issueServing({ ca, commonName: 'enlist', dnsNames: ['enlist.enlist-system.svc'], ipAddresses: ['127.0.0.1', '::1'], validityMs: HOUR })
  const cx = new X509Certificate(ca.cert)
  const sx = new X509Certificate(s.cert)
  t.ok(cx.ca, 'CA flag')
  t.notOk(sx.ca)
  t.ok(sx.checkIssued(cx) && sx.verify(cx.publicKey), 'signed by the CA')
  t.equal(sx.subjectAltName, 'DNS:enlist.enlist-system.svc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
  t.same(sx.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth')
  t.equal(cx.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256')
  t.ok(new Date(sx.validFrom).getTime() < Date.now() - 60_000, 'backdated against clock skew')
  t.doesNotThrow(() => tls.createSecureContext({ cert: s.cert, key: s.key }))
  t.not(sx.serialNumber, new X509Certificate((await issueServing({ ca, commonName: 'x', dnsNames: ['x'], validityMs: HOUR })).cert).serialNumber, 'random serials')
})

t.test('IPv6 and IPv4-mapped addresses: encoded right, and a certificate that has them is not re-issued', async (t) => {
  const { ipBytes, ipKey } = await import('../../src/lib/ip.js')
  const hex = (ip: string) => Buffer.from(ipBytes(ip)).toString('hex')
  t.equal(hex('10.0.0.1'), '0a000001')
  t.equal(hex('::ffff:10.0.0.1'), '00000000000000000000ffff0a000001', 'the IPv4 tail is four octets, not the group "10.0.0.1"')
  t.equal(hex('::10.0.0.1'), '0000000000000000000000000a000001')
  t.equal(hex('1:2:3:4:5:6:10.0.0.1'), '000100020003000400050006' + '0a000001')
  t.equal(hex('fd00::1'), 'fd000000000000000000000000000001')
  t.equal(hex('::'), '0'.repeat(32))
  t.equal(ipKey('FD00:0:0:0:0:0:0:1'), ipKey('fd00::1'), "OpenSSL's spelling is the same address")
  t.equal(ipKey('0:0:0:0:0:FFFF:A00:1'), ipKey('::ffff:10.0.0.1'))
  for (const bad of ['1::2::3', 'fe80::1%eth0', '10.0.0', 'x']) t.throws(() => ipBytes(bad), /not an IP address/, bad)

  const ips = ['fd00::1', '::ffff:10.0.0.1', '2001:db8::10', '10.0.0.1']
  const p: CertPolicy = { ...policy, ipAddresses: ips }
  const ca = await createCA({ commonName: 'v6-ca', validityMs: 300 * HOUR })
  const sv = await issueServing({ ca, commonName: 'enlist', dnsNames: p.dnsNames, ipAddresses: ips, validityMs: p.servingValidityMs })
  t.match(new X509Certificate(sv.cert).subjectAltName, /IP Address:0:0:0:0:0:FFFF:A00:1/, 'the mapped address as OpenSSL reads it')
  t.equal(planCertificates({ signing: ca, bundle: [ca.cert], serving: sv }, Date.now(), p), undefined, 'nothing to re-issue on the next check')
  t.match(planCertificates({ signing: ca, bundle: [ca.cert], serving: sv }, Date.now(), { ...p, ipAddresses: [...ips, 'fd00::2'] }), { kind: 'issue-serving', reason: 'the serving certificate lacks IP fd00::2' })
  t.match(planCertificates({ signing: ca, bundle: [ca.cert], serving: sv }, Date.now(), { ...p, dnsNames: ['enlist.enlist-system'] }), { kind: 'issue-serving' }, 'a DNS name is matched whole, not as a prefix of another')
})

t.test('the plan: from nothing to a CA and a certificate, then quiet', async (t) => {
  let s: CertState = { bundle: [] }
  const now = Date.now()
  t.match(planCertificates(s, now, policy), { kind: 'create-ca', reason: 'no CA yet' })
  const ca = await createCA({ commonName: 'ca1', validityMs: policy.caValidityMs })
  s = { ...s, signing: ca, bundle: [ca.cert] }
  t.match(planCertificates(s, now, policy), { kind: 'issue-serving', reason: 'no serving certificate yet' })
  const sv = await issueServing({ ca, commonName: 'enlist', dnsNames: policy.dnsNames, ipAddresses: policy.ipAddresses, validityMs: policy.servingValidityMs })
  s = { ...s, serving: sv }
  t.equal(planCertificates(s, now, policy), undefined, 'nothing to do')

  t.match(planCertificates(s, renewAt(sv.cert, policy.servingValidityMs) + 1, policy), { kind: 'issue-serving', reason: 'the serving certificate is due for renewal' })
  t.equal(planCertificates(s, renewAt(sv.cert, policy.servingValidityMs) - 60_000, policy), undefined, 'not before a third is left')
  t.match(planCertificates(s, now, { ...policy, dnsNames: [...policy.dnsNames, 'new.name'] }), { kind: 'issue-serving', reason: 'the serving certificate lacks DNS name new.name' })
  t.match(planCertificates(s, now, { ...policy, ipAddresses: ['10.0.0.1'] }), { kind: 'issue-serving', reason: 'the serving certificate lacks IP 10.0.0.1' })
  t.match(planCertificates({ ...s, serving: { cert: 'junk', key: 'junk' } }, now, policy), { kind: 'issue-serving', reason: 'the serving certificate does not parse' })
})

t.test('the plan: a CA rotation never serves a certificate its clients cannot verify', async (t) => {
  // A CA due within hours, serving certificates that are not: each step shows alone.
  const p: CertPolicy = { ...policy, caValidityMs: 3 * HOUR, servingValidityMs: 1000 * HOUR, caOverlapMs: 20 * 60_000 }
  const old = await createCA({ commonName: 'ca-old', validityMs: 3 * HOUR })
  const issue = (ca: { cert: string; key: string }) => issueServing({ ca, commonName: 'enlist', dnsNames: p.dnsNames, ipAddresses: p.ipAddresses, validityMs: p.servingValidityMs })
  let s: CertState = { signing: old, bundle: [old.cert], serving: await issue(old) }
  t.equal(planCertificates(s, Date.now(), p), undefined)
  const due = renewAt(old.cert, p.caValidityMs) + 1

  // 1. publish the new CA beside the old one; nothing signs with it yet
  t.match(planCertificates(s, due, p), { kind: 'publish-next-ca', reason: 'the CA is due for renewal' })
  const next = await createCA({ commonName: 'ca-new', validityMs: 300 * HOUR })
  s = { ...s, next: { ...next, publishedAt: due }, bundle: [next.cert, old.cert] }
  t.equal(planCertificates(s, due + 60_000, p), undefined, 'during the overlap the old CA keeps signing')
  t.equal(planCertificates(s, due + p.caOverlapMs - 1, p), undefined, 'until the overlap is over')

  // 2. after the overlap: promote (the old CA certifies the new one), then issue from the new CA
  const later = due + p.caOverlapMs
  t.match(planCertificates(s, later, p), { kind: 'promote-next-ca' })
  const cross = (await crossSign({ issuer: old, subject: next })).cert
  s = { ...s, signing: { cert: next.cert, key: next.key }, next: undefined, cross }
  t.match(planCertificates(s, later, p), { kind: 'issue-serving', reason: 'the serving certificate is not signed by the current CA' })
  const leaf = await issue(next)
  t.match(planCertificates({ ...s, serving: leaf }, later, p), { kind: 'issue-serving', reason: 'the serving chain lacks the cross-certificate from the previous CA' })
  s = { ...s, serving: { cert: leaf.cert + cross, key: leaf.key } }
  t.equal(planCertificates(s, later, p), undefined, 'both CAs stay trusted while the old one is valid')
  t.same(s.bundle, [next.cert, old.cert])

  // 3. once the old CA has expired, the serving chain drops its cross-certificate, and the bundle the CA
  const expired = new Date(new X509Certificate(old.cert).validTo).getTime() + 1
  t.match(planCertificates(s, expired, p), { kind: 'issue-serving', reason: 'the serving chain holds an expired cross-certificate' })
  s = { ...s, cross: undefined, serving: leaf }
  t.match(planCertificates(s, expired, p), { kind: 'prune-bundle', keep: [next.cert] })
})

t.test('a cross-certificate: registrars that still trust only the old CA verify the new server', async (t) => {
  const old = await createCA({ commonName: 'ca-old', validityMs: 10 * HOUR })
  const next = await createCA({ commonName: 'ca-new', validityMs: 100 * HOUR })
  const stranger = await createCA({ commonName: 'ca-other', validityMs: 10 * HOUR })
  const cross = await crossSign({ issuer: old, subject: next })
  const x = new X509Certificate(cross.cert)
  t.ok(x.checkIssued(new X509Certificate(old.cert)), 'signed by the old CA')
  t.equal(x.subject, new X509Certificate(next.cert).subject, 'names the new CA')
  t.ok(x.publicKey.equals(new X509Certificate(next.cert).publicKey), 'with its key')
  t.ok(x.ca)
  t.equal(x.validTo, new X509Certificate(old.cert).validTo, 'valid no longer than the old CA')

  const leaf = await issueServing({ ca: next, commonName: 'enlist', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityMs: HOUR })
  const server = https.createServer({ cert: leaf.cert + cross.cert, key: leaf.key }, (_req, res) => res.end('ok'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`
  const get = (ca: string) =>
    new Promise<string>((resolve) => {
      https.get(url, { ca, agent: false }, (res) => resolve(String(res.statusCode))).on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
  t.equal(await get(old.cert), '200', 'a registrar admitted before the rotation')
  t.equal(await get(next.cert), '200', 'a registrar admitted after it')
  t.equal(await get(old.cert + next.cert), '200', 'one admitted during the overlap')
  t.not(await get(stranger.cert), '200', 'no other CA')
})

t.test('the plan: an expired CA starts over; a missing signer is put back in the bundle', async (t) => {
  const ca = await createCA({ commonName: 'short', validityMs: HOUR })
  const after = new Date(new X509Certificate(ca.cert).validTo).getTime() + 1
  t.match(planCertificates({ signing: ca, bundle: [ca.cert] }, after, policy), { kind: 'create-ca', reason: 'the CA has expired' })
  const good = await createCA({ commonName: 'good', validityMs: policy.caValidityMs })
  const sv = await issueServing({ ca: good, commonName: 'e', dnsNames: policy.dnsNames, ipAddresses: policy.ipAddresses, validityMs: policy.servingValidityMs })
  t.match(planCertificates({ signing: good, bundle: [], serving: sv }, Date.now(), policy), { kind: 'prune-bundle', keep: [good.cert] })
})

t.test('the plan: a CA that expired with a successor published promotes it', async (t) => {
  const old = await createCA({ commonName: 'old', validityMs: HOUR })
  const next = await createCA({ commonName: 'next', validityMs: 100 * HOUR })
  const after = new Date(new X509Certificate(old.cert).validTo).getTime() + 1
  t.match(planCertificates({ signing: old, next: { ...next, publishedAt: after - 60_000 }, bundle: [next.cert, old.cert] }, after, policy), {
    kind: 'promote-next-ca',
    reason: 'the CA has expired; promoting the published one',
  })
})

t.test('the Secret layout round-trips', async (t) => {
  const ca = await createCA({ commonName: 'c', validityMs: HOUR })
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  const s = stateOf({
    metadata: { annotations: { 'enlist.io/ca-next-published-at': '2026-01-01T00:00:00.000Z' } },
    data: { 'ca.crt': b64(ca.cert + ca.cert), 'ca-signing.crt': b64(ca.cert), 'ca-signing.key': b64(ca.key), 'ca-next.crt': b64(ca.cert), 'ca-next.key': b64(ca.key), 'tls.crt': b64('c'), 'tls.key': b64('k') },
  })
  t.equal(s.bundle.length, 2)
  t.equal(s.next?.publishedAt, Date.parse('2026-01-01T00:00:00.000Z'))
  t.same(s.serving, { cert: 'c', key: 'k' })
  t.same(stateOf(undefined), { signing: undefined, next: undefined, bundle: [], cross: undefined, serving: undefined })
  t.same(splitPem('junk'), [])
})
