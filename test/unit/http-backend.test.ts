// The http backend against a real HTTP server on loopback, well behaved and not: pages,
// entries that are not pods, slow drips, stalls, resets, huge answers, and errors that must
// not carry the URL, credentials or the CMDB's words to tenants.
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { HttpBackend, linkNext } from '../../src/registry/http.js'
import type { HttpBackendSpec } from '../../src/policy/policy.js'
import { startCmdb } from '../harness/cmdb.js'
import { RegistryController } from '../../src/controller/registry-controller.js'
import { TokenAuthenticator } from '../../src/registration/auth.js'
import { DependencyCache } from '../../src/registration/dependencies.js'
import { RegistrationService } from '../../src/registration/service.js'
import type { Backend } from '../../src/registry/backend.js'
import { fakeCluster, metricValue, sealedStatus, until } from '../helpers/fake-cluster.js'
import { fakeToken, podAt, runningPod } from '../helpers/fake-kube.js'
import { MANAGED_LABEL, STATUS_ANNOTATION } from '../../src/names.js'

const spec = (url: string, over: Partial<HttpBackendSpec> = {}): HttpBackendSpec => ({
  name: 'cmdb',
  type: 'http',
  sweep: true,
  url,
  allowInsecureHTTP: true,
  timeoutSeconds: 1,
  maxResponseBytes: 1024 * 1024,
  maxListPages: 10,
  caBundle: '',
  headersFromSecret: '',
  retry: { initialDelayMs: 10, maxDelayMs: 100 },
  advertise: { mode: 'podIP', nodeAddressTypes: ['InternalIP'] },
  ...over,
})
const UID = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0'
const record = { uid: UID, namespace: 'shop', pod: 'p', service: 's', ip: '1.2.3.4', ips: ['1.2.3.4'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: 'T', advertised: { mode: 'podIP' as const, address: '1.2.3.4', ports: [] } }
const uid = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`

/** A logger whose lines the test can read. */
function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
  return { log, lines }
}

async function server(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const s = http.createServer(handler)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/x`,
    close: () =>
      new Promise<void>((r) => {
        s.closeAllConnections()
        s.close(() => r())
      }),
  }
}

t.test('PUT, GET, DELETE; idempotent both ways', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())
  await b.register(record)
  await b.register(record)
  t.same(cmdb.records.get(UID), record)
  t.same(cmdb.requests.map((r) => `${r.method} ${r.path}`), [`PUT /api/v1/instances/${UID}`, `PUT /api/v1/instances/${UID}`])
  t.same(await b.list(), [{ uid: UID, namespace: 'shop', pod: 'p' }])
  await b.deregister(record)
  await b.deregister(record)
  t.equal(cmdb.records.size, 0, 'a 404 on delete counts as done')
})

t.test('only a pod UID becomes a path: "..", "/" and the like are refused and skipped', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())
  for (const bad of ['..', '.', 'a/b', '../../admin', '%2e%2e', '', 'X0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0']) {
    await t.rejects(b.deregister({ uid: bad, namespace: 'n', pod: 'p' }), { retryable: false, message: /no valid pod UID/ }, JSON.stringify(bad))
  }
  t.equal(cmdb.requests.length, 0, 'nothing was sent')
  for (const u of ['..', 'a/b', '.']) cmdb.records.set(u, { uid: u, namespace: 'n', pod: 'evil' })
  cmdb.records.set(UID, record)
  t.same(await b.list(), [{ uid: UID, namespace: 'shop', pod: 'p' }], 'entries that are not pod UIDs are left alone')
})

t.test('headers from the Secret are sent; errors say what failed, whether to retry, and nothing more', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  cmdb.requireAuthorization = 'Bearer s3cret'
  const { log, lines } = capture()
  const good = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => ({ Authorization: 'Bearer s3cret' }), log)
  const bad = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => ({ Authorization: 'Bearer wrong' }), log)
  const broken = new HttpBackend(spec(cmdb.url, { headersFromSecret: 'creds' }), async () => {
    throw new Error('cannot read Secret enlist-system/creds for backend headers (not found)')
  }, log)
  t.teardown(() => {
    for (const b of [good, bad, broken]) b.close()
  })
  await good.register(record)
  const e401 = await bad.register(record).catch((e: Error) => e)
  t.match(e401, { code: 'ENLIST_BACKEND_FAILED', retryable: false, message: 'backend cmdb: register failed: HTTP 401' })
  await t.rejects(broken.register(record), { retryable: true, message: "backend cmdb: register failed: its credentials cannot be read (see enlist's log)" })
  cmdb.down = true
  const e503 = await good.register(record).catch((e: Error) => e)
  t.match(e503, { retryable: true, message: 'backend cmdb: register failed: HTTP 503' })
  for (const e of [e401, e503]) {
    t.notMatch((e as Error).message, /127\.0\.0\.1|unauthorized|maintenance|s3cret/, 'no URL, answer or credential in the message')
  }
  t.ok(lines.some((l) => l.status === 503 && String(l.body).includes('maintenance') && String(l.url).startsWith(cmdb.url)), 'the details are in enlist\'s log')
  t.ok(lines.some((l) => String(l.err).includes('cannot read Secret enlist-system/creds')), 'and why the Secret could not be read')
  t.notOk(JSON.stringify(lines).includes('s3cret'), 'credentials are never logged')
})

