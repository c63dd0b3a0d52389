// The server over real TLS on loopback: reviews in and out, bad input, non-pod kinds,
// health and metrics, certificate rotation under load, and draining on shutdown.
import t from 'tap'
import https from 'node:https'
import tls from 'node:tls'
import { makePod } from '../helpers/fixtures.js'
import { request, serialOf } from '../helpers/https.js'
import { reviewBody, startTestServer } from '../helpers/server.js'
import { buildMetricsServer, parseBindAddress } from '../../src/server/app.js'
import Fastify from 'fastify'
import { mutateRoutes } from '../../src/server/routes/mutate.js'
import { createMetrics } from '../../src/metrics.js'
import { PolicyStore } from '../../src/policy/source.js'
import { silentLogger } from '../../src/log.js'
import { testKeys } from '../helpers/keys.js'

const pod = makePod({ metadata: { generateName: 'web-', namespace: 'shop', labels: { app: 'web' } } })

t.test('AdmissionReview in, AdmissionReview out', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const res = await request(`${s.url}/mutate?timeout=10s`, { method: 'POST', body: reviewBody(pod), agent: s.agent })
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const review = res.json<{ apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } }>()
  t.equal(review.apiVersion, 'admission.k8s.io/v1')
  t.equal(review.kind, 'AdmissionReview')
  t.equal(review.response.uid, 'e911857d-c318-11e8-bbad-025000000001')
  t.equal(review.response.allowed, true)
  t.equal(review.response.patchType, 'JSONPatch')
  const ops = JSON.parse(Buffer.from(review.response.patch, 'base64').toString()) as Array<{ path: string; value: unknown }>
  t.ok(ops.some((o) => o.path === '/spec/initContainers'))
  const ca = (ops.find((o) => o.path === '/spec/initContainers')!.value as Array<{ env: Array<{ name: string; value?: string }> }>)[0]!.env.find((e) => e.name === 'ENLIST_CA_BUNDLE')
  t.equal(ca?.value, s.pki.ca.cert, 'the CA beside the serving cert is handed to the registrar')
})

t.test('tenancy.enforcement warn: admitted with a warning, counted by reason, logged', async (t) => {
  const policy = `apiVersion: enlist.io/v1alpha1
kind: Policy
cluster: {name: test}
registry: {backends: [{name: zk, type: zookeeper, connect: "zk:2181", allowInsecure: true, layout: dubbo}]}
tenancy: {enforcement: warn, interfaces: [{namespaces: [other], interfaces: [com.acme.Orders]}]}
`
  const s = await startTestServer({ policy })
  t.teardown(() => s.close())
  const provider = makePod({
    metadata: { generateName: 'orders-', namespace: 'shop', labels: { app: 'orders' }, annotations: { 'enlist.io/metadata': '{"interface":"com.acme.Orders"}' } },
    spec: { containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }] },
  })
  const res = await request(`${s.url}/mutate?timeout=10s`, { method: 'POST', body: reviewBody(provider), agent: s.agent })
  const review = res.json<{ response: { allowed: boolean; warnings?: string[] } }>()
  t.equal(review.response.allowed, true, 'admitted: warn stages the denial')
  t.match(review.response.warnings, [/tenancy.enforcement is warn: this pod would be denied: .*com\.acme\.Orders/], 'the warning says what enforce would deny')
  t.match(await s.metrics.registry.metrics(), /enlist_tenancy_staged_denials_total\{where="admission",reason="interface-not-owned"\} 1/)
})

t.test('v1beta1 reviews are answered in v1beta1', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const body = JSON.parse(reviewBody(pod)) as Record<string, unknown>
  body.apiVersion = 'admission.k8s.io/v1beta1'
  const res = await request(`${s.url}/mutate`, { method: 'POST', body: JSON.stringify(body), agent: s.agent })
  t.equal(res.json<{ apiVersion: string }>().apiVersion, 'admission.k8s.io/v1beta1')
})

