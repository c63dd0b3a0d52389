// The nats and amqp backends in the policy: defaults, and every static check naming the
// field and what is accepted. What cannot be known statically is tested end to end. Both are
// shared backends: the policy names its cluster (the mark on every event's data).
import t from 'tap'
import { stringify } from 'yaml'
import { PolicyError } from '../../src/lib/errors.js'
import { loadPolicy } from '../../src/policy/load.js'

const errorsOf = (backend: Record<string, unknown>): string[] => {
  try {
    loadPolicy(stringify({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', cluster: { name: 'prod-eu-1' }, registry: { backends: [backend] } }))
    return []
  } catch (err) {
    if (err instanceof PolicyError) return err.errors.map((e) => `${e.path}: ${e.message}`)
    throw err
  }
}

t.test('defaults', async (t) => {
  const p = loadPolicy(stringify({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', cluster: { name: 'prod-eu-1' }, registry: { backends: [
    { name: 'ev', type: 'nats', url: 'nats://nats:4222', allowInsecure: true, source: '/clusters/a' },
    { name: 'mq', type: 'amqp', url: 'amqp://rabbit:5672/', allowInsecure: true, source: '/clusters/a' },
  ] } }))
  t.match(p.spec.registry.backends[0], { stream: 'ENLIST_REGISTRATIONS', subjectPrefix: 'enlist.registrations', bucket: 'enlist-registrations', replicas: 1, maxAgeHours: 168, duplicateWindowSeconds: 120, timeoutSeconds: 5, credentialsFromSecret: '', caBundle: '' })
  t.match(p.spec.registry.backends[1], { exchange: 'enlist.registrations', heartbeatSeconds: 30, timeoutSeconds: 5 })
  for (const b of p.spec.registry.backends) t.match(b, { signingKeyFromSecret: 'enlist-event-signing-key' }, `${b.type}: events are signed by default`)
})

t.test('signingKeyFromSecret: a Secret name, or "" to publish unsigned', async (t) => {
  for (const type of ['nats', 'amqp']) {
    const b = { name: 'ev', type, url: `${type}://a`, allowInsecure: true, source: '/c' }
    t.same(errorsOf({ ...b, signingKeyFromSecret: '' }), [], `${type}: unsigned, by choice`)
    t.same(errorsOf({ ...b, signingKeyFromSecret: 'prod-eu-1-signing' }), [])
    t.match(errorsOf({ ...b, signingKeyFromSecret: 'Bad_Name' }), [/signingKeyFromSecret: "Bad_Name" is not a valid Secret name; accepted: a Secret name, or "" to publish unsigned/])
  }
})

t.test('nats: what is wrong and what is accepted', async (t) => {
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'tls://a:4222,tls://b:4222', source: '/c' }), [], 'several servers')
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'tls://a:4222,nats://b:4222', source: '/c' }), ['/registry/backends/0/url (server 2): nats://b:4222 is not encrypted (records and credentials would cross the network in clear): use tls://, or set allowInsecure: true'], 'in clear only when the policy says so')
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'tls://a:4222,nats://b:4222', allowInsecure: true, source: '/c' }), [])
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'http://a', source: '/c' }), ['/registry/backends/0/url: must use tls (or nats with allowInsecure: true); got http'])
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'tls://a:4222,tls://me:pw@b:4222', source: '/c' }), ['/registry/backends/0/url (server 2): must not hold credentials (user:password@); put them in credentialsFromSecret'], 'the server at fault named, its password not echoed')
  t.same(errorsOf({ name: 'ev', type: 'nats', url: 'tls://me:pw@', source: '/c' }), ['/registry/backends/0/url: is not a URL; accepted: tls://host:port (or nats:// with allowInsecure: true)'], 'nor that of a URL that does not parse')
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://me:pw@a:4222', allowInsecure: true, source: '/c' }), [/url: must not hold credentials .*credentialsFromSecret/])
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true, source: 'prod' }), [/source: "prod" is not a URI reference/])
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true, source: '/c', subjectPrefix: '$JS.x' }), [/subjectPrefix: .*reserved/])
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true, source: '/c', bucket: 'a.b' }), [/bucket: "a.b" is not a key-value bucket name/])
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true, source: '/c', replicas: 2 }), [/replicas/])
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true }), [/source/], 'source is required')
  t.match(errorsOf({ name: 'ev', type: 'nats', url: 'nats://a', allowInsecure: true, source: '/c', credentialsFromSecret: 'Bad_Name' }), [/credentialsFromSecret: "Bad_Name" is not a valid Secret name/])
})

t.test('amqp: what is wrong and what is accepted', async (t) => {
  t.same(errorsOf({ name: 'mq', type: 'amqp', url: 'amqps://rabbit.example.com:5671/prod', source: 'urn:cluster:a' }), [])
  t.same(errorsOf({ name: 'mq', type: 'amqp', url: 'amqp://rabbit:5672/prod', source: '/c' }), ['/registry/backends/0/url: amqp://rabbit:5672 is not encrypted (records and credentials would cross the network in clear): use amqps://, or set allowInsecure: true'])
  t.match(errorsOf({ name: 'mq', type: 'amqp', url: 'amqp://a,amqp://b', allowInsecure: true, source: '/c' }), [/url: one broker URL/])
  t.match(errorsOf({ name: 'mq', type: 'amqp', url: 'amqp://u:p@a', allowInsecure: true, source: '/c' }), [/url: must not hold credentials/])
  t.match(errorsOf({ name: 'mq', type: 'amqp', url: 'amqp://a', allowInsecure: true, source: '/c', exchange: 'amq.topic' }), [/exchange: "amq.topic" is reserved/])
  t.match(errorsOf({ name: 'mq', type: 'amqp', url: 'amqp://a', allowInsecure: true, source: '/c', exchange: 'has space' }), [/exchange: "has space" is not an exchange name/])
})

t.test('nats and amqp are shared backends: the policy must name its cluster', async (t) => {
  for (const backend of [
    { name: 'ev', type: 'nats', url: 'nats://nats:4222', allowInsecure: true, source: '/clusters/a' },
    { name: 'mq', type: 'amqp', url: 'amqp://rabbit:5672/', allowInsecure: true, source: '/clusters/a' },
  ]) {
    t.throws(
      () => loadPolicy(stringify({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', registry: { backends: [backend] } })),
      { errors: [{ path: '/cluster/name', message: new RegExp(`is required with a backend several clusters may share \\(backend "${backend.name}" of type ${backend.type}\\)`) }] },
      backend.type,
    )
  }
})
