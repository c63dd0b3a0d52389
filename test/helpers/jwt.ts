// Service-account tokens as the apiserver signs them, and its issuer's JWKS, for tests of
// local token verification.
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto'

export interface Issuer {
  kid: string
  alg: 'RS256' | 'ES256'
  privateKey: KeyObject
  jwk: Record<string, unknown>
}

export function issuer(kid: string, alg: 'RS256' | 'ES256' = 'RS256'): Issuer {
  const { privateKey, publicKey } = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { kid, alg, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg } }
}

/** A bound token as the apiserver mints it (TokenRequest with a pod boundObjectRef). */
export function mint(iss: Issuer, o: { namespace?: string; pod?: string; uid?: string; sa?: string; aud?: string[]; exp?: number; nbf?: number; kid?: string; alg?: string } = {}): string {
  const now = Math.floor(Date.now() / 1000)
  const ns = o.namespace ?? 'shop'
  const sa = o.sa ?? 'orders'
  const part = (x: object): string => Buffer.from(JSON.stringify(x)).toString('base64url')
  const head = part({ alg: o.alg ?? iss.alg, kid: o.kid ?? iss.kid })
  const body = part({
    aud: o.aud ?? ['enlist'],
    exp: o.exp ?? now + 3600,
    iat: now,
    nbf: o.nbf ?? now,
    iss: 'https://kubernetes.default.svc',
    sub: `system:serviceaccount:${ns}:${sa}`,
    'kubernetes.io': { namespace: ns, pod: { name: o.pod ?? 'orders-1', uid: o.uid ?? 'u-1' }, serviceaccount: { name: sa, uid: 'sa-1' } },
  })
  const data = Buffer.from(`${head}.${body}`)
  const sig = iss.alg === 'ES256' ? sign('sha256', data, { key: iss.privateKey, dsaEncoding: 'ieee-p1363' }) : sign('sha256', data, iss.privateKey)
  return `${head}.${body}.${sig.toString('base64url')}`
}
