// enlist/discovery believes a record only when what a tenant cannot forge agrees with it.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { checkPeer, peerOf, slimPeer } from '../../src/discovery/index.js'
import { encodeRecord, type RegistryRecord } from '../../src/registry/record.js'

const record: RegistryRecord = {
  uid: 'u-1',
  namespace: 'shop',
  pod: 'orders-1',
  service: 'orders',
  ip: '10.244.0.7',
  ips: ['10.244.0.7'],
  hostIP: '192.168.1.2',
  node: 'n1',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  metadata: { interface: 'com.acme.Orders' },
  registeredAt: '2026-11-23T12:00:00Z',
  advertised: { mode: 'podIP' as const, address: '10.244.0.7', ports: [{ name: 'http', port: 8080, containerPort: 8080, protocol: 'TCP' }] },
}

function pod(over: { record?: Partial<RegistryRecord> | string; labels?: Record<string, string>; registered?: string; podIP?: string; deleting?: boolean; phase?: string } = {}): V1Pod {
  const value = typeof over.record === 'string' ? over.record : encodeRecord({ ...record, ...over.record })
  return {
    metadata: {
      uid: 'u-1',
      namespace: 'shop',
      name: 'orders-1',
      labels: over.labels ?? { 'enlist.io/managed': 'true', 'app.io/label': 'app.io-value' },
      annotations: { 'app.io/annotation': value },
      ...(over.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { nodeName: 'n1', containers: [] },
    status: {
      phase: over.phase ?? 'Running',
      podIP: over.podIP ?? '10.244.0.7',
      hostIP: '192.168.1.2',
      conditions: over.registered === undefined ? [{ type: 'enlist.io/registered', status: 'True' }] : over.registered === 'none' ? [] : [{ type: 'enlist.io/registered', status: over.registered }],
    },
  }
}

t.test('a record enlist wrote for a registered pod is a peer', async (t) => {
  t.same(checkPeer(pod()), { peer: record })
  t.same(peerOf(pod()), record)
})

t.test('forged or stale records are dropped, with the reason', async (t) => {
  t.same(checkPeer(pod({ labels: { 'app.io/label': 'app.io-value' } })), { dropped: 'not-managed' }, 'no managed label')
  t.same(checkPeer(pod({ registered: 'none' })), { dropped: 'not-registered' }, 'a record without the condition: a tenant wrote it')
  t.same(checkPeer(pod({ registered: 'False' })), { dropped: 'not-registered' })
  t.same(checkPeer(pod({ record: '%%%' })), { dropped: 'unreadable' })
  t.same(checkPeer(pod({ record: { ip: '203.0.113.7' } })), { dropped: 'not-its-own' }, 'a fake peer address')
  t.same(checkPeer(pod({ record: { uid: 'u-2' } })), { dropped: 'not-its-own' }, 'a record copied from another pod')
  t.same(checkPeer(pod({ record: { namespace: 'payments' } })), { dropped: 'not-its-own' })
  t.same(checkPeer(pod({ record: { node: 'n9' } })), { dropped: 'not-its-own' })
  t.same(checkPeer(pod({ podIP: '10.244.0.8' })), { dropped: 'not-its-own' }, 'the pod has another IP')
  t.equal(peerOf(pod({ record: { ip: '203.0.113.7' } })), undefined)
})

t.test('pods that are going or carry no record are simply not peers', async (t) => {
  t.same(checkPeer(pod({ deleting: true })), { none: true })
  t.same(checkPeer(pod({ phase: 'Succeeded' })), { none: true })
  const bare = pod()
  delete bare.metadata!.annotations
  t.same(checkPeer(bare), { none: true })
})

t.test('a consumer\'s cache keeps what the check reads: the same verdict on the slim pod', async (t) => {
  const cases = [pod(), pod({ labels: {} }), pod({ registered: 'none' }), pod({ record: { ip: '203.0.113.7' } }), pod({ podIP: '10.9.9.9' }), pod({ deleting: true }), pod({ phase: 'Failed' })]
  for (const p of cases) t.same(checkPeer(slimPeer(p)), checkPeer(p))
  const full = pod()
  full.spec!.containers = [{ name: 'app', image: 'x', env: [{ name: 'A', value: 'x'.repeat(1000) }] }]
  t.ok(JSON.stringify(slimPeer(full)).length < JSON.stringify(full).length / 2, 'and little else')
})
