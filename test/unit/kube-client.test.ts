// The apiserver client against a misbehaving server on loopback: total deadlines (a drip
// cannot hold a call open), capped bodies, Retry-After honoured within the deadline,
// Warning headers logged once and counted, every request counted by verb, resource, code.
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { type KubeApiError, KubeClient, parseWarnings, requestInfo } from '../../src/kube/client.js'
import { createMetrics } from '../../src/metrics.js'
import { AbortedError } from '../../src/lib/errors.js'

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void
let handler: Handler = (_req, res) => res.end('{}')
const server = http.createServer((req, res) => handler(req, res))
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
t.teardown(
  () =>
    new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
)
const port = (server.address() as AddressInfo).port
const lines: Array<Record<string, unknown>> = []
const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
const metrics = createMetrics({ defaultMetrics: false })
const client = new KubeClient({ server: new URL(`http://127.0.0.1:${port}`), tls: { rejectUnauthorized: true }, authorization: async () => 'Bearer t', source: 'test' }, { requestTimeoutMs: 1000, maxResponseBytes: 64 * 1024, metrics, log })
t.teardown(() => client.close())
const count = async (labels: Record<string, string>): Promise<number> =>
  (await metrics.apiRequests.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k as 'verb'] === x)).reduce((n, v) => n + v.value, 0)

t.test('a deadline for the whole exchange: stalls and drips are cut off', async (t) => {
  handler = () => undefined // accept, never answer
  let started = Date.now()
  await t.rejects(client.get('/api/v1/namespaces/a/pods/b'), { status: 0, reason: 'Timeout', message: /no complete answer within 1000 ms/ })
  t.ok(Date.now() - started < 2000, `a stall cut at ${Date.now() - started} ms`)

  handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 100)
  }
  started = Date.now()
  await t.rejects(client.get('/api/v1/pods'), { reason: 'Timeout', message: /within 1000 ms/ })
  t.ok(Date.now() - started < 2000, `a drip (a byte every 100 ms) cut at ${Date.now() - started} ms`)
  t.ok((await count({ verb: 'GET', resource: 'pods', code: '<error>' })) >= 1 || (await count({ verb: 'LIST', resource: 'pods', code: '200' })) >= 1, 'counted')
})

t.test('bodies are capped', async (t) => {
  handler = (_req, res) => res.end(JSON.stringify({ items: 'x'.repeat(100 * 1024) }))
  await t.rejects(client.get('/api/v1/pods'), { reason: 'ResponseTooLarge', message: /exceeds 65536 bytes/ })
})

t.test('429 and 5xx with Retry-After are retried after it, within the deadline; others are not', async (t) => {
  let calls = 0
  handler = (_req, res) => {
    calls++
    if (calls < 3) {
      res.writeHead(429, { 'retry-after': '0', 'content-type': 'application/json' })
      res.end('{"kind":"Status","reason":"TooManyRequests","message":"slow down"}')
      return
    }
    res.end('{"ok":true}')
  }
  t.same(await client.get('/api/v1/namespaces/a/pods/b'), { ok: true })
  t.equal(calls, 3, 'two 429s, then the answer')
  t.equal(await count({ verb: 'GET', resource: 'pods', code: '429' }), 2)

  calls = 0
  handler = (_req, res) => {
    calls++
    res.writeHead(503, { 'retry-after': '30' })
    res.end('{"kind":"Status","reason":"ServiceUnavailable","message":"etcd"}')
  }
  const started = Date.now()
  const err = (await client.get('/api/v1/namespaces').catch((e: unknown) => e)) as KubeApiError
  t.match(err, { status: 503, retryAfterMs: 30_000 }, 'a Retry-After past the deadline is handed to the caller')
  t.equal(calls, 1)
  t.ok(Date.now() - started < 1000)

  calls = 0
  handler = (_req, res) => {
    calls++
    res.writeHead(500)
    res.end('{"kind":"Status","reason":"InternalError","message":"boom"}')
  }
  await t.rejects(client.get('/api/v1/namespaces'), { status: 500, message: /InternalError: boom/ })
  t.equal(calls, 1, 'no Retry-After, no retry')
})

t.test('Warning headers: each text logged once, every one counted', async (t) => {
  handler = (_req, res) => {
    res.setHeader('warning', ['299 - "policy/v1beta1 PodSecurityPolicy is deprecated in v1.21+"', '299 - "a \\"quoted\\" one"'])
    res.end('{}')
  }
  const before = (await metrics.apiWarnings.get()).values[0]?.value ?? 0
  await client.get('/api/v1/namespaces')
  await client.get('/api/v1/namespaces')
  await client.get('/api/v1/namespaces')
  t.equal(((await metrics.apiWarnings.get()).values[0]?.value ?? 0) - before, 6)
  const logged = lines.filter((l) => l.msg === 'the apiserver sent a warning').map((l) => l.warning)
  t.same(logged, ['policy/v1beta1 PodSecurityPolicy is deprecated in v1.21+', 'a "quoted" one'])
  t.same(parseWarnings('299 - "a", 299 k8s "b, c"'), ['a', 'b, c'])
})