t.test('bad requests get 4xx with a message, never 500', async (t) => {
  const s = await startTestServer({ bodyLimit: 64 * 1024 })
  t.teardown(() => s.close())
  const post = (body: string | Buffer, headers?: Record<string, string>) => request(`${s.url}/mutate`, { method: 'POST', body, headers, agent: s.agent })

  const malformed = await post('{"apiVersion": ')
  t.equal(malformed.status, 400)
  t.match(malformed.json(), { message: /JSON/ })

  const notReview = await post('{"kind":"Pod"}')
  t.equal(notReview.status, 400)
  t.same(notReview.json(), { code: 'ENLIST_BAD_REQUEST', message: 'not an AdmissionReview: kind must be "AdmissionReview", got "Pod"' })

  const noUid = await post('{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}')
  t.equal(noUid.status, 400)

  const array = await post('[]')
  t.equal(array.status, 400)

  const big = await post(reviewBody(makePod({ metadata: { name: 'big', namespace: 'shop', annotations: { x: 'y'.repeat(70 * 1024) } } })))
  t.equal(big.status, 413)
  t.match(big.json(), { message: /too large/i })

  // Over a quarter of the body limit, depth is checked before parsing; below, a deep body
  // costs no more than one the limit lets in, and is parsed (and refused as no review).
  const nested = (levels: number) => `{"kind":"AdmissionReview","x":${'['.repeat(levels)}${']'.repeat(levels)}}`
  const deep = await post(nested(10_000))
  t.equal(deep.status, 400)
  t.same(deep.json(), { code: 'ENLIST_BAD_REQUEST', message: 'body is nested deeper than 64 levels; an AdmissionReview is not' })
  const deepButSmall = await post(nested(4000))
  t.equal(deepButSmall.status, 400)
  t.match(deepButSmall.json(), { message: /^not an AdmissionReview/ }, 'parsed: a quarter of the limit is not reached')
  const allowedDepth = await post(nested(63).replace('"x"', `"pad":"${'p'.repeat(20_000)}","x"`))
  t.equal(allowedDepth.status, 400)
  t.match(allowedDepth.json(), { message: /^not an AdmissionReview/ }, '64 levels (the review and 63 arrays) over a quarter of the limit are parsed')

  const empty = await post('')
  t.equal(empty.status, 400)

  const wrongType = await post('apiVersion: v1', { 'content-type': 'application/yaml' })
  t.equal(wrongType.status, 415)

  // JSON.parse makes "__proto__" an own key, never a prototype: answered, and nothing polluted
  const proto = await post('{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","__proto__":{"polluted":1},"object":{"metadata":{"labels":{"__proto__":{"polluted":1}}}}}}')
  t.equal(proto.status, 200)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')

  const get = await request(`${s.url}/mutate`, { agent: s.agent })
  t.equal(get.status, 404)
  const unknown = await request(`${s.url}/nope`, { agent: s.agent })
  t.equal(unknown.status, 404)
  t.same(unknown.json(), { code: 'ENLIST_NOT_FOUND', message: 'no route GET /nope' })

  const metrics = await request(`${s.url}/metrics`, { agent: s.agent })
  t.match(metrics.body, /enlist_http_bad_requests_total\{route="\/mutate",code="413"\} 1/)
  // malformed, notReview, noUid, array, deep, deepButSmall, allowedDepth, empty: each counted once
  t.match(metrics.body, /enlist_http_bad_requests_total\{route="\/mutate",code="400"\} 8\n/)
  t.match(metrics.body, /enlist_http_bad_requests_total\{route="\/mutate",code="415"\} 1\n/)
})

t.test('nothing a client sends makes the server answer 500 or fall over', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const weird: unknown[] = [
    { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, namespace: 'shop', object: { spec: null } },
    { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, namespace: 'shop', object: { metadata: null, spec: { containers: null } } },
    { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, namespace: 'shop', object: { spec: { containers: [{ name: 'a', env: 'nope' }] } } },
    { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, namespace: 'shop', object: { metadata: { labels: 'x', annotations: 7 } } },
    { uid: 'u', operation: 'CREATE', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, namespace: 'shop', object: [] },
    { uid: 'u', operation: 7, kind: 'Pod', resource: null, namespace: { a: 1 } },
  ]
  for (const request_ of weird) {
    const res = await request(`${s.url}/mutate`, {
      method: 'POST',
      body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: request_ }),
      agent: s.agent,
    })
    t.not(res.status, 500, JSON.stringify(request_))
    t.ok(res.status === 200 || res.status === 400, `status ${res.status}`)
  }
  const health = await request(`${s.url}/healthz`, { agent: s.agent })
  t.equal(health.status, 200, 'still alive')
})