t.test('an insecure or credential-bearing URL is refused up front', async (t) => {
  t.throws(() => new HttpBackend(spec('http://cmdb/x', { allowInsecureHTTP: false }), async () => ({})), /http:\/\/cmdb is not encrypted/)
  const err = (() => {
    try {
      new HttpBackend(spec('https://admin:s3cret@cmdb/x'), async () => ({}))
    } catch (e) {
      return e as Error
    }
    return undefined
  })()
  t.match(err?.message, /must not hold credentials/)
  t.notMatch(err?.message, /s3cret/)
})

t.test('list accepts an array or {items}, and skips entries that are not pods', async (t) => {
  let body = ''
  const s = await server((_req, res) => res.end(body))
  t.teardown(s.close)
  const b = new HttpBackend(spec(s.url), async () => ({}))
  t.teardown(() => b.close())
  body = JSON.stringify([{ uid: uid(1), namespace: 'n', pod: 'p' }, { uid: uid(2) }, null, { uid: '', namespace: 'n', pod: 'p' }])
  t.same(await b.list(), [{ uid: uid(1), namespace: 'n', pod: 'p' }])
  body = JSON.stringify({ items: [{ uid: uid(3), namespace: 'n', pod: 'q' }] })
  t.same(await b.list(), [{ uid: uid(3), namespace: 'n', pod: 'q' }])
  body = 'not json'
  await t.rejects(b.list(), { retryable: false, message: /not JSON/ })
  body = '{"records": []}'
  await t.rejects(b.list(), { message: /expected an array of records/ })
})

t.test('a paginated list: continue tokens and Link rel="next", bounded', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  for (let i = 0; i < 25; i++) cmdb.records.set(uid(i), { uid: uid(i), namespace: 'n', pod: `p${i}` })
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())

  cmdb.pageSize = 10
  cmdb.paging = 'continue'
  t.same((await b.list()).map((e) => e.uid).sort(), [...cmdb.records.keys()].sort(), 'every entry, over three pages')
  t.same(cmdb.requests.map((r) => r.query), ['', 'continue=10', 'continue=20'])

  cmdb.requests.length = 0
  cmdb.paging = 'link'
  t.equal((await b.list()).length, 25)
  t.same(cmdb.requests.map((r) => r.query), ['', 'page=2', 'page=3'], 'Link rel="next" followed')

  const few = new HttpBackend(spec(cmdb.url, { maxListPages: 2 }), async () => ({}))
  t.teardown(() => few.close())
  await t.rejects(few.list(), { retryable: false, message: /more than 2 pages \(maxListPages\)/ })

  cmdb.paging = 'loop'
  await t.rejects(b.list(), { retryable: false, message: /a page already read \(a loop\)|one already read/ })
  cmdb.paging = 'elsewhere'
  await t.rejects(b.list(), { retryable: false, message: /points outside the backend url/ })
  t.ok(cmdb.requests.every((r) => r.path.startsWith('/api/v1/instances')), 'no request left the backend url')
})

t.test('deadlines are total, answers capped: drips, stalls, resets, floods', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  cmdb.records.set(UID, record)
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())

  cmdb.fault = 'drip' // a byte every 200 ms: never idle for a second, never done within one
  let started = Date.now()
  await t.rejects(b.list(), { retryable: true, message: 'backend cmdb: list failed: no complete answer within 1s' })
  const dripMs = Date.now() - started
  t.ok(dripMs < 2500, `a dripping answer was cut at ${dripMs} ms (timeout 1 s)`)

  cmdb.fault = 'stall'
  started = Date.now()
  await t.rejects(b.register(record), { retryable: true, message: /no complete answer within 1s/ })
  t.ok(Date.now() - started < 2500, 'a stalled server too')

  cmdb.fault = 'reset'
  await t.rejects(b.deregister(record), { retryable: true, message: /connection reset|closed before the answer/ })

  cmdb.fault = 'flood'
  const small = new HttpBackend(spec(cmdb.url, { maxResponseBytes: 4096 }), async () => ({}))
  t.teardown(() => small.close())
  await t.rejects(small.list(), { retryable: false, message: 'backend cmdb: list failed: the answer exceeds maxResponseBytes (4096 bytes)' })

  cmdb.fault = undefined
  t.same(await b.list(), [{ uid: UID, namespace: 'shop', pod: 'p' }], 'and it works again once the CMDB does')

  const refused = new HttpBackend(spec('http://127.0.0.1:1/x'), async () => ({}))
  t.teardown(() => refused.close())
  await t.rejects(refused.deregister(record), { retryable: true, message: 'backend cmdb: deregister failed: connection refused' })
})

