// The list+watch reflector every cache rests on, against a real apiserver: paginated
// lists, then add, update and delete events, selectors, and handlers that fail.
import t from 'tap'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { Reflector } from '../../src/kube/reflector.js'
import { silentLogger } from '../../src/log.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t, { controllerManager: false })
await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'r' } })
const cm = (name: string, labels: Record<string, string> = {}, data: Record<string, string> = {}) =>
  cp.client.create('/api/v1/namespaces/r/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels }, data })
for (let i = 0; i < 7; i++) await cm(`before-${i}`, { kind: i % 2 ? 'odd' : 'even' })

t.test('a paginated list, then the events that follow it', async (t) => {
  const events: string[] = []
  const r = new Reflector<V1ConfigMap>({ client: cp.client, log: silentLogger(), name: 'test', path: '/api/v1/namespaces/r/configmaps', pageSize: 2 })
  r.on({
    add: (o) => events.push(`add ${o.metadata?.name}`),
    update: (o, old) => events.push(`update ${o.metadata?.name} ${old.data?.v ?? ''}->${o.data?.v ?? ''}`),
    delete: (o) => events.push(`delete ${o.metadata?.name}`),
  })
  // a handler that throws must not stop the others or the reflector
  r.on({ add: () => { throw new Error('a broken handler') } })
  r.start()
  t.teardown(() => r.stop())
  t.ok(await r.waitForSync(), 'synced')
  t.equal(r.size, 7, 'four pages of two, all stored')
  t.same(events.filter((e) => e.startsWith('add')).sort(), Array.from({ length: 7 }, (_, i) => `add before-${i}`).sort())

  await cm('after', {}, { v: '1' })
  await cp.client.patch('/api/v1/namespaces/r/configmaps/after', { data: { v: '2' } }, 'application/merge-patch+json')
  await cp.client.delete('/api/v1/namespaces/r/configmaps/before-0')
  await waitFor('events', async () => events.includes('delete before-0'))
  t.same(events.slice(7), ['add after', 'update after 1->2', 'delete before-0'])
  t.equal(r.get('r/after')?.data?.v, '2')
  t.equal(r.get('r/before-0'), undefined)
})

t.test('label selectors and transforms', async (t) => {
  const r = new Reflector<V1ConfigMap>({
    client: cp.client,
    log: silentLogger(),
    name: 'odd',
    path: '/api/v1/namespaces/r/configmaps',
    labelSelector: 'kind=odd',
    pageSize: 1,
    transform: (o) => ({ metadata: { name: o.metadata?.name, namespace: o.metadata?.namespace, resourceVersion: o.metadata?.resourceVersion } }),
  })
  r.start()
  t.teardown(() => r.stop())
  await r.waitForSync()
  t.same([...r.list()].map((o) => o.metadata?.name).sort(), ['before-1', 'before-3', 'before-5'])
  t.equal([...r.list()][0]?.metadata?.labels, undefined, 'stored slimmed')
})

t.test('an unreachable apiserver is retried, and reported', async (t) => {
  const { KubeClient } = await import('../../src/kube/client.js')
  const dead = new KubeClient({ server: new URL('https://127.0.0.1:1'), tls: { rejectUnauthorized: false }, authorization: async () => undefined, source: 'test' })
  const r = new Reflector<V1ConfigMap>({ client: dead, log: silentLogger(), name: 'dead', path: '/api/v1/configmaps' })
  r.start()
  await waitFor('an error', async () => r.error)
  t.match(r.error, /ECONNREFUSED/)
  t.notOk(r.synced)
  await r.stop()
  t.equal(await r.waitForSync(), false, 'waiting on a stopped reflector returns')
})