t.test('non-pod kinds and operations are allowed untouched', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const res = await request(`${s.url}/mutate`, {
    method: 'POST',
    body: reviewBody({ kind: 'Deployment' }, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }),
    agent: s.agent,
  })
  t.same(res.json<{ response: unknown }>().response, { uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true })
  const update = await request(`${s.url}/mutate`, { method: 'POST', body: reviewBody(pod, { operation: 'UPDATE' }), agent: s.agent })
  t.same(update.json<{ response: unknown }>().response, { uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true })
})

t.test('decisions by namespace, and their metrics', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const send = (ns: string, p = pod) => request(`${s.url}/mutate`, { method: 'POST', body: reviewBody(p, { namespace: ns }), agent: s.agent })
  t.ok((await send('shop')).json<{ response: { patch?: string } }>().response.patch, 'labelled namespace injected')
  t.notOk((await send('plain')).json<{ response: { patch?: string } }>().response.patch, 'unlabelled not injected')
  t.notOk((await send('off')).json<{ response: { patch?: string } }>().response.patch, 'disabled not injected')
  t.notOk((await send('kube-system')).json<{ response: { patch?: string } }>().response.patch, 'kube-system never')
  t.notOk((await send('unknown-ns')).json<{ response: { patch?: string } }>().response.patch, 'unknown namespace: policy default')
  const denied = await send('shop', makePod({ metadata: { name: 'x', namespace: 'shop', annotations: { 'enlist.io/depends-on': 'a:b:c' } } }))
  t.match(denied.json(), { response: { allowed: false, status: { code: 400, message: /enlist\.io\/depends-on/ } } })

  const m = (await request(`${s.url}/metrics`, { agent: s.agent })).body
  t.match(m, /enlist_admission_requests_total\{verdict="injected",reason="namespace-opt-in",code="200"\} 1/)
  t.match(m, /enlist_admission_requests_total\{verdict="skipped",reason="not-opted-in",code="200"\} 2/)
  t.match(m, /enlist_admission_requests_total\{verdict="skipped",reason="namespace-opt-out",code="200"\} 1/)
  t.match(m, /enlist_admission_requests_total\{verdict="skipped",reason="excluded-namespace",code="200"\} 1/)
  t.match(m, /enlist_admission_requests_total\{verdict="denied",reason="invalid-annotation",code="200"\} 1/)
  t.match(m, /enlist_admission_duration_seconds_bucket\{le="0.00025",verdict="injected"\} \d/)
  t.match(m, /enlist_policy_generation 1/)
  t.match(m, new RegExp(`enlist_policy_info\\{hash="${s.policy.current!.hash}",source="test"\\} 1`))
  t.match(m, /enlist_tls_certificate_expiry_seconds \d+/)
  // Prometheus conventions: expiry as a timestamp, alerts compute the time left with time()
  const ts = Number(/^enlist_tls_certificate_expiration_timestamp_seconds (\S+)$/m.exec(m)?.[1])
  t.equal(ts, new Date(s.certificate.current.notAfter).getTime() / 1000, 'the serving certificate\'s notAfter, in Unix seconds')
  t.match(m, /enlist_admission_requests_in_flight 0/, 'none in flight once answered')
})

