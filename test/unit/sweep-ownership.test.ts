// Ownership decides every delete (docs/registration.md, "Several clusters, one registry"): the
// sweep removes only strays with this cluster's mark; another cluster's entries and unmarked
// ones stay byte for byte, counted in enlist_registry_foreign_entries and the status report;
// `sweep: false` removes and rewrites nothing, and reports what it would have fixed.
import t from 'tap'
import { RegistryController } from '../../src/controller/registry-controller.js'
import type { BackendStatus } from '../../src/contract/status-report.js'
import { TokenAuthenticator } from '../../src/registration/auth.js'
import { DependencyCache } from '../../src/registration/dependencies.js'
import { RegistrationService } from '../../src/registration/service.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { enlistedPod, type FakeCluster, fakeCluster, metricValue, until } from '../helpers/fake-cluster.js'
import type { FakeBackend } from '../helpers/fake-registry.js'

const GONE = '11111111-1111-4111-8111-111111111111'
const OTHER = '22222222-2222-4222-8222-222222222222'
const UNMARKED = '33333333-3333-4333-8333-333333333333'

async function world(t: { teardown(fn: () => unknown): void }, sweepOff: string[] = []) {
  const c: FakeCluster = await fakeCluster({ sweepOff })
  const [cmdb, etcd] = c.backends as [FakeBackend, FakeBackend]
  const reports: BackendStatus[][] = []
  const controller = new RegistryController({
    client: c.kube.client,
    pods: c.pods,
    registry: c.registry,
    events: c.events,
    metrics: c.metrics,
    log: c.log,
    keysKnown: () => c.keys.ring !== undefined,
    sweepIntervalMs: () => 3_600_000, // the first sweep runs by itself; the test calls sweep()
    sweepRate: () => 10_000,
    onSweepReport: (r) => reports.push(r),
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
    backendBudgetMs: 300,
  })
  t.teardown(async () => {
    await controller.stop()
    await c.stop()
  })
  const registered = async () => {
    const p = enlistedPod(c)
    const record = await service.register(`Bearer ${p.token}`, { waitMs: 0 })
    await until('the cache to see the registered condition', () => c.pods.byUid(p.uid)?.status.conditions?.[0]?.status === 'True')
    return { ...p, record }
  }
  const entry = (uid: string, cluster: string | undefined): RegistryRecord => {
    const r = { uid, namespace: 'shop', pod: `pod-${uid.slice(0, 4)}`, service: 'orders', ip: '10.0.9.9', ips: ['10.0.9.9'], hostIP: '', node: 'n', ports: [], metadata: {}, registeredAt: '2026-01-01T00:00:00Z', advertised: { mode: 'podIP' as const, address: '10.0.9.9', ports: [] } }
    return cluster === undefined ? r : { ...r, cluster }
  }
  const start = async () => {
    await controller.start()
    await until('the first sweep', () => reports.length >= 1)
  }
  return { c, cmdb, etcd, controller, reports, registered, entry, start }
}

t.test('the sweep removes this cluster\'s strays only; other clusters\' and unmarked entries stay as they are', async (t) => {
  const w = await world(t)
  const live = await w.registered()
  for (const b of [w.cmdb, w.etcd]) {
    b.records.set(GONE, w.entry(GONE, 'test'))
    b.records.set(OTHER, w.entry(OTHER, 'prod-b'))
    b.records.set(UNMARKED, w.entry(UNMARKED, undefined))
  }
  const before = structuredClone([w.cmdb.records.get(OTHER), w.cmdb.records.get(UNMARKED)])
  await w.start()

  for (const b of [w.cmdb, w.etcd]) {
    t.notOk(b.records.has(GONE), `${b.name}: this cluster's stray is removed`)
    t.same([b.records.get(OTHER), b.records.get(UNMARKED)], before, `${b.name}: another cluster's entry and the unmarked one are untouched`)
    t.equal(b.count('deregister', OTHER) + b.count('deregister', UNMARKED), 0, `${b.name}: not even a deregistration was tried`)
    t.ok(b.records.has(live.uid), `${b.name}: the live pod stays`)
  }
  t.equal(await metricValue(w.c.metrics.foreignEntries, { backend: 'cmdb', kind: 'other' }), 1)
  t.equal(await metricValue(w.c.metrics.foreignEntries, { backend: 'cmdb', kind: 'unmarked' }), 1)
  const cmdb = w.reports[0]!.find((r) => r.backend === 'cmdb')!
  t.match(cmdb, { sweep: true, entries: { own: 2, other: 1, unmarked: 1 }, otherClusters: { 'prod-b': 1 }, removed: 1, rewritten: 0, staleCount: 0, missingCount: 0 })
  t.equal(w.reports[0]!.find((r) => r.backend === 'kubernetes')?.entries.own, 1, 'the kubernetes backend\'s entries are this cluster\'s own pods')

  // a sweep again changes nothing
  await w.controller.sweep()
  t.same([w.cmdb.records.get(OTHER), w.cmdb.records.get(UNMARKED)], before, 'a second sweep leaves them too')
})

