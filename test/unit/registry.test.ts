// Registration's pure parts: the record and its k/v encoding, dependency readiness,
// token identities, and the queue and backoff the controller relies on.
import t from 'tap'
import type { V1Endpoints, V1Pod, V1Service } from '@kubernetes/client-node'
import { WorkQueue } from '../../src/controller/queue.js'
import { Backoff } from '../../src/lib/backoff.js'
import { identityOf, tokenExpiry } from '../../src/registration/auth.js'
import { parseDecidedDependencies } from '../../src/contract/dependencies.js'
import { endpointsReady, missingDependencies } from '../../src/registration/dependencies.js'
import { buildRecord, decodeRecord, encodeRecord, fromPairs, toPairs, type RegistryRecord } from '../../src/registry/record.js'

const record: RegistryRecord = {
  uid: 'u-1',
  namespace: 'shop',
  pod: 'orders-1',
  service: 'orders',
  ip: '10.0.0.5',
  ips: ['10.0.0.5', 'fd00::5'],
  hostIP: '192.168.1.2',
  node: 'n1',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { port: 9090, protocol: 'UDP' }],
  metadata: { interface: 'com.acme.Orders', group: 'g1', 版本: 'v1' },
  registeredAt: '2026-11-22T03:00:00Z',
  advertised: { mode: 'nodePort', address: '203.0.113.7', ports: [{ name: 'http', port: 30080, containerPort: 8080, protocol: 'TCP' }] },
}

t.test('the k/v form: flat pairs, metadata keys at the top level', async (t) => {
  const pairs = toPairs(record)
  t.same(pairs.slice(0, 11).map((p) => p.k), ['uid', 'namespace', 'pod', 'service', 'ip', 'ips', 'hostIP', 'node', 'ports', 'registeredAt', 'advertised'])
  t.same(pairs.slice(11), [{ k: 'interface', v: 'com.acme.Orders' }, { k: 'group', v: 'g1' }, { k: '版本', v: 'v1' }])
  t.ok(pairs.every((p) => typeof p.v === 'string'), 'every value a string')
  t.same(fromPairs(pairs), record)
  const encoded = encodeRecord(record)
  t.match(encoded, /^[A-Za-z0-9+/]+=*$/)
  t.same(JSON.parse(Buffer.from(encoded, 'base64').toString()), pairs)
  t.same(decodeRecord(encoded), record, 'round trip')
})

t.test('decoding rejects what is not the k/v form', async (t) => {
  t.throws(() => decodeRecord('%%%'), { code: 'ENLIST_RECORD_INVALID' })
  t.throws(() => decodeRecord(Buffer.from('{"k":"a"}').toString('base64')), /not a JSON array/)
  t.throws(() => decodeRecord(Buffer.from('[{"k":"a","v":1}]').toString('base64')), /every element/)
  t.same(decodeRecord(Buffer.from('[]').toString('base64')).uid, '', 'an empty record decodes empty')
  t.same(decodeRecord(Buffer.from('[{"k":"ports","v":"nonsense"}]').toString('base64')).ports, [], 'unreadable ports: none')
})

t.test('the record from a pod and what admission decided', async (t) => {
  const pod: V1Pod = {
    metadata: { name: 'orders-1', namespace: 'shop', uid: 'u-1' },
    spec: {
      nodeName: 'n1',
      containers: [
        { name: 'a', ports: [{ name: 'http', containerPort: 8080 }] },
        { name: 'b', ports: [{ containerPort: 53, protocol: 'UDP' }] },
        { name: 'c' },
      ],
    },
    status: { podIP: '10.0.0.5', hostIP: '192.168.1.2' },
  }
  const decision = { service: 'orders', metadata: { group: 'g1' } }
  const record = buildRecord(pod, decision, 'T')
  t.same(record, {
    uid: 'u-1',
    namespace: 'shop',
    pod: 'orders-1',
    service: 'orders',
    ip: '10.0.0.5',
    ips: ['10.0.0.5'],
    hostIP: '192.168.1.2',
    node: 'n1',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }],
    metadata: { group: 'g1' },
    registeredAt: 'T',
    advertised: { mode: 'podIP', address: '10.0.0.5', ports: [{ name: 'http', port: 8080, containerPort: 8080, protocol: 'TCP' }, { port: 53, containerPort: 53, protocol: 'UDP' }] },
  })
  t.not(record.metadata, decision.metadata, 'the record has its own copy of the metadata')
})

