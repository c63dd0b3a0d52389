// The http backend against a real HTTP server on loopback.
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { HttpBackend } from '../../src/registry/http.js'
import type { HttpBackendSpec } from '../../src/policy/policy.js'
import { startCmdb } from '../harness/cmdb.js'

const spec = (url: string, over: Partial<HttpBackendSpec> = {}): HttpBackendSpec => ({
  name: 'cmdb',
  type: 'http',
  url,
  timeoutSeconds: 1,
  caBundle: '',
  headersFromSecret: '',
  retry: { initialDelayMs: 10, maxDelayMs: 100 },
  advertise: { mode: 'podIP', nodeAddressTypes: ['InternalIP'] },
  ...over,
})
const record = { uid: 'u/1', namespace: 'shop', pod: 'p', service: 's', ip: '1.2.3.4', ips: ['1.2.3.4'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: 'T', advertised: { mode: 'podIP' as const, address: '1.2.3.4', ports: [] } }

t.test('PUT, GET, DELETE; idempotent both ways', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())
  await b.register(record)
  await b.register(record)
  t.same(cmdb.records.get('u/1'), record)
  t.same(cmdb.requests.map((r) => `${r.method} ${r.path}`), ['PUT /api/v1/instances/u%2F1', 'PUT /api/v1/instances/u%2F1'], 'the uid is one escaped path segment')
  t.same(await b.list(), [{ uid: 'u/1', namespace: 'shop', pod: 'p' }])
  await b.deregister(record)
  await b.deregister(record)
  t.equal(cmdb.records.size, 0, 'a 404 on delete counts as done')
})

t.test('headers from the Secret are sent; errors say what failed and whether to retry', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  cmdb.requireAuthorization = 'Bearer s3cret'
  const good = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => ({ Authorization: 'Bearer s3cret' }))
  const bad = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => ({ Authorization: 'Bearer wrong' }))
  const broken = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => {
    throw new Error('cannot read Secret enlist-system/creds for backend headers (not found)')
  })
  t.teardown(() => [good, bad, broken].forEach((b) => b.close()))
  await good.register(record)
  await t.rejects(bad.register(record), { code: 'ENLIST_BACKEND_FAILED', retryable: false, message: /backend cmdb: register failed: HTTP 401/ })
  await t.rejects(broken.register(record), { retryable: true, message: /cannot read Secret enlist-system\/creds/ })
  cmdb.down = true
  await t.rejects(good.register(record), { retryable: true, message: /HTTP 503/ })
})

t.test('list accepts an array or {items}, and skips entries that are not pods', async (t) => {
  let body = ''
  const server = http.createServer((_req, res) => res.end(body))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`
  const b = new HttpBackend(spec(url), async () => ({}))
  t.teardown(() => b.close())
  body = JSON.stringify([{ uid: 'a', namespace: 'n', pod: 'p' }, { uid: 'b' }, null, { uid: '', namespace: 'n', pod: 'p' }])
  t.same(await b.list(), [{ uid: 'a', namespace: 'n', pod: 'p' }])
  body = JSON.stringify({ items: [{ uid: 'c', namespace: 'n', pod: 'q' }] })
  t.same(await b.list(), [{ uid: 'c', namespace: 'n', pod: 'q' }])
  body = 'not json'
  await t.rejects(b.list(), { retryable: false, message: /not JSON/ })
  body = '{"records": []}'
  await t.rejects(b.list(), { message: /expected an array of records/ })
})

t.test('timeouts and refused connections are retryable errors', async (t) => {
  const server = http.createServer(() => undefined) // never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  }))
  const slow = new HttpBackend(spec(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`), async () => ({}))
  t.teardown(() => slow.close())
  await t.rejects(slow.register(record), { retryable: true, message: /no answer within 1s/ })
  const refused = new HttpBackend(spec('http://127.0.0.1:1/x'), async () => ({}))
  t.teardown(() => refused.close())
  await t.rejects(refused.deregister(record), { retryable: true, message: /ECONNREFUSED/ })
})
