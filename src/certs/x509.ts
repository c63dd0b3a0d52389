// ECDSA P-256 certificate authorities and serving certificates, made with pkijs (Node
// can parse X.509 but not write it). Used by `enlist certs`, self-managed mode and tests.

import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto'
import { ipBytes as ipOctets } from '../lib/ip.js'
import * as asn1js from 'asn1js'
import * as pkijs from 'pkijs'

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
// pkijs is typed against the DOM's Crypto; Node's webcrypto is the same API.
type PkiKey = Parameters<pkijs.Certificate['sign']>[0]
type PkiCrypto = ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto']
let engineSet = false

function engine(): void {
  if (engineSet) return
  pkijs.setEngine('node', new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as PkiCrypto }))
  engineSet = true
}

export interface IssuedCertificate {
  cert: string
  key: string
  notBefore: Date
  notAfter: Date
}

export interface CaOptions {
  commonName: string
  validityMs: number
  /** Backdated, so that clocks a little behind still accept the certificate. */
  backdateMs?: number
}

export interface ServingOptions {
  ca: { cert: string; key: string }
  commonName: string
  dnsNames: readonly string[]
  ipAddresses?: readonly string[]
  validityMs: number
  backdateMs?: number
  /** Also valid for client authentication (the apiserver's own test certificates). */
  clientAuth?: boolean
}

const OID = {
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
}

// KeyUsage bits, most significant first: digitalSignature(0) ... keyCertSign(5), cRLSign(6).
const DIGITAL_SIGNATURE = 0x80
const KEY_CERT_SIGN = 0x04
const CRL_SIGN = 0x02

export async function createCA(o: CaOptions): Promise<IssuedCertificate> {
  engine()
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await base(o.commonName, o.commonName, o.validityMs, o.backdateMs, keys.publicKey)
  const ski = await keyId(cert)
  cert.extensions = [
    // One CA below it: the cross-certificate that vouches for its successor (crossSign).
    ext(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: true, pathLenConstraint: 1 }).toSchema()),
    ext(OID.keyUsage, true, keyUsage(DIGITAL_SIGNATURE | KEY_CERT_SIGN | CRL_SIGN)),
    ext(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: ski })),
  ]
  await cert.sign(keys.privateKey as unknown as PkiKey, 'SHA-256')
  return finish(cert, keys.privateKey)
}

export async function issueServing(o: ServingOptions): Promise<IssuedCertificate> {
  engine()
  const caX509 = new X509Certificate(o.ca.cert)
  const caCert = pkijs.Certificate.fromBER(caX509.raw)
  const caKey = await webcrypto.subtle.importKey('pkcs8', pemToDer(createPrivateKey(o.ca.key).export({ type: 'pkcs8', format: 'pem' }).toString()), ALG, false, ['sign'])
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await base(o.commonName, commonNameOf(caCert), o.validityMs, o.backdateMs, keys.publicKey)
  cert.issuer = caCert.subject

  const names = [
    ...o.dnsNames.map((value) => new pkijs.GeneralName({ type: 2, value })),
    ...(o.ipAddresses ?? []).map((ip) => new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: ipBytes(ip) }) })),
  ]
  const usages = [OID.serverAuth, ...(o.clientAuth ? [OID.clientAuth] : [])]
  cert.extensions = [
    ext(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: false }).toSchema()),
    ext(OID.keyUsage, true, keyUsage(DIGITAL_SIGNATURE)),
    ext(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: usages }).toSchema()),
    ext(OID.subjectAltName, false, new pkijs.GeneralNames({ names }).toSchema()),
    ext(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: await keyId(cert) })),
    ext(OID.authorityKeyId, false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: await keyId(caCert) }) }).toSchema()),
  ]
  await cert.sign(caKey as unknown as PkiKey, 'SHA-256')
  return finish(cert, keys.privateKey)
}

/**
 * The CA `subject` certified by the CA `issuer` (a cross-certificate): same subject name,
 * key and key identifier as `subject`, signed by `issuer`, valid while both are. A server
 * that presents it after its leaf is verified by clients that trust either CA: those that
 * trust `subject` stop at it, those that still trust only `issuer` chain through it.
 */
