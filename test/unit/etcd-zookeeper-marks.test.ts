// The cluster mark in etcd's keys and ZooKeeper's provider nodes (src/registry/ownership.ts):
// what is an entry of which cluster, what is unmarked, what is a claim and never an entry.
// Pure: the stores themselves are in test/e2e/etcd.test.ts and test/e2e/zookeeper.test.ts.
import t from 'tap'
import { parseEtcdKey } from '../../src/registry/etcd.js'
import { dubboProvider, enlistOwner, providerNodeName } from '../../src/registry/dubbo.js'
import { ownership } from '../../src/registry/ownership.js'
import { isPodUid, markedProviderNode } from '../../src/registry/zookeeper.js'

const UID = '0b9a7c1e-4f2d-4a63-9e1b-2c7d5f8a9b10'

t.test('etcd: <cluster>/<namespace>/<service>/<uid> is marked, <namespace>/<service>/<uid> unmarked', async (t) => {
  t.same(parseEtcdKey(`east/shop/orders/${UID}`), { kind: 'entry', cluster: 'east', namespace: 'shop', service: 'orders', uid: UID })
  t.same(parseEtcdKey(`shop/orders/${UID}`), { kind: 'entry', cluster: undefined, namespace: 'shop', service: 'orders', uid: UID }, 'the layout before marks')
  t.same(parseEtcdKey('.clusters/east'), { kind: 'claim', name: 'east' }, 'a claim, never an entry')
  t.same(parseEtcdKey('.clusters/east/x/y'), { kind: 'other' }, 'nothing under the claims is an entry')
  t.same(parseEtcdKey(`.clusters/orders/${UID}`), { kind: 'other' })
  for (const k of ['', 'shop', 'shop/orders', `east//orders/${UID}`, `a/b/c/d/${UID}`, `shop/orders/${UID}/`]) t.same(parseEtcdKey(k), { kind: 'other' }, `"${k}" is no entry`)
  // a cluster named as a namespace: the count of segments tells the layouts apart
  const entry = (k: string) => {
    const e = parseEtcdKey(k)
    return e.kind === 'entry' ? e : undefined
  }
  t.equal(entry(`shop/shop/orders/${UID}`)?.cluster, 'shop')
  t.equal(entry(`shop/orders/${UID}`)?.cluster, undefined)
  // who owns what, seen from cluster east
  t.equal(ownership(entry(`east/shop/orders/${UID}`)!, 'east'), 'own')
  t.equal(ownership(entry(`west/shop/orders/${UID}`)!, 'east'), 'other')
  t.equal(ownership(entry(`shop/orders/${UID}`)!, 'east'), 'unmarked')
})

t.test('ZooKeeper layout dubbo: enlist.cluster in the provider URL', async (t) => {
  const input = {
    uid: UID,
    namespace: 'shop',
    pod: 'orders-1',
    service: 'orders',
    metadata: { interface: 'com.acme.Orders', version: '1.0.0' },
    registeredAt: '2026-11-22T03:00:00Z',
    host: '10.244.0.13',
    port: 20880,
  }
  const west = providerNodeName(dubboProvider({ ...input, cluster: 'west' }))
  const old = providerNodeName(dubboProvider(input))
  t.equal(enlistOwner(west)?.cluster, 'west')
  t.equal(enlistOwner(old)?.cluster, undefined, 'written before marks: unmarked')
  t.equal(ownership(enlistOwner(west)!, 'east'), 'other')
  t.equal(ownership(enlistOwner(old)!, 'east'), 'unmarked')
  // migration of an unmarked node of this cluster's pod: the node it would have been written as
  t.equal(markedProviderNode(old, 'east'), providerNodeName(dubboProvider({ ...input, cluster: 'east' })))
  t.equal(markedProviderNode(west, 'east'), providerNodeName(dubboProvider({ ...input, cluster: 'east' })), 'one mark, never two')
  t.equal(markedProviderNode('not-a-url', 'east'), undefined)
  t.equal(markedProviderNode('%%%', 'east'), undefined)
})

t.test('ZooKeeper layout enlist: a pod UID at depth three is the old layout', async (t) => {
  t.ok(isPodUid(UID))
  t.ok(isPodUid(UID.toUpperCase()))
  for (const s of ['orders', 'shop', 'east', '.clusters', `${UID}x`, UID.replace(/-/g, '')]) t.notOk(isPodUid(s), s)
})
