// What bounds an in-cluster client: rate limits, concurrency caps, token prechecks and
// the nesting check that runs before JSON.parse.
import t from 'tap'
import { identityOf, precheck } from '../../src/registration/auth.js'
import { ConcurrencyLimit, KeyedBuckets, TokenBucket } from '../../src/lib/rate-limit.js'
import { nestingExceeds } from '../../src/server/routes/mutate.js'

t.test('a token bucket: a burst, then the rate', async (t) => {
  let now = 0
  const b = new TokenBucket(2, 3, () => now)
  t.same([b.take(), b.take(), b.take(), b.take()], [true, true, true, false], 'the burst')
  t.equal(b.waitSeconds(), 1)
  now += 500
  t.ok(b.take(), 'half a second later: one more at 2/s')
  t.notOk(b.take())
  now += 10_000
  t.same([b.take(), b.take(), b.take(), b.take()], [true, true, true, false], 'never more than the burst')
})

t.test('buckets per key stay bounded in memory', async (t) => {
  let now = 0
  const k = new KeyedBuckets(1, 2, 3, () => now)
  t.same([k.take('a'), k.take('a'), k.take('a')], [true, true, false])
  t.notOk(k.has('a'))
  t.ok(k.has('b'), 'an unknown key has tokens')
  for (const key of ['b', 'c', 'd']) k.take(key)
  t.ok(k.has('a'), 'the least recently used key was dropped past the bound')
  now += 1000
  t.ok(k.has('d'))
})

t.test('a concurrency limit, in all and per key', async (t) => {
  const l = new ConcurrencyLimit(3, 2)
  const a1 = l.acquire('a')
  const a2 = l.acquire('a')
  t.equal(l.acquire('a'), 'key')
  const b1 = l.acquire('b')
  t.equal(l.acquire('c'), 'total')
  t.equal(l.inUse, 3)
  if (typeof a1 !== 'function' || typeof a2 !== 'function' || typeof b1 !== 'function') throw new Error('expected slots')
  a1()
  a1() // releasing twice releases once
  t.equal(l.inUse, 2)
  t.type(l.acquire('c'), 'function')
  t.equal(l.acquire('d'), 'total')
})

const jwt = (claims: Record<string, unknown>) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`

t.test('tokens that cannot be for enlist are refused without a TokenReview', async (t) => {
  const now = Date.parse('2026-11-23T12:00:00Z')
  const exp = now / 1000 + 600
  t.equal(precheck(jwt({ aud: ['enlist'], exp }), now), undefined)
  t.equal(precheck(jwt({ aud: 'enlist', exp }), now), undefined, 'aud may be a string')
  t.match(precheck('abc', now), /not a JWT/)
  t.match(precheck('a.b!.c', now), /not a JWT/)
  t.match(precheck(`a.${Buffer.from('nope').toString('base64url')}.c`, now), /claims are not JSON/)
  t.match(precheck(jwt({ aud: ['https://kubernetes.default.svc'], exp }), now), /not for audience enlist/)
  t.match(precheck(jwt({ exp }), now), /not for audience enlist/)
  t.match(precheck(jwt({ aud: ['enlist'], exp: now / 1000 - 3600 }), now), /expired/)
  t.equal(precheck(jwt({ aud: ['enlist'], exp: now / 1000 - 30 }), now), undefined, 'a little clock skew is allowed')
  t.match(precheck(jwt({ aud: ['enlist'], exp, nbf: now / 1000 + 3600 }), now), /not valid yet/)
  t.match(precheck('x'.repeat(9000), now), /too long/)
})

t.test('a TokenReview is a pass only with the audience named and a pod bound', async (t) => {
  const user = {
    username: 'system:serviceaccount:shop:default',
    extra: { 'authentication.kubernetes.io/pod-name': ['p'], 'authentication.kubernetes.io/pod-uid': ['u'] },
  }
  t.same(identityOf({ authenticated: true, audiences: ['enlist'], user }), { namespace: 'shop', serviceAccount: 'default', pod: 'p', uid: 'u' })
  t.equal(identityOf({ authenticated: true, user }), 'token is not for audience enlist', 'no audiences in the answer: not a pass')
  t.equal(identityOf({ authenticated: true, audiences: ['other'], user }), 'token is not for audience enlist')
  t.equal(identityOf({ authenticated: false, error: 'token for uid 1234 is invalid', audiences: ['enlist'] }), 'token rejected by the apiserver', 'the apiserver\'s reason is not passed on')
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'alice' } }), /not a service-account token/)
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: user.username } }), /not bound to a pod/)
})

t.test('nesting is measured outside strings', async (t) => {
  t.notOk(nestingExceeds('{"a":[1,{"b":[]}]}', 4))
  t.ok(nestingExceeds('{"a":[1,{"b":[[]]}]}', 4))
  t.notOk(nestingExceeds(JSON.stringify({ s: '[[[[[[[[[[{{{{{{{{' }), 3), 'brackets in a string do not count')
  t.notOk(nestingExceeds(JSON.stringify({ s: 'a\\"[[[[[[[[' }), 3), 'nor after an escaped quote')
  t.notOk(nestingExceeds(JSON.stringify({ s: 'a\\\\', t: '[[[[[[' }), 3), 'an escaped backslash ends a string properly')
  t.ok(nestingExceeds('['.repeat(100_000) + ']'.repeat(100_000), 64))
  const pod = JSON.stringify({ kind: 'AdmissionReview', request: { object: { spec: { containers: [{ env: [{ valueFrom: { fieldRef: { fieldPath: 'x' } } }] }] } } } })
  t.notOk(nestingExceeds(pod, 64), 'a real review is far below the limit')
})
