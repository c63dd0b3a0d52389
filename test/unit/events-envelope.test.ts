// The event envelope: CloudEvents 1.0 attributes, deterministic ids, subjects and routing
// keys, the parser, and docs/events.schema.json agreeing with the code.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import {
  deregisteredEvent,
  encodeEvent,
  eventId,
  EventFormatError,
  eventCluster,
  natsSubject,
  parseEvent,
  registeredEvent,
  routingKey,
  token,
} from '../../src/events/envelope.js'
import type { RegistryRecord } from '../../src/registry/record.js'

const record: RegistryRecord = {
  uid: '6f1c2f0e-8d3a-4c55-9b1e-0c0ffee00001',
  namespace: 'shop',
  pod: 'orders-7d9c-x2k4p',
  service: 'orders',
  ip: '10.244.0.13',
  ips: ['10.244.0.13'],
  hostIP: '192.168.1.5',
  node: 'node-1',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  metadata: { interface: 'com.acme.Orders' },
  registeredAt: '2026-11-23T10:00:00Z',
  advertised: { mode: 'podIP', address: '10.244.0.13', ports: [{ name: 'http', port: 8080, containerPort: 8080, protocol: 'TCP' }] },
}
const source = 'https://k8s.example.com/clusters/prod-eu-1'
const schema = JSON.parse(readFileSync(new URL('../../docs/events.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>
const validate = new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(schema)

t.test('a registered event is CloudEvents 1.0 with the record as data', async (t) => {
  const e = registeredEvent(source, record)
  t.same(e, {
    specversion: '1.0',
    id: `${record.uid}.registered`,
    source,
    type: 'io.enlist.registration.registered',
    subject: 'shop/orders-7d9c-x2k4p',
    time: record.registeredAt,
    datacontenttype: 'application/json',
    data: record,
  })
  t.ok(validate(JSON.parse(encodeEvent(e).toString())), JSON.stringify(validate.errors))
})

t.test('the same fact re-published is the same event, byte for byte', async (t) => {
  t.equal(encodeEvent(registeredEvent(source, { ...record })).toString(), encodeEvent(registeredEvent(source, record)).toString())
  const d1 = deregisteredEvent(source, record, '2026-11-23T11:00:00Z')
  const d2 = deregisteredEvent(source, record, '2026-11-23T11:00:00Z')
  t.equal(d1.id, d2.id)
  t.equal(d1.id, eventId(record.uid, 'deregistered'))
  t.not(eventId(record.uid, 'registered'), eventId(record.uid, 'deregistered'), 'two facts of one pod: two ids')
  t.not(eventId('other-uid', 'registered'), eventId(record.uid, 'registered'))
})

t.test('a deregistered event carries at least the identity and the service', async (t) => {
  const minimal = deregisteredEvent(source, { uid: 'u-1', namespace: 'shop', pod: 'p', service: 'orders' }, '2026-11-23T11:00:00Z')
  t.ok(validate(minimal), JSON.stringify(validate.errors))
  t.ok(validate(deregisteredEvent(source, record, '2026-11-23T11:00:00Z')), JSON.stringify(validate.errors))
  t.same(parseEvent(encodeEvent(minimal)), minimal)
})

t.test('subjects and routing keys', async (t) => {
  const e = registeredEvent(source, record)
  t.equal(natsSubject('enlist.registrations', e), 'enlist.registrations.shop.orders.registered')
  t.equal(routingKey(deregisteredEvent(source, record, 'T')), 'shop.orders.deregistered')
  t.equal(token('api.v2'), 'api_v2', 'a dot in a name would split the token')
  t.equal(token('a*b>c d'), 'a_b_c_d', 'wildcards and spaces never reach a subject')
  t.equal(token(''), '_')
})

t.test('the parser refuses what the schema refuses, naming the problem', async (t) => {
  const good = JSON.parse(encodeEvent(registeredEvent(source, record)).toString()) as Record<string, unknown>
  const cases: Array<[string, (e: Record<string, unknown>) => void, RegExp]> = [
    ['specversion', (e) => (e.specversion = '0.3'), /specversion must be "1.0"/],
    ['type', (e) => (e.type = 'com.example.other'), /type must be io\.enlist/],
    ['id', (e) => (e.id = 'random'), /id must be "6f1c.*\.registered"/],
    ['source', (e) => delete e.source, /source must be a non-empty string/],
    ['data.uid', (e) => delete (e.data as Record<string, unknown>).uid, /data\.uid/],
    ['data.ports', (e) => ((e.data as Record<string, unknown>).ports = [{ port: 'x' }]), /data\.ports/],
    ['data.metadata', (e) => ((e.data as Record<string, unknown>).metadata = { a: 1 }), /data\.metadata/],
    ['data.advertised', (e) => delete (e.data as Record<string, unknown>).advertised, /data\.advertised/],
  ]
  for (const [what, mutate, message] of cases) {
    const e = structuredClone(good)
    mutate(e)
    t.throws(() => parseEvent(JSON.stringify(e)), message, what)
    t.notOk(validate(e), `the schema refuses it too: ${what}`)
  }
  t.throws(() => parseEvent('{'), EventFormatError)
  t.throws(() => parseEvent('[]'), /not a JSON object/)
  t.same(parseEvent(Buffer.from(JSON.stringify(good))), good)
})

t.test('the cluster mark: data.cluster in both events, checked as the schema does; a metadata key "cluster" is its own', async (t) => {
  // metadata is its own object: a key named cluster there is a tenant's, in any spelling
  const marked: RegistryRecord = { ...record, cluster: 'prod-eu-1', metadata: { cluster: 'Not A Label_at all', interface: 'com.acme.Orders' } }
  const reg = registeredEvent(source, marked)
  t.equal(reg.data.cluster, 'prod-eu-1', 'registered: the record, mark included, is the data')
  t.equal(eventCluster(reg), 'prod-eu-1')
  t.ok(validate(JSON.parse(encodeEvent(reg).toString())), JSON.stringify(validate.errors))
  t.same(parseEvent(encodeEvent(reg)), reg, 'parsed back as published')
  t.equal(parseEvent(encodeEvent(reg)).data.metadata?.cluster, 'Not A Label_at all', "the metadata key is untouched, and not the mark's rules")

  const dereg = deregisteredEvent(source, marked, '2026-11-23T11:00:00Z')
  t.equal(dereg.data.cluster, 'prod-eu-1', 'deregistered: carries the mark of the record it had published')
  t.ok(validate(JSON.parse(encodeEvent(dereg).toString())), JSON.stringify(validate.errors))
  const minimal = deregisteredEvent(source, { uid: 'u-1', namespace: 'shop', pod: 'p', service: 'orders', cluster: 'dr' }, '2026-11-23T11:00:00Z')
  t.ok(validate(minimal), JSON.stringify(validate.errors))
  t.equal(eventCluster(parseEvent(encodeEvent(minimal))), 'dr')

  t.equal(eventCluster(registeredEvent(source, record)), undefined, 'an event of an enlist before marks: unmarked, and valid')

  for (const bad of ['Prod', 'prod_eu', '-a', 'a'.repeat(64), '', 7]) {
    for (const e of [registeredEvent(source, marked), deregisteredEvent(source, marked, 'T')]) {
      const body = structuredClone(e) as unknown as { data: Record<string, unknown>; type: string }
      body.data.cluster = bad
      t.throws(() => parseEvent(JSON.stringify(body)), /data\.cluster must be a cluster name \(a DNS-1123 label\)/, `${body.type}: ${JSON.stringify(bad)}`)
      t.notOk(validate(body), `the schema refuses it too: ${JSON.stringify(bad)}`)
    }
  }
})
