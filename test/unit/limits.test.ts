// What bounds an in-cluster client: rate limits, concurrency caps, token prechecks and
// the nesting check that runs before JSON.parse.
import t from 'tap'
import { createMetrics } from '../../src/metrics.js'
import { precheck, TokenAuthenticator } from '../../src/registration/auth.js'
import { FakeKube, fakeToken } from '../helpers/fake-kube.js'
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

t.test('a reservation queues in order, up to a bound, and past it reserves nothing', async (t) => {
  let now = 0
  const b = new TokenBucket(10, 2, () => now)
  t.same([b.reserve(0), b.reserve(0)], [0, 0], 'the burst: no wait')
  t.equal(b.reserve(0), undefined, 'no token now and no waiting allowed: refused')
  t.equal(b.reserve(1000), 100, 'the next token is 100 ms away at 10/s')
  t.equal(b.reserve(1000), 200, 'the one after queues behind it')
  t.equal(b.reserve(150), undefined, 'a caller who will not wait 300 ms gets nothing')
  t.equal(b.reserve(1000), 300, '...and took no place in the queue')
  now += 300
  t.equal(b.reserve(0), undefined, 'the reserved tokens are spent when they come')
  now += 100
  t.equal(b.reserve(0), 0)
})

t.test('new tokens past the review rate queue briefly, then get 429', async (t) => {
  const kube = new FakeKube()
  const auth = new TokenAuthenticator(kube.client, createMetrics(), { reviewsPerSecond: 10, reviewBurst: 1, reviewQueueMs: 250, failuresPerSecond: 100, failureBurst: 100 })
  const tokens = Array.from({ length: 5 }, (_, i) => {
    const token = fakeToken(`p${i}`)
    kube.tokens.set(token, { namespace: 'shop', serviceAccount: 'default', pod: `p${i}`, uid: `u${i}` })
    return token
  })
  const started = Date.now()
  const results = await Promise.all(tokens.map((tk) => auth.authenticate(`Bearer ${tk}`, '10.0.0.1').then((id) => ({ ok: id.pod, ms: Date.now() - started }), (err: { statusCode?: number; retryAfterSeconds?: number }) => ({ status: err.statusCode, retryAfter: err.retryAfterSeconds }))))
  t.same(results.slice(0, 3).map((r) => 'ok' in r && r.ok), ['p0', 'p1', 'p2'], 'the burst, then two that fit in the 250 ms queue at 10/s')
  t.ok('ms' in results[2]! && results[2].ms >= 150, 'the third waited for its turn (about 200 ms)')
  t.same(results.slice(3), [{ status: 429, retryAfter: 1 }, { status: 429, retryAfter: 1 }], 'the rest: 429 with Retry-After, not an unbounded queue')
  t.equal(kube.callsTo('POST', /tokenreviews/).length, 3, 'only the admitted tokens cost a TokenReview')
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

// what a TokenReview answer must say to be a pass: test/unit/token-identity.test.ts

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