t.test('dependency readiness', async (t) => {
  const services = new Map<string, V1Service>([
    ['shop/db', { spec: { ports: [{ name: 'pg', port: 5432 }, { name: 'metrics', port: 9187 }] } }],
    ['shop/cache', { spec: { ports: [{ port: 6379 }] } }],
    ['shop/ext', { spec: { type: 'ExternalName' } }],
    ['pay/ledger', { spec: { ports: [{ name: 'grpc', port: 443 }] } }],
  ])
  const endpoints = new Map<string, V1Endpoints>([
    ['shop/db', { subsets: [{ addresses: [{ ip: '1.1.1.1' }], ports: [{ name: 'pg', port: 5432 }] }, { notReadyAddresses: [{ ip: '1.1.1.2' }], ports: [{ name: 'metrics', port: 9187 }] }] }],
    ['shop/cache', { subsets: [{ addresses: [{ ip: '1.1.1.3' }], ports: [{ port: 6379 }] }] }],
    ['pay/ledger', { subsets: [{ notReadyAddresses: [{ ip: '1.1.1.4' }], ports: [{ name: 'grpc', port: 443 }] }] }],
  ])
  const facts = { service: (ns: string, n: string) => services.get(`${ns}/${n}`), readyEndpoints: (ns: string, n: string, port?: string) => endpointsReady(endpoints.get(`${ns}/${n}`), port) }
  const check = (v: string) => missingDependencies(parseDecidedDependencies([v]), facts)
  t.same(check(''), [])
  t.same(check('shop/db'), [], 'any ready endpoint')
  t.same(check('shop/db:5432'), [], 'by port number')
  t.same(check('shop/db:pg'), [], 'by port name')
  t.same(check('shop/db:metrics'), [{ dependency: 'shop/db:metrics', reason: 'no ready endpoints on port metrics' }], 'ready elsewhere does not count')
  t.same(check('shop/db:3306'), [{ dependency: 'shop/db:3306', reason: 'the Service has no port 3306' }])
  t.same(check('shop/cache:6379'), [], 'an unnamed single port')
  t.same(check('shop/ext:80'), [], 'ExternalName: nothing to count')
  t.same(check('pay/ledger'), [{ dependency: 'pay/ledger', reason: 'no ready endpoints' }], 'only not-ready addresses')
  t.same(check('shop/nope'), [{ dependency: 'shop/nope', reason: 'Service not found' }])
  t.same(check('shop/db,shop/nope,pay/ledger:grpc').map((m) => m.dependency), ['shop/nope', 'pay/ledger:grpc'])
})

t.test('token identities', async (t) => {
  const extra = { 'authentication.kubernetes.io/pod-name': ['orders-1'], 'authentication.kubernetes.io/pod-uid': ['u-1'] }
  t.same(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'system:serviceaccount:shop:orders', extra } }), { namespace: 'shop', serviceAccount: 'orders', pod: 'orders-1', uid: 'u-1' })
  t.equal(identityOf({ authenticated: false, error: 'expired' }), 'token rejected by the apiserver')
  t.equal(identityOf({ authenticated: true, audiences: ['other'], user: { username: 'system:serviceaccount:a:b', extra } }), 'token is not for audience enlist')
  t.equal(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'alice', extra } }), 'token is not a service-account token')
  t.match(identityOf({ authenticated: true, audiences: ['enlist'], user: { username: 'system:serviceaccount:a:b' } }), /not bound to a pod/)
  const jwt = (payload: object) => `h.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.s`
  t.equal(tokenExpiry(jwt({ exp: 2000000000 })), 2000000000000)
  t.equal(tokenExpiry(jwt({})), undefined)
  t.equal(tokenExpiry('opaque'), undefined)
  t.equal(tokenExpiry('a.!!!.c'), undefined)
})

t.test('work queue: dedup, no parallel processing of a key, rate-limited retries', async (t) => {
  const q = new WorkQueue(10, 40)
  q.add('a')
  q.add('a')
  q.add('b')
  t.equal(q.length, 2, 'deduplicated')
  const k1 = await q.get()
  t.equal(k1, 'a')
  q.add('a') // while processing: comes back after done, not now
  t.equal(await q.get(), 'b')
  t.equal(q.length, 0)
  q.done('a')
  t.equal(q.length, 1, 're-queued once done')
  t.equal(await q.get(), 'a')
  q.done('a')
  q.done('b')
  t.equal(q.addRateLimited('x'), 10)
  t.equal(q.addRateLimited('x'), 20)
  t.equal(q.addRateLimited('x'), 40)
  t.equal(q.addRateLimited('x'), 40, 'capped')
  t.equal(q.retries('x'), 4)
  q.forget('x')
  t.equal(q.retries('x'), 0)
  t.equal(await q.get(), 'x', 'delivered after its delay')
  const waiting = q.get()
  q.shutdown()
  t.equal(await waiting, undefined, 'waiters are released on shutdown')
  t.equal(await q.get(), undefined)
})

t.test('work queue: what waits out a delay can be retried now, all of it or the first due', async (t) => {
  const q = new WorkQueue(60_000, 300_000)
  q.addAfter('in-50s', 50_000)
  q.addAfter('in-20s', 20_000)
  q.addRateLimited('failed-twice')
  q.forget('failed-twice')
  q.retryNow()
  t.equal(await q.get(), 'in-50s', 'retryNow queues everything waiting')
  q.done('in-50s')
  t.equal(await q.get(), 'in-20s')
  q.done('in-20s')
  t.equal(await q.get(), 'failed-twice')
  q.done('failed-twice')
  q.addAfter('in-50s', 50_000)
  q.addAfter('in-20s', 20_000)
  q.addAfter('in-30s', 30_000)
  t.equal(q.waiting, 3)
  t.equal(q.retryEarliest(), 'in-20s', 'the one whose delay ends first')
  t.equal(q.waiting, 2)
  t.equal(await q.get(), 'in-20s')
  q.addRateLimited('x')
  q.addRateLimited('x')
  q.retryNow()
  t.equal(q.retries('x'), 2, 'a key retried early keeps its failure count: failing again backs off from there')
  q.shutdown()
  t.equal(q.retryEarliest(), undefined)
})

t.test('backoff: exponential, capped, jittered within bounds', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false })
  t.same([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000])
  b.reset()
  t.equal(b.next(), 100)
  const j = new Backoff({ initialMs: 100, maxMs: 1000 })
  for (let i = 0; i < 200; i++) {
    const d = j.next()
    t.ok(d >= 10 && d <= 1000, `${d} within bounds`)
  }
})