export async function crossSign(o: { issuer: { cert: string; key: string }; subject: { cert: string }; backdateMs?: number }): Promise<IssuedCertificate> {
  engine()
  const issuer = pkijs.Certificate.fromBER(new X509Certificate(o.issuer.cert).raw)
  const subject = pkijs.Certificate.fromBER(new X509Certificate(o.subject.cert).raw)
  const issuerKey = await webcrypto.subtle.importKey('pkcs8', pemToDer(createPrivateKey(o.issuer.key).export({ type: 'pkcs8', format: 'pem' }).toString()), ALG, false, ['sign'])
  const cert = new pkijs.Certificate()
  cert.version = 2
  cert.serialNumber = new asn1js.Integer({ valueHex: randomSerial() })
  cert.subject = subject.subject
  cert.issuer = issuer.subject
  cert.subjectPublicKeyInfo = subject.subjectPublicKeyInfo
  cert.notBefore.value = new Date(Math.floor((Date.now() - (o.backdateMs ?? 5 * 60_000)) / 1000) * 1000)
  cert.notAfter.value = new Date(Math.min(issuer.notAfter.value.getTime(), subject.notAfter.value.getTime()))
  cert.extensions = [
    ext(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: true, pathLenConstraint: 0 }).toSchema()),
    ext(OID.keyUsage, true, keyUsage(DIGITAL_SIGNATURE | KEY_CERT_SIGN | CRL_SIGN)),
    ext(OID.subjectKeyId, false, new asn1js.OctetString({ valueHex: await keyId(subject) })),
    ext(OID.authorityKeyId, false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: await keyId(issuer) }) }).toSchema()),
  ]
  await cert.sign(issuerKey as unknown as PkiKey, 'SHA-256')
  const der = Buffer.from(cert.toSchema(true).toBER(false))
  return { cert: toPem('CERTIFICATE', der), key: '', notBefore: cert.notBefore.value, notAfter: cert.notAfter.value }
}

/**
 * 126 random bits as the content of a DER INTEGER: positive (high bit clear) and minimal
 * (first byte not zero). A zero first byte before one below 0x80 is padding that DER
 * forbids, and OpenSSL rejects such a certificate ("illegal padding"): one in 256 would be.
 */
export function randomSerial(): Buffer {
  const serial = randomBytes(16)
  serial[0] = 0x40 | (serial[0]! & 0x3f)
  return serial
}

async function base(subject: string, issuer: string, validityMs: number, backdateMs = 5 * 60_000, publicKey: webcrypto.CryptoKey): Promise<pkijs.Certificate> {
  const cert = new pkijs.Certificate()
  cert.version = 2
  cert.serialNumber = new asn1js.Integer({ valueHex: randomSerial() })
  cert.subject.typesAndValues.push(new pkijs.AttributeTypeAndValue({ type: OID.commonName, value: new asn1js.Utf8String({ value: subject }) }))
  cert.issuer.typesAndValues.push(new pkijs.AttributeTypeAndValue({ type: OID.commonName, value: new asn1js.Utf8String({ value: issuer }) }))
  const now = Date.now()
  cert.notBefore.value = new Date(Math.floor((now - backdateMs) / 1000) * 1000)
  cert.notAfter.value = new Date(Math.floor((now + validityMs) / 1000) * 1000)
  await cert.subjectPublicKeyInfo.importKey(publicKey as unknown as PkiKey)
  return cert
}

async function finish(cert: pkijs.Certificate, privateKey: webcrypto.CryptoKey): Promise<IssuedCertificate> {
  const der = Buffer.from(cert.toSchema(true).toBER(false))
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', privateKey))
  return {
    cert: toPem('CERTIFICATE', der),
    key: toPem('PRIVATE KEY', pkcs8),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
  }
}

async function keyId(cert: pkijs.Certificate): Promise<ArrayBuffer> {
  const spki = cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView
  return webcrypto.subtle.digest('SHA-1', spki)
}

function ext(extnID: string, critical: boolean, value: asn1js.AsnType): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER(false) })
}

function keyUsage(bits: number): asn1js.BitString {
  // DER: trailing zero bits are unused bits.
  let unused = 0
  while (unused < 7 && ((bits >> unused) & 1) === 0) unused++
  return new asn1js.BitString({ valueHex: new Uint8Array([bits]).buffer, unusedBits: unused })
}

function commonNameOf(cert: pkijs.Certificate): string {
  const cn = cert.subject.typesAndValues.find((t) => t.type === OID.commonName)
  return cn ? String((cn.value as { valueBlock: { value: string } }).valueBlock.value) : ''
}

function ipBytes(ip: string): ArrayBuffer {
  const b = ipOctets(ip)
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer
}

function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}

function pemToDer(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----(BEGIN|END) [^-]+-----/g, '').replace(/\s+/g, '')
  const buf = Buffer.from(b64, 'base64')
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer
}
