// What bounds an in-cluster client: rate limits, concurrency caps, token prechecks and
// the nesting check that runs before JSON.parse.
import t from 'tap'
import { createMetrics } from '../../src/metrics.js'
import pino from 'pino'
import { type AuthLimits, precheck, TokenAuthenticator } from '../../src/registration/auth.js'
import { TokenVerifier } from '../../src/registration/token-verifier.js'
import { issuer, mint } from '../helpers/jwt.js'
import { FakeKube, fakeToken } from '../helpers/fake-kube.js'
import { ConcurrencyLimit, FairQueue, KeyedBuckets, TokenBucket } from '../../src/lib/rate-limit.js'
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

// --- fairness: per-pod budgets and per-namespace turns, keyed by verified tokens ---------

function fairSetup(limits: Partial<AuthLimits>) {
  const kube = new FakeKube()
  const iss = issuer('k1')
  const verifier = new TokenVerifier({ fetchKeys: async () => ({ keys: [iss.jwk] }), log: pino({ level: 'silent' }) })
  const metrics = createMetrics({ defaultMetrics: false })
  const auth = new TokenAuthenticator(kube.client, metrics, { failuresPerSecond: 1000, failureBurst: 1000, ...limits }, verifier)
  let n = 0
  const token = (namespace: string, pod = `p${++n}`): string => {
    const tk = mint(iss, { namespace, pod, uid: `uid-${pod}` })
    kube.tokens.set(tk, { namespace, serviceAccount: 'orders', pod, uid: `uid-${pod}` })
    return tk
  }
  return { kube, auth, token, iss, metrics }
}

t.test('a flooding namespace does not take another\'s turns: reviews go round-robin by verified namespace (counted in order)', async (t) => {
  const { auth, token } = fairSetup({ reviewsPerSecond: 100, reviewBurst: 1, reviewQueueMs: 10_000, podReviewBurst: 100 })
  const order: string[] = []
  const flood = Array.from({ length: 20 }, () => token('evil'))
  const calm = [token('shop'), token('shop')]
  const ask = (tk: string) => auth.authenticate(`Bearer ${tk}`, '10.0.0.1').then((id) => order.push(id.namespace))
  const all = flood.map(ask)
  await new Promise((r) => setImmediate(r)) // the flood is queued first
  all.push(...calm.map(ask))
  await Promise.all(all)
  const turns = order.map((ns, i) => (ns === 'shop' ? i : -1)).filter((i) => i >= 0)
  t.equal(turns.length, 2)
  t.ok(turns[1]! <= 5, `shop's two reviews came at turns ${turns.join(', ')} of 22, not after the flood's 20`)
})

t.test('a pod minting tokens uses its own budget, not the cluster\'s: 429 past it, no review', async (t) => {
  const { kube, auth, token, metrics } = fairSetup({ reviewsPerSecond: 100, reviewBurst: 100, podReviewBurst: 3, podReviewsPerSecond: 0.01 })
  const minted = Array.from({ length: 10 }, () => token('evil', 'greedy'))
  const results = await Promise.all(minted.map((tk) => auth.authenticate(`Bearer ${tk}`, '10.0.0.9').then(() => 200, (e: { statusCode: number }) => e.statusCode)))
  t.same(results.filter((c) => c === 200).length, 3, 'the pod\'s burst')
  t.same(results.filter((c) => c === 429).length, 7, 'the rest: 429')
  t.equal(kube.callsTo('POST', /tokenreviews/).length, 3, 'only the pod\'s budget cost TokenReviews')
  t.equal((await auth.authenticate(`Bearer ${token('shop')}`, '10.0.0.9')).namespace, 'shop', 'another pod is reviewed at once')
  t.equal((await metrics.tokenReviews.get()).values.find((v) => v.labels.result === 'pod-throttled')?.value, 7)
})

t.test('a token not signed by the issuer is refused before the queue: no TokenReview, no namespace line', async (t) => {
  const { kube, auth } = fairSetup({})
  const forger = issuer('k1')
  const forged = mint(forger, { namespace: 'shop' })
  kube.tokens.set(forged, { namespace: 'evil', serviceAccount: 'x', pod: 'p', uid: 'u' })
  const err = await auth.authenticate(`Bearer ${forged}`, '10.0.0.7').then(() => undefined, (e: { statusCode: number; message: string }) => e)
  t.match(err, { statusCode: 401, message: /signature does not verify/ })
  t.equal(kube.callsTo('POST', /tokenreviews/).length, 0)
})

t.test('a fair queue: one turn per waiting key in rotation; when full, the longest line gives way', async (t) => {
  let now = 0
  const q = new FairQueue(new TokenBucket(1, 1, () => now), 60_000, 6)
  const order: string[] = []
  const take = (key: string) => q.turn(key).then((r) => order.push(r === true ? key : `${key}:${r}`))
  const waits = [take('a'), take('a'), take('a'), take('a'), take('a'), take('b'), take('c')]
  await Promise.resolve()
  t.same(order, ['a'], 'the first takes the burst')
  waits.push(take('d'), take('d'))
  await new Promise((r) => setImmediate(r))
  t.same(order.slice(1), ['a:full', 'a:full'], 'full: the newest of the longest line (a) made room for each d')
  for (let i = 0; i < 6; i++) {
    now += 1000
    q.pump()
  }
  await Promise.all(waits)
  t.same(order.slice(3), ['a', 'b', 'c', 'd', 'a', 'd'], 'one turn per key in rotation')
})