t.test('an aborted call stops at once', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  cmdb.fault = 'stall'
  const b = new HttpBackend(spec(cmdb.url, { timeoutSeconds: 30 }), async () => ({}))
  t.teardown(() => b.close())
  const abort = new AbortController()
  const started = Date.now()
  setTimeout(() => abort.abort(), 100)
  await t.rejects(b.register(record, { signal: abort.signal }), { code: 'ENLIST_ABORTED' })
  t.ok(Date.now() - started < 1000, 'without waiting for the 30 s timeout')
})

t.test('Link headers', async (t) => {
  t.equal(linkNext('<https://x/a?page=2>; rel="next", <https://x/a?page=9>; rel="last"'), 'https://x/a?page=2')
  t.equal(linkNext('<https://x/a?page=1>; rel="prev"'), undefined)
  t.equal(linkNext('</a?p=3>; rel=next'), '/a?p=3')
  t.equal(linkNext('<x>; title="next"; rel="prev next"'), 'x')
  t.equal(linkNext(undefined), undefined)
})

t.test('the cluster mark: the PUT body carries it, list() reports each entry\'s, a metadata key "cluster" is only metadata', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())
  const marked = { ...record, cluster: 'prod-eu-1', metadata: { cluster: 'someone-elses-word' } }
  await b.register(marked)
  t.same(cmdb.records.get(UID), marked, 'the body is the record, mark included')
  cmdb.records.set(uid(1), { uid: uid(1), namespace: 'shop', pod: 'b', cluster: 'dr' })
  cmdb.records.set(uid(2), { uid: uid(2), namespace: 'shop', pod: 'c', metadata: { cluster: 'prod-eu-1' } })
  cmdb.records.set(uid(3), { uid: uid(3), namespace: 'shop', pod: 'd', cluster: '' })
  t.same(
    (await b.list()).sort((x, y) => x.pod.localeCompare(y.pod)),
    [
      { uid: UID, namespace: 'shop', pod: 'p', cluster: 'prod-eu-1' },
      { uid: uid(1), namespace: 'shop', pod: 'b', cluster: 'dr' },
      { uid: uid(2), namespace: 'shop', pod: 'c', cluster: undefined },
      { uid: uid(3), namespace: 'shop', pod: 'd', cluster: undefined },
    ].sort((x, y) => x.pod.localeCompare(y.pod)),
    'the record\'s cluster field is the mark; metadata.cluster and an empty one are not',
  )
})

