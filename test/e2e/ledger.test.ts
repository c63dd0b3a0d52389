// The amqp backend's ledger on a real apiserver: 50,000 entries in the sharded ConfigMaps,
// read back by a fresh instance (an enlist restart), two replicas writing the same shards at
// once (resourceVersion conflicts re-read and re-apply), every shard under the object limit.
import t from 'tap'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { ConfigMapLedger, LEDGER_PREFIX, LEDGER_SHARDS } from '../../src/registry/amqp/backend.js'
import { ConfigMapStore } from '../../src/registry/events/configmap-store.js'
import type { LedgerEntry } from '../../src/registry/events/backend.js'
import { controlPlaneFor } from '../harness/control-plane.js'

const cp = await controlPlaneFor(t, { controllerManager: false })
await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'enlist-system' } })

const store = () =>
  new ConfigMapStore({ client: cp.client, namespace: 'enlist-system', prefix: LEDGER_PREFIX, shards: LEDGER_SHARDS, keyPrefix: 'amqp.', labels: { 'app.kubernetes.io/component': 'ledger' } })
const entry = (i: number): LedgerEntry => ({
  state: 'registered',
  data: {
    uid: `0b7f${String(i).padStart(4, '0')}-2c1d-4e5f-8a9b-${String(i).padStart(12, '0')}`,
    namespace: `team-${i % 50}`,
    pod: `orders-api-7d9c5b8f6-${i.toString(36).padStart(5, 'x')}`,
    service: 'orders-api',
    ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    hostIP: '192.168.10.21',
    node: `node-${i % 40}`,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    metadata: { interface: 'com.acme.Orders', group: 'g1' },
    registeredAt: '2026-11-23T10:00:00Z',
    advertised: { mode: 'podIP', address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, ports: [{ name: 'http', port: 8080, containerPort: 8080, protocol: 'TCP' }] },
  },
})
const N = 50_000

t.test('50,000 entries: written, read back after a restart, every shard under 1 MiB', async (t) => {
  const ledger = new ConfigMapLedger(store())
  const t0 = Date.now()
  await Promise.all(Array.from({ length: N }, (_, i) => ledger.put(entry(i).data.uid, entry(i))))
  const writeMs = Date.now() - t0
  const t1 = Date.now()
  const listed = await new ConfigMapLedger(store()).list()
  const listMs = Date.now() - t1
  t.equal(listed.length, N)
  t.same(listed.find((e) => e.uid === entry(4242).data.uid)?.entry, entry(4242))
  const cms = await cp.client.get<{ items: V1ConfigMap[] }>('/api/v1/namespaces/enlist-system/configmaps', { labelSelector: 'app.kubernetes.io/component=ledger' })
  t.equal(cms.items.length, LEDGER_SHARDS)
  const sizes = cms.items.map((c) => Object.entries(c.data ?? {}).reduce((n, [k, v]) => n + k.length + v.length, 0))
  t.ok(Math.max(...sizes) < 900 * 1024, `largest shard ${Math.max(...sizes)} bytes`)
  t.comment(`50,000 entries: written in ${writeMs} ms (batched per shard), listed in ${listMs} ms; shards ${Math.min(...sizes)}..${Math.max(...sizes)} bytes`)
})

t.test('two replicas writing the same shards at once lose nothing', async (t) => {
  const [a, b] = [new ConfigMapLedger(store()), new ConfigMapLedger(store())]
  const ops: Array<Promise<void>> = []
  for (let i = 0; i < 400; i++) {
    const e = entry(N + i)
    ops.push((i % 2 ? a : b).put(e.data.uid, e))
    if (i % 4 === 0) ops.push((i % 2 ? b : a).remove(entry(i).data.uid))
  }
  await Promise.all(ops)
  const uids = new Set((await a.list()).map((e) => e.uid))
  t.equal(uids.size, N + 400 - 100)
  t.ok(Array.from({ length: 400 }, (_, i) => entry(N + i).data.uid).every((u) => uids.has(u)), 'every write of both')
  t.notOk(uids.has(entry(0).data.uid), 'and every removal')
})

t.test('a full shard refuses a write, naming the ConfigMap', async (t) => {
  const tiny = new ConfigMapStore({ client: cp.client, namespace: 'enlist-system', prefix: 'enlist-tiny', shards: 1, keyPrefix: '', labels: {}, maxShardBytes: 200 })
  await tiny.set('a', 'x'.repeat(100))
  await t.rejects(tiny.set('b', 'y'.repeat(150)), /ConfigMap enlist-system\/enlist-tiny-00 would hold \d+ bytes, over 200: the ledger is full/)
  await tiny.set('a', undefined)
  await tiny.set('b', 'y'.repeat(150))
  t.same(await tiny.entries(), [['b', 'y'.repeat(150)]], 'removals always pass; then it fits')
})