t.test('a live pod whose entry is unmarked (written before marks) is written again with this cluster\'s mark', async (t) => {
  const w = await world(t)
  const live = await w.registered()
  const { cluster: _c, ...unmarked } = w.cmdb.records.get(live.uid)!
  w.cmdb.records.set(live.uid, unmarked)
  await w.start()
  t.equal(w.cmdb.records.get(live.uid)?.cluster, 'test', 'rewritten, marked')
  t.match(w.reports[0]!.find((r) => r.backend === 'cmdb'), { entries: { own: 0, unmarked: 1 }, rewritten: 1, missingCount: 0 })
})

t.test('sweep: false lists and reports, and removes and rewrites nothing', async (t) => {
  const w = await world(t, ['etcd'])
  const live = await w.registered()
  w.etcd.records.set(GONE, w.entry(GONE, 'test'))
  w.etcd.lose(live.uid)
  w.cmdb.records.set(GONE, w.entry(GONE, 'test'))
  await w.start()
  t.ok(w.etcd.records.has(GONE), 'etcd: the stray stays')
  t.notOk(w.etcd.records.has(live.uid), 'etcd: the lost entry is not rewritten')
  t.equal(w.etcd.count('deregister') + w.etcd.count('register', live.uid), 1, 'etcd: only the registration itself wrote')
  t.notOk(w.cmdb.records.has(GONE), 'cmdb, swept: the stray is removed')
  const etcd = w.reports[0]!.find((r) => r.backend === 'etcd')!
  t.match(etcd, { sweep: false, removed: 0, rewritten: 0, staleCount: 1, missingCount: 1 })
  t.match(etcd.stale, [{ uid: GONE, namespace: 'shop' }])
  t.match(etcd.missing, [{ uid: live.uid, pod: live.pod.metadata!.name }])
  t.ok(Date.parse(etcd.stale[0]!.since) > 0 && Date.parse(etcd.missing[0]!.since) > 0, 'each with a time the grace window is measured from')
  const since = etcd.stale[0]!.since
  await w.controller.sweep()
  t.equal(w.reports.at(-1)!.find((r) => r.backend === 'etcd')!.stale[0]!.since, since, 'a stale entry keeps the time it was first seen')
})

t.test("this cluster's name written by another cluster (another kube-system UID) is reported, never deleted", async (t) => {
  const w = await world(t)
  w.c.registry.setClusterUid('kube-system-uid-of-this-cluster')
  const live = await w.registered()
  t.equal(w.cmdb.records.get(live.uid)?.clusterUID, 'kube-system-uid-of-this-cluster', 'records carry the writer\'s kube-system UID')
  const impostor = { ...w.entry(OTHER, 'test'), clusterUID: 'kube-system-uid-of-another-cluster' }
  w.cmdb.records.set(OTHER, impostor)
  w.cmdb.records.set(GONE, { ...w.entry(GONE, 'test'), clusterUID: 'kube-system-uid-of-this-cluster' })
  await w.start()
  t.same(w.cmdb.records.get(OTHER), impostor, 'the entry of the other cluster of the same name stays')
  t.notOk(w.cmdb.records.has(GONE), 'this cluster\'s own stray goes')
  t.equal(await metricValue(w.c.metrics.foreignEntries, { backend: 'cmdb', kind: 'duplicate' }), 1)
  const cmdb = w.reports[0]!.find((r) => r.backend === 'cmdb')!
  t.match(cmdb, { entries: { own: 2, duplicate: 1 }, removed: 1, problem: /carry this cluster's name "test" but were written by another cluster \(another kube-system UID\): two clusters share a name/ })
  t.ok(w.c.logs.some((l) => l.level === 50 && /two clusters share a name/.test(String(l.msg))), 'logged as an error')
})