t.test('adopt: an unmarked entry is PUT again with the mark (its pod lives) or deleted (gone); a marked one is never touched', async (t) => {
  const cmdb = await startCmdb()
  t.teardown(() => cmdb.close())
  const b = new HttpBackend(spec(cmdb.url), async () => ({}))
  t.teardown(() => b.close())
  cmdb.records.set(UID, { ...record })
  cmdb.records.set(uid(1), { ...record, uid: uid(1), pod: 'gone' })
  cmdb.records.set(uid(2), { ...record, uid: uid(2), pod: 'theirs', cluster: 'dr' })
  const [live, gone, theirs] = await Promise.all([UID, uid(1), uid(2)].map(async (u) => (await b.list()).find((e) => e.uid === u)!))
  await b.adopt(live!, { ...record, cluster: 'prod-eu-1' })
  t.same(cmdb.records.get(UID), { ...record, cluster: 'prod-eu-1' }, 'the live pod\'s entry now carries the mark (the uid is the key: one entry)')
  await b.adopt(gone!, undefined)
  t.notOk(cmdb.records.has(uid(1)), 'the gone pod\'s unmarked entry is removed')
  const sent = cmdb.requests.length
  await t.rejects(b.adopt(theirs!, undefined), { retryable: false, message: /carries cluster dr's mark; only unmarked entries are adopted/ })
  await t.rejects(b.adopt(theirs!, { ...record, uid: uid(2), cluster: 'prod-eu-1' }), /only unmarked entries are adopted/)
  await t.rejects(b.adopt(gone!, { ...record, uid: uid(1) }), { message: /carries no cluster mark to adopt it with/ }, 'an unmarked record would leave it unmarked')
  await t.rejects(b.adopt(gone!, { ...record, cluster: 'prod-eu-1' }), { message: /record is of pod UID .*, not the entry's/ })
  t.equal(cmdb.requests.length, sent, 'nothing was sent for those')
  t.same(cmdb.records.get(uid(2)), { ...record, uid: uid(2), pod: 'theirs', cluster: 'dr' }, 'another cluster\'s entry as it was')
})

t.test("the controller's sweep with the http backend removes this cluster's stray, never another cluster's or an unmarked entry", async (t) => {
  const c = await fakeCluster({ backends: ['cmdb'] }) // cluster.name "test"
  const cmdb = await startCmdb()
  const http = new HttpBackend(spec(cmdb.url), async () => ({}))
  // the real http backend in the place of the fake one the policy set up
  const inner = c.registry as unknown as { current: Backend[] }
  inner.current = inner.current.map((b) => (b.name === 'cmdb' ? http : b))
  const controller = new RegistryController({
    client: c.kube.client,
    pods: c.pods,
    registry: c.registry,
    events: c.events,
    metrics: c.metrics,
    log: c.log,
    keysKnown: () => true,
    sweepIntervalMs: () => 3_600_000,
    sweepRate: () => 10_000,
  })
  t.teardown(async () => {
    await controller.stop()
    await c.stop()
    http.close()
    await cmdb.close()
  })
  const service = new RegistrationService({
    client: c.kube.client,
    auth: new TokenAuthenticator(c.kube.client, c.metrics),
    pods: c.pods,
    dependencies: new DependencyCache(c.kube, c.log),
    registry: c.registry,
    events: c.events,
    keys: c.keys,
    metrics: c.metrics,
    log: c.log,
    backendBudgetMs: 2000,
  })
  // a pod as admission leaves it (test/helpers/fake-cluster.ts enlistedPod), with a real pod
  // UID: the http backend takes nothing else as a path
  const decision = { namespace: 'shop', serviceAccount: 'orders', service: 'orders', metadata: { interface: 'com.acme.Orders' }, dependsOn: [] }
  const annotations = { [STATUS_ANNOTATION]: sealedStatus(decision, c.signing) }
  const p = { uid: uid(100), token: fakeToken('shop/orders-live') }
  c.kube.put(podAt('shop', 'orders-live'), runningPod({ namespace: 'shop', name: 'orders-live', uid: p.uid, serviceAccount: 'orders', labels: { app: 'orders', [MANAGED_LABEL]: 'true' }, annotations }))
  c.kube.tokens.set(p.token, { namespace: 'shop', serviceAccount: 'orders', pod: 'orders-live', uid: p.uid })
  await service.register(`Bearer ${p.token}`, { waitMs: 0 })
  await until('the cache to see the registered condition', () => c.pods.byUid(p.uid)?.status.conditions?.[0]?.status === 'True')
  const own = cmdb.records.get(p.uid)
  t.match(own, { uid: p.uid, cluster: 'test' }, 'the registration PUT the record with this cluster\'s mark')

  // entries of pods this cluster does not have: its own stray, another cluster's, unmarked
  const entry = (i: number, pod: string, cluster?: string) => ({ ...record, uid: uid(i), pod, ...(cluster ? { cluster } : {}) })
  cmdb.records.set(uid(1), entry(1, 'own-stray', 'test'))
  cmdb.records.set(uid(2), entry(2, 'theirs', 'dr'))
  cmdb.records.set(uid(3), entry(3, 'unmarked'))
  await controller.sweep()
  t.notOk(cmdb.records.has(uid(1)), "this cluster's stray (its pod is gone) removed")
  t.same(cmdb.records.get(uid(2)), entry(2, 'theirs', 'dr'), "another cluster's entry left alone, byte for byte")
  t.same(cmdb.records.get(uid(3)), entry(3, 'unmarked'), 'an unmarked entry left alone')
  t.same(cmdb.records.get(p.uid), own, 'the live pod keeps its entry')
  t.same(cmdb.requests.filter((r) => r.method === 'DELETE').map((r) => r.path.split('/').pop()), [uid(1)], 'one DELETE, of its own stray')
  t.equal(await metricValue(c.metrics.foreignEntries, { backend: 'cmdb', kind: 'other' }), 1, 'counted: another cluster\'s')
  t.equal(await metricValue(c.metrics.foreignEntries, { backend: 'cmdb', kind: 'unmarked' }), 1, 'counted: unmarked')
  t.equal(await metricValue(c.metrics.strays, { backend: 'cmdb' }), 1)

  // a backend that lost the live pod's entry gets it again, marked
  cmdb.records.delete(p.uid)
  await controller.sweep()
  t.same(cmdb.records.get(p.uid), own, 'rewritten, with the mark')
  t.ok(cmdb.records.has(uid(2)) && cmdb.records.has(uid(3)), 'a second sweep still leaves the others alone')
})