t.test('admissions in flight, and the status code of answers that are not 200', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  // a request whose body is still arriving is in flight
  const body = reviewBody(pod)
  const req = https.request(`${s.url}/mutate`, { method: 'POST', agent: s.agent, headers: { 'content-type': 'application/json', 'content-length': String(body.length) } })
  const answered = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
  })
  req.write(body.slice(0, 100))
  const metric = async () => (await request(`${s.url}/metrics`, { agent: s.agent })).body
  let m = ''
  for (let i = 0; i < 50 && !/enlist_admission_requests_in_flight 1/.test(m); i++) m = await metric()
  t.match(m, /enlist_admission_requests_in_flight 1/, 'one in flight while its body arrives')
  req.end(body.slice(100))
  t.equal(await answered, 200)
  t.match(await metric(), /enlist_admission_requests_in_flight 0/)

  // a client that hangs up mid-body is no longer in flight
  const gone = https.request(`${s.url}/mutate`, { method: 'POST', agent: false, ca: s.pki.ca.cert, headers: { 'content-type': 'application/json', 'content-length': String(body.length) } })
  gone.on('error', () => undefined)
  gone.write(body.slice(0, 100))
  for (let i = 0; i < 50 && !/enlist_admission_requests_in_flight 1/.test(m); i++) m = await metric()
  t.match(m, /enlist_admission_requests_in_flight 1/)
  gone.destroy()
  for (let i = 0; i < 50 && !/enlist_admission_requests_in_flight 0/.test(m); i++) {
    await new Promise((r) => setTimeout(r, 20))
    m = await metric()
  }
  t.match(m, /enlist_admission_requests_in_flight 0/, 'a hang-up ends it')

  // no policy (503) is counted with its code: in 'no policy yet' below
})