t.test('a caller that aborts gets an AbortedError at once', async (t) => {
  handler = () => undefined
  const abort = new AbortController()
  setTimeout(() => abort.abort(), 50)
  const started = Date.now()
  await t.rejects(client.get('/api/v1/pods', undefined, { signal: abort.signal, timeoutMs: 30_000 }), { code: 'ENLIST_ABORTED' })
  t.ok(Date.now() - started < 500)
})

t.test('watches: headers within the request timeout, events streamed, errors with their status', async (t) => {
  handler = () => undefined
  const abort = new AbortController()
  t.teardown(() => abort.abort())
  await t.rejects(client.watch('/api/v1/pods', { timeoutSeconds: 300 }, () => undefined, abort.signal), { reason: 'Timeout', message: /within/ }, 'a watch whose answer never starts')

  handler = (_req, res) => {
    res.writeHead(410, { 'content-type': 'application/json' })
    res.end('{"kind":"Status","reason":"Expired","message":"too old resource version: 1 (5)","code":410}')
  }
  await t.rejects(client.watch('/api/v1/pods', {}, () => undefined, abort.signal), { status: 410, message: /Expired: too old resource version/ })

  handler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"BOOK')
    setTimeout(() => res.end('MARK","object":{"metadata":{"resourceVersion":"9"}}}\n'), 50)
    t.equal(new URL(req.url!, 'http://x').searchParams.get('watch'), 'true')
  }
  const events: unknown[] = []
  await client.watch('/api/v1/pods', { timeoutSeconds: 1 }, (e) => events.push(e), abort.signal)
  t.same(events, [{ type: 'ADDED', object: { metadata: { name: 'a' } } }, { type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } }])
  t.ok((await count({ verb: 'WATCH', resource: 'pods', code: '200' })) >= 1)
})

t.test('a watch whose caller stops ends at once, however long its stream would last', async (t) => {
  handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
  }
  const abort = new AbortController()
  setTimeout(() => abort.abort(), 200)
  const started = Date.now()
  await client.watch('/api/v1/pods', { timeoutSeconds: 300 }, () => undefined, abort.signal)
  t.ok(Date.now() - started < 1000, `ended ${Date.now() - started} ms after it began`)
})

t.test('a stop that comes while the credentials are fetched still stops the watch', async (t) => {
  handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
  }
  const slowCreds = new KubeClient({ server: new URL(`http://127.0.0.1:${port}`), tls: { rejectUnauthorized: true }, authorization: () => new Promise((r) => setTimeout(() => r('Bearer t'), 100)), source: 'test' })
  t.teardown(() => slowCreds.close())
  const abort = new AbortController()
  setTimeout(() => abort.abort(), 10)
  const started = Date.now()
  // it ends by the stop, and says so: not by some other failure a swallowed catch would hide
  await t.rejects(slowCreds.watch('/api/v1/pods', { timeoutSeconds: 300 }, () => undefined, abort.signal), AbortedError)
  t.ok(Date.now() - started < 1000, `ended ${Date.now() - started} ms after it began`)
})

t.test('a timed-out request ends watches that have been silent as long (a partition sends no FIN)', async (t) => {
  let silent = true
  handler = (req, res) => {
    if (req.url?.includes('watch=true')) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      return
    }
    if (silent) return // this one never answers
    res.end('{}')
  }
  const abort = new AbortController()
  t.teardown(() => abort.abort())
  const started = Date.now()
  const watching = client.watch('/api/v1/pods', { timeoutSeconds: 300 }, () => undefined, abort.signal)
  await new Promise((r) => setTimeout(r, 1100)) // silent longer than the request timeout
  await t.rejects(client.get('/api/v1/namespaces/a/pods/b'), { reason: 'Timeout', message: /within/ })
  await watching
  t.ok(Date.now() - started < 3500, `the silent watch ended ${Date.now() - started} ms after it began, with the timed-out request`)
  silent = false
})

t.test('verbs and resources for metrics', async (t) => {
  t.same(requestInfo('GET', '/api/v1/pods'), { verb: 'LIST', resource: 'pods' })
  t.same(requestInfo('GET', '/api/v1/namespaces'), { verb: 'LIST', resource: 'namespaces' })
  t.same(requestInfo('GET', '/api/v1/namespaces/shop'), { verb: 'GET', resource: 'namespaces' })
  t.same(requestInfo('GET', '/api/v1/namespaces/shop/pods/a'), { verb: 'GET', resource: 'pods' })
  t.same(requestInfo('PATCH', '/api/v1/namespaces/shop/pods/a/status'), { verb: 'PATCH', resource: 'pods/status' })
  t.same(requestInfo('PUT', '/apis/coordination.k8s.io/v1/namespaces/x/leases/l'), { verb: 'PUT', resource: 'leases' })
  t.same(requestInfo('POST', '/apis/authentication.k8s.io/v1/tokenreviews'), { verb: 'POST', resource: 'tokenreviews' })
  t.same(requestInfo('GET', '/apis/discovery.k8s.io/v1/endpointslices'), { verb: 'LIST', resource: 'endpointslices' })
  t.same(requestInfo('GET', '/version'), { verb: 'GET', resource: 'version' })
  t.same(requestInfo('GET', '/apis/discovery.k8s.io'), { verb: 'GET', resource: 'discovery' })
})
