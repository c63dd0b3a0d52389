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

// The wire format pinned apart from the code: literals written by hand from docs/registration.md
// ("base64 of the JSON array of {"k","v"} pairs: one pair per record field (ports and advertised
// as JSON text, ips joined with commas) and one per metadata key") and encoded with coreutils base64, not encodeRecord.
// A change to the format fails here even if toPairs and decodeRecord change together.
const WIRE = 'W3siayI6InVpZCIsInYiOiJ1LTEifSx7ImsiOiJuYW1lc3BhY2UiLCJ2Ijoic2hvcCJ9LHsiayI6InBvZCIsInYiOiJvcmRlcnMtMSJ9LHsiayI6InNlcnZpY2UiLCJ2Ijoib3JkZXJzIn0seyJrIjoiaXAiLCJ2IjoiMTAuMC4wLjUifSx7ImsiOiJpcHMiLCJ2IjoiMTAuMC4wLjUsZmQwMDo6NSJ9LHsiayI6Imhvc3RJUCIsInYiOiIxOTIuMTY4LjEuMiJ9LHsiayI6Im5vZGUiLCJ2IjoibjEifSx7ImsiOiJwb3J0cyIsInYiOiJbe1wibmFtZVwiOlwiaHR0cFwiLFwicG9ydFwiOjgwODAsXCJwcm90b2NvbFwiOlwiVENQXCJ9LHtcInBvcnRcIjo5MDkwLFwicHJvdG9jb2xcIjpcIlVEUFwifV0ifSx7ImsiOiJyZWdpc3RlcmVkQXQiLCJ2IjoiMjAyNi0xMS0yMlQwMzowMDowMFoifSx7ImsiOiJhZHZlcnRpc2VkIiwidiI6IntcIm1vZGVcIjpcIm5vZGVQb3J0XCIsXCJhZGRyZXNzXCI6XCIyMDMuMC4xMTMuN1wiLFwicG9ydHNcIjpbe1wibmFtZVwiOlwiaHR0cFwiLFwicG9ydFwiOjMwMDgwLFwiY29udGFpbmVyUG9ydFwiOjgwODAsXCJwcm90b2NvbFwiOlwiVENQXCJ9XX0ifSx7ImsiOiJpbnRlcmZhY2UiLCJ2IjoiY29tLmFjbWUuT3JkZXJzIn0seyJrIjoiZ3JvdXAiLCJ2IjoiZzEifSx7ImsiOiLniYjmnKwiLCJ2IjoidjEifV0='
// written before the advertised field existed: reads as podIP
const WIRE_OLD = 'W3siayI6InVpZCIsInYiOiJ1LTkifSx7ImsiOiJuYW1lc3BhY2UiLCJ2Ijoic2hvcCJ9LHsiayI6InBvZCIsInYiOiJ3ZWItMCJ9LHsiayI6InNlcnZpY2UiLCJ2Ijoid2ViIn0seyJrIjoiaXAiLCJ2IjoiMTAuMjQ0LjAuOSJ9LHsiayI6ImlwcyIsInYiOiIxMC4yNDQuMC45In0seyJrIjoiaG9zdElQIiwidiI6IjEwLjI1MC4wLjIifSx7ImsiOiJub2RlIiwidiI6Im5vZGUtMSJ9LHsiayI6InBvcnRzIiwidiI6IltdIn0seyJrIjoicmVnaXN0ZXJlZEF0IiwidiI6IjIwMjYtMDEtMDJUMDM6MDQ6MDVaIn1d'

t.test('the annotation on the wire, as docs/registration.md describes it', async (t) => {
  t.equal(encodeRecord(record), WIRE, 'written byte for byte')
  t.same(decodeRecord(WIRE), record, 'and read back')
  t.same(decodeRecord(WIRE_OLD), {
    uid: 'u-9',
    namespace: 'shop',
    pod: 'web-0',
    service: 'web',
    ip: '10.244.0.9',
    ips: ['10.244.0.9'],
    hostIP: '10.250.0.2',
    node: 'node-1',
    ports: [],
    metadata: {},
    registeredAt: '2026-01-02T03:04:05Z',
    advertised: { mode: 'podIP', address: '10.244.0.9', ports: [] },
  }, 'a record without advertised reads as podIP')
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
