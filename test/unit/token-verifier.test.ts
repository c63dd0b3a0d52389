// Local verification of service-account tokens against the issuer's keys (JWKS): what is
// accepted, what is refused without a TokenReview, and how the keys are fetched.
import t from 'tap'
import pino from 'pino'
import { KubeApiError } from '../../src/kube/client.js'
import { EnlistError } from '../../src/lib/errors.js'
import { TokenVerifier } from '../../src/registration/token-verifier.js'
import { issuer, mint } from '../helpers/jwt.js'

const log = pino({ level: 'silent' })

async function refused(p: Promise<unknown>): Promise<EnlistError> {
  const e = await p.then(() => undefined, (x: unknown) => x)
  if (!(e instanceof EnlistError)) throw new Error(`expected a refusal, got ${String(e)}`)
  return e
}

t.test('RS256 and ES256 tokens of the issuer verify; their pod and namespace are facts', async (t) => {
  const rsa = issuer('r1')
  const ec = issuer('e1', 'ES256')
  const v = new TokenVerifier({ fetchKeys: async () => ({ keys: [rsa.jwk, ec.jwk] }), log })
  t.match(await v.verify(mint(rsa, { namespace: 'shop', pod: 'p', uid: 'u' })), { verified: { namespace: 'shop', serviceAccount: 'orders', pod: 'p', uid: 'u' } })
  t.match(await v.verify(mint(ec, { namespace: 'bank' })), { verified: { namespace: 'bank' } })
  t.equal(v.mode, 'jwks')
})

t.test('forged, altered, foreign or out-of-date tokens are refused (401)', async (t) => {
  const rsa = issuer('r1')
  const other = issuer('r1') // the same kid, another key: a forger's
  const v = new TokenVerifier({ fetchKeys: async () => ({ keys: [rsa.jwk] }), log })
  const good = mint(rsa, { namespace: 'shop' })
  const [h, b, s] = good.split('.') as [string, string, string]
  const claims = JSON.parse(Buffer.from(b, 'base64url').toString()) as Record<string, unknown>
  const moved = Buffer.from(JSON.stringify({ ...claims, 'kubernetes.io': { namespace: 'bank', pod: { name: 'p', uid: 'u' }, serviceaccount: { name: 'orders' } }, sub: 'system:serviceaccount:bank:orders' })).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  const cases: Array<[string, string, RegExp]> = [
    ['signed by another key', mint(other, { namespace: 'bank' }), /signature does not verify/],
    ['claims altered (namespace moved)', `${h}.${moved}.${s}`, /signature does not verify/],
    ['alg none', `${Buffer.from('{"alg":"none","kid":"r1"}').toString('base64url')}.${b}.`, /algorithm/],
    ['HS256 (a key confusion attempt)', `${Buffer.from('{"alg":"HS256","kid":"r1"}').toString('base64url')}.${b}.${s}`, /algorithm/],
    ['ES256 header on an RSA key', mint(rsa, { alg: 'ES256' }), /does not match its key|signature/],
    ['another audience', mint(rsa, { aud: ['https://kubernetes.default.svc'] }), /not for audience enlist/],
    ['expired', mint(rsa, { exp: now - 3600 }), /expired/],
    ['not yet valid', mint(rsa, { nbf: now + 3600 }), /not valid yet/],
  ]
  for (const [what, token, message] of cases) {
    const e = await refused(v.verify(token))
    t.equal(e.statusCode, 401, `${what}: 401`)
    t.match(e.message, message, `${what}: says why`)
  }
})

t.test('an unknown kid fetches the keys again, at most once per interval', async (t) => {
  const k1 = issuer('k1')
  const k2 = issuer('k2')
  let served = [k1.jwk]
  let fetches = 0
  let now = Date.now()
  const v = new TokenVerifier({ fetchKeys: async () => (fetches++, { keys: served }), log, refreshIntervalMs: 10_000, now: () => now })
  await v.verify(mint(k1))
  t.equal(fetches, 1)
  served = [k1.jwk, k2.jwk] // rotated: a new key appears
  now += 10_000
  t.match(await v.verify(mint(k2)), { verified: {} }, 'the new key is fetched when a token names it')
  t.equal(fetches, 2)
  const stranger = issuer('nobody')
  for (let i = 0; i < 20; i++) await refused(v.verify(mint(stranger)))
  t.equal(fetches, 2, 'a flood of made-up kids costs no fetch within the interval')
  now += 10_000
  t.equal((await refused(v.verify(mint(stranger)))).statusCode, 401)
  t.equal(fetches, 3, 'then one')
})

t.test('an apiserver without the JWKS: unsupported, a note, TokenReview alone; never a pass for a bad token', async (t) => {
  for (const status of [404, 403]) {
    const v = new TokenVerifier({ fetchKeys: async () => Promise.reject(new KubeApiError(status, 'NotFound', 'no', 'GET', '/openid/v1/jwks')), log })
    t.same(await v.verify(mint(issuer('x'))), { why: 'unsupported' }, `${status}: not verified here, for TokenReview to judge`)
    t.equal(v.mode, 'unsupported')
    t.match(v.note(), /does not serve \/openid\/v1\/jwks/)
  }
  const rsa = issuer('r1')
  let up = true
  let now = Date.now()
  const v = new TokenVerifier({ fetchKeys: async () => (up ? { keys: [rsa.jwk] } : Promise.reject(new Error('connect ECONNREFUSED'))), log, refreshIntervalMs: 1, now: () => now })
  await v.verify(mint(rsa))
  up = false
  now += 1000
  t.equal((await refused(v.verify(mint(issuer('r2'))))).statusCode, 401, 'keys held, the apiserver unreachable: an unknown key is still refused')
  t.match(await v.verify(mint(rsa)), { verified: {} }, 'and known keys still verify')
})
