// The registry record: built from a pod and what admission decided, and its flat k/v form.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
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