t.test('the plain-HTTP listener (serve --metrics-bind-address): metrics and probes only', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const plain = await buildMetricsServer({ metrics: s.metrics, readiness: s.readiness })
  t.teardown(() => plain.close())
  await plain.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(plain.server.address() as { port: number }).port}`
  const get = async (path: string, method = 'GET') => {
    const r = await fetch(`${url}${path}`, { method })
    return { status: r.status, body: await r.text() }
  }
  t.match(await get('/metrics'), { status: 200, body: /enlist_admission_requests_in_flight 0/ })
  t.match(await get('/healthz'), { status: 200, body: 'ok' })
  t.match(await get('/readyz'), { status: 200, body: 'ok' })
  t.match(await get('/mutate', 'POST'), { status: 404, body: /this listener serves \/metrics, \/healthz and \/readyz/ })
  t.match(await get('/v1/registrations', 'POST'), { status: 404 })
})

t.test('parseBindAddress', async (t) => {
  t.same(parseBindAddress(':8080'), { host: '0.0.0.0', port: 8080 })
  t.same(parseBindAddress('127.0.0.1:9090'), { host: '127.0.0.1', port: 9090 })
  t.same(parseBindAddress('[::]:8080'), { host: '::', port: 8080 })
  t.same(parseBindAddress('localhost:1'), { host: 'localhost', port: 1 })
  for (const bad of ['8080', ':0', ':65536', 'a:b', '::8080', '', '1.2.3.4:']) t.throws(() => parseBindAddress(bad), /is invalid; accepted: HOST:PORT or :PORT/, bad)
})

t.test('health and readiness', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  t.equal((await request(`${s.url}/healthz`, { agent: s.agent })).body, 'ok')
  t.equal((await request(`${s.url}/readyz`, { agent: s.agent })).status, 200)
  let ready = false
  s.readiness.add('cache', () => (ready ? undefined : 'namespace cache not synced'))
  const notReady = await request(`${s.url}/readyz`, { agent: s.agent })
  t.equal(notReady.status, 503)
  t.equal(notReady.body, 'not ready', 'the listener every pod reaches says not ready, never why')
  ready = true
  t.equal((await request(`${s.url}/readyz`, { agent: s.agent })).status, 200)
})

t.test('no policy yet: 503, the apiserver applies its failure policy; counted with its code', async (t) => {
  const s = await startTestServer({ policy: 'not: a policy\n' })
  t.teardown(() => s.close())
  const res = await request(`${s.url}/mutate`, { method: 'POST', body: reviewBody(pod), agent: s.agent })
  t.equal(res.status, 503)
  t.match(res.json(), { message: 'no valid policy loaded yet' })
  t.equal((await request(`${s.url}/readyz`, { agent: s.agent })).status, 503)
  t.match((await request(`${s.url}/metrics`, { agent: s.agent })).body, /enlist_admission_requests_total\{verdict="error",reason="no-policy",code="503"\} 1/)
})

t.test('keep-alive outlives the apiserver idle timeout', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  // the apiserver keeps idle connections 90 s; closing first would make it reconnect (a TLS
  // handshake on the admission path), or race a request onto a closing connection
  t.ok(s.app.server.keepAliveTimeout > 90_000, `keepAliveTimeout ${s.app.server.keepAliveTimeout}`)
  // and a connection is kept: idle past Node's default keep-alive (5 s), the next request
  // goes on the same socket
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: s.pki.ca.cert })
  t.teardown(() => agent.destroy())
  const send = () =>
    new Promise<{ reused: boolean; port: number; keepAlive: string | undefined }>((resolve, reject) => {
      const req = https.request(`${s.url}/healthz`, { agent }, (res) => {
        res.resume()
        res.on('end', () => resolve({ reused: req.reusedSocket, port: req.socket!.localPort!, keepAlive: String(res.headers['keep-alive']) }))
      })
      req.on('error', reject)
      req.end()
    })
  const first = await send()
  t.notOk(first.reused, 'the first request opens the connection')
  t.match(first.keepAlive, /^timeout=(9\d|\d{3,})$/, `the server tells the client it keeps it: Keep-Alive: ${first.keepAlive}`)
  await new Promise((r) => setTimeout(r, 5500))
  const second = await send()
  t.ok(second.reused && second.port === first.port, 'after 5.5 s idle, the same connection')
})

t.test('certificate files rotated while requests flow: none fails, new connections get the new cert', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const first = serialOf(s.pki.serving.cert)
  let stop = false
  let ok = 0
  const failures: string[] = []
  const seen = new Set<string>()
  const worker = async (fresh: boolean) => {
    while (!stop) {
      const agent = fresh ? new https.Agent({ keepAlive: false, ca: s.pki.ca.cert }) : s.agent
      try {
        const res = await request(`${s.url}/mutate`, { method: 'POST', body: reviewBody(pod), agent })
        if (res.status === 200) ok++
        else failures.push(`status ${res.status}`)
        if (fresh && res.serial) seen.add(res.serial)
      } catch (err) {
        failures.push((err as Error).message)
      } finally {
        if (fresh) agent.destroy()
      }
    }
  }
  const workers = [worker(false), worker(false), worker(false), worker(true), worker(true)]
  // events, not wall-clock windows: requests served on the old certificate before the
  // rotation, then the new one seen, then more requests served after it
  const settle = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 30_000
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  await settle('requests on the old certificate', () => seen.has(first) && ok >= 30)
  const next = await s.pki.rotate()
  const want = serialOf(next.cert)
  await settle('the new certificate served', () => seen.has(want))
  const atNew = ok
  await settle('requests after the rotation', () => ok >= atNew + 30)
  stop = true
  await Promise.all(workers)
  t.same(failures, [], 'no request failed')
  t.ok(ok > 50, `${ok} requests served`)
  t.ok(seen.has(first), 'old certificate served before')
  t.ok(seen.has(want), 'new certificate served after, without a restart')
  t.equal(serialOf(s.certificate.current.cert), want)
  const m = (await request(`${s.url}/metrics`, { agent: s.agent })).body
  t.match(m, /enlist_tls_reloads_total\{result="ok"\} 2/)
})

t.test('a broken certificate on disk is not swapped in', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  const { writeFileSync } = await import('node:fs')
  const before = s.certificate.current.cert
  writeFileSync(s.pki.certFile, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n')
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.certificate.current.cert, before)
  const res = await request(`${s.url}/healthz`, { ca: s.pki.ca.cert })
  t.equal(res.status, 200, 'new connections still served with the old certificate')
  const m = (await request(`${s.url}/metrics`, { agent: s.agent })).body
  t.match(m, /enlist_tls_reloads_total\{result="invalid"\} 1/)
})

t.test('shutdown: not ready, in-flight requests finish, then no new connections', async (t) => {
  // In order, not in timed windows: the request in flight, then the stop, then readyz during
  // the delay (long enough for one request on a busy machine), then the rest of the body.
  const s = await startTestServer({ shutdownDelayMs: 3000 })
  // An in-flight request whose body is still arriving when the stop begins.
  const body = reviewBody(pod)
  const req = https.request(`${s.url}/mutate`, { method: 'POST', ca: s.pki.ca.cert, headers: { 'content-type': 'application/json', 'content-length': String(body.length) } })
  const inFlight = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
  })
  req.write(body.slice(0, 100))
  const metric = async () => (await request(`${s.url}/metrics`, { ca: s.pki.ca.cert })).body
  let m = ''
  for (let i = 0; i < 50 && !/enlist_admission_requests_in_flight 1/.test(m); i++) m = await metric()
  t.match(m, /enlist_admission_requests_in_flight 1/, 'the request is in flight when the stop begins')
  let done = false
  const stopped = s.manager.stop().then(() => (done = true))
  const during = await request(`${s.url}/readyz`, { ca: s.pki.ca.cert })
  t.notOk(done, 'asked during the shutdown delay')
  t.equal(during.status, 503, 'not ready during the shutdown delay')
  t.equal(during.body, 'not ready', 'no reasons on this listener (the metrics listener says shutdown)')
  t.match(s.readiness.status(), { failing: [{ check: 'shutdown' }] })
  req.end(body.slice(100))
  t.equal(await inFlight, 200, 'the in-flight request completed')
  await stopped
  await t.rejects(
    new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: Number(new URL(s.url).port), ca: s.pki.ca.cert }, () => resolve(sock))
      sock.on('error', reject)
    }),
    'no new connections after stop',
  )
  s.agent.destroy()
})

t.test('/readyz says why only on the metrics listener: backend hosts and errors never reach the one every pod can call', async (t) => {
  const s = await startTestServer()
  t.teardown(() => s.close())
  s.readiness.add('cache', () => 'namespace cache not synced: GET https://10.96.0.1:443/api/v1/namespaces: connection refused')
  s.readiness.addReport(() => [{ check: 'backend cmdb', reason: 'POST https://cmdb.internal.bank:8443/v1/records: 401 Unauthorized' }])
  for (const path of ['/readyz', '/readyz?verbose', '/readyz?verbose=1']) {
    const r = await request(`${s.url}${path}`, { agent: s.agent })
    t.equal(r.status, 503, `${path}: 503`)
    t.equal(r.body, 'not ready', `${path} on the main listener: no details`)
  }
  const plain = await buildMetricsServer({ metrics: s.metrics, readiness: s.readiness })
  t.teardown(() => plain.close())
  await plain.listen({ host: '127.0.0.1', port: 0 })
  const r = await fetch(`http://127.0.0.1:${(plain.server.address() as { port: number }).port}/readyz?verbose`)
  t.equal(r.status, 503)
  t.match(await r.json(), { ready: false, failing: [{ check: 'cache' }], warnings: [{ check: 'backend cmdb', reason: /cmdb\.internal\.bank/ }] }, 'the operator\'s listener has them')
})

t.test('/mutate caps the reviews waiting for an unseen namespace: past it, decided at once as unknown, counted', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const log = silentLogger()
  const policy = new PolicyStore(log, metrics)
  policy.apply('apiVersion: enlist.io/v1alpha1\nkind: Policy\n', 'test')
  const held: Array<() => void> = []
  const namespaces = {
    labels: () => undefined,
    waitFor: () => new Promise<undefined>((resolve) => held.push(() => resolve(undefined))),
  }
  const app = Fastify()
  await app.register(mutateRoutes, { policy, namespaces, serverVersion: () => ({ major: 1, minor: 20 }), caBundle: () => 'ca', keys: () => testKeys(), metrics, log, namespaceWaitMs: 60_000, maxNamespaceWaiters: 3 })
  t.teardown(() => app.close())
  const ghost = (i: number) => reviewBody(makePod({ metadata: { name: `p${i}`, namespace: `made-up-${i}` } }))
  const waiting = [0, 1, 2].map((i) => app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: ghost(i) }))
  await new Promise((r) => setTimeout(r, 50))
  t.equal(held.length, 3, 'three wait')
  const fast = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: ghost(3) })
  t.equal(fast.statusCode, 200, 'the fourth is answered at once')
  t.equal(fast.json<{ response: { allowed: boolean } }>().response.allowed, true, 'as for a namespace not opted in')
  t.equal(held.length, 3, 'and did not wait')
  t.match(await metrics.registry.metrics(), /enlist_admission_namespace_waits_refused_total 1/)
  for (const h of held) h()
  for (const r of await Promise.all(waiting)) t.equal(r.statusCode, 200)
  const again = app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: ghost(4) })
  await new Promise((r) => setTimeout(r, 50))
  t.equal(held.length, 4, 'room again once they were answered')
  held[3]!()
  await again
})
