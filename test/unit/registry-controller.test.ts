// RegistryController against an in-memory apiserver and backends (test/helpers/fake-*.ts),
// with the real pod cache, backend set (and its kubernetes backend), registration service
// (to register pods as the registrar would), event recorder and metrics: pods that go are
// deregistered everywhere, edited records are restored, the sweep removes strays and
// rewrites lost entries, failures are retried and never end a sweep, and doing it all
// twice changes nothing.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { RegistryController } from '../../src/controller/registry-controller.js'
import { TokenAuthenticator } from '../../src/registration/auth.js'
import { DependencyCache } from '../../src/registration/dependencies.js'
import { RegistrationService } from '../../src/registration/service.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { conditionOf, enlistedPod, type EnlistedPod, eventsOf, type FakeCluster, fakeCluster, metricValue, until } from '../helpers/fake-cluster.js'
import type { FakeBackend } from '../helpers/fake-registry.js'

interface World {
  c: FakeCluster
  controller: RegistryController
  cmdb: FakeBackend
  etcd: FakeBackend
  /** A pod admission injected, registered as its registrar would. */
  registered(o?: Parameters<typeof enlistedPod>[1]): Promise<EnlistedPod & { record: RegistryRecord }>
  /** Starts the controller and waits for its first sweep. */
  start(): Promise<void>
}

async function setup(t: { teardown(fn: () => unknown): void }, o: { workers?: number } = {}): Promise<World> {
  const c = await fakeCluster()
  const [cmdb, etcd] = c.backends as [FakeBackend, FakeBackend]
  const controller = new RegistryController({
    client: c.kube.client,
    pods: c.pods,
    registry: c.registry,
    events: c.events,
    metrics: c.metrics,
    log: c.log,
    keysKnown: () => c.keys.ring !== undefined,
    sweepIntervalMs: () => 3_600_000, // only the first sweep runs by itself; tests call sweep()
    sweepRate: () => 10_000,
    workers: o.workers ?? 2,
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
  return {
    c,
    controller,
    cmdb,
    etcd,
    async registered(po) {
      const p = enlistedPod(c, po)
      const record = await service.register(`Bearer ${p.token}`, { waitMs: 0 })
      await until('the cache to see the registered condition', () => c.pods.byUid(p.uid)?.status.conditions?.[0]?.status === 'True')
      return { ...p, record }
    },
    async start() {
      await controller.start()
      await until('the first sweep', () => sweeps(c) >= 1)
    },
  }
}

const sweeps = (c: FakeCluster): number => c.logs.filter((l) => l.msg === 'registry sweep finished').length
const backendCalls = (w: World, op: 'register' | 'deregister' | 'list', uid?: string): number => w.cmdb.count(op, uid) + w.etcd.count(op, uid)
const inEvery = (w: World, uid: string): boolean => w.cmdb.records.has(uid) && w.etcd.records.has(uid) && annotationOf(w, uid) !== undefined
const inNone = (w: World, uid: string): boolean => !w.cmdb.records.has(uid) && !w.etcd.records.has(uid)
function annotationOf(w: World, uid: string): string | undefined {
  const pod = w.c.kube.all<V1Pod>('pods').find((p) => p.metadata?.uid === uid)
  return pod?.metadata?.annotations?.[w.c.recordAnnotation]
}

t.test('a deleted pod is deregistered from every backend', async (t) => {
  const w = await setup(t)
  const p = await w.registered()
  const other = await w.registered()
  await w.start()
  t.ok(inEvery(w, p.uid), 'registered everywhere to begin with')
  w.c.kube.remove(p.path) // gone at once (a force delete), never seen terminating
  await until('deregistered from cmdb and etcd', () => inNone(w, p.uid))
  t.ok(inEvery(w, other.uid), 'the other pod stays registered')
  await until('the pending gauge back to 0', async () => (await metricValue(w.c.metrics.pendingDeregistrations)) === 0)
  t.ok(w.c.logs.some((l) => l.msg === 'deregistered: the pod is gone' && l.uid === p.uid), 'logged')
})

t.test('a terminating pod is deregistered everywhere, its condition False, an event recorded', async (t) => {
  const w = await setup(t)
  const p = await w.registered()
  await w.start()
  w.c.kube.edit<V1Pod>(p.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  await until('deregistered', () => inNone(w, p.uid) && annotationOf(w, p.uid) === undefined)
  await until('the condition False', () => conditionOf(w.c, p.path)?.status === 'False')
  t.match(conditionOf(w.c, p.path), { status: 'False', reason: 'Deregistered', message: 'the pod is terminating' })
  await until('the event', () => eventsOf(w.c, p.uid).some((e) => e.reason === 'Deregistered'))
  t.match(eventsOf(w.c, p.uid).find((e) => e.reason === 'Deregistered'), { type: 'Normal', message: 'deregistered: the pod is terminating' })
})

for (const phase of ['Succeeded', 'Failed'] as const) {
  t.test(`a finished pod (${phase}) is deregistered`, async (t) => {
    const w = await setup(t)
    const p = await w.registered()
    await w.start()
    w.c.kube.edit<V1Pod>(p.path, (x) => (x.status!.phase = phase))
    await until('deregistered', () => inNone(w, p.uid) && annotationOf(w, p.uid) === undefined)
    await until('the condition False', () => conditionOf(w.c, p.path)?.status === 'False')
    t.match(conditionOf(w.c, p.path), { reason: 'Deregistered', message: `the pod has finished (${phase})` })
  })
}

t.test('a record annotation someone edited is restored (RecordRestored)', async (t) => {
  const w = await setup(t)
  const p = await w.registered()
  await w.start()
  const original = annotationOf(w, p.uid)!
  w.c.kube.edit<V1Pod>(p.path, (x) => (x.metadata!.annotations![w.c.recordAnnotation] = Buffer.from('[{"k":"service","v":"payments"}]').toString('base64')))
  await until('the record restored', () => annotationOf(w, p.uid) === original)
  t.equal(annotationOf(w, p.uid), original, "enlist's own record is back, byte for byte")
  await until('the event', () => eventsOf(w.c, p.uid).some((e) => e.reason === 'RecordRestored'))
  t.match(eventsOf(w.c, p.uid).find((e) => e.reason === 'RecordRestored'), { type: 'Warning', message: /was edited; enlist wrote its own again \(backend kubernetes\)/ })
  t.equal(await metricValue(w.c.metrics.repaired, { backend: 'kubernetes' }), 1, 'counted as repaired')
  t.equal(await metricValue(w.c.metrics.trustRejections, { where: 'record', reason: 'edited' }), 1, 'counted as an edited record')
  t.equal(backendCalls(w, 'register', p.uid), 2, 'cmdb and etcd were not written again (their copies were not edited)')

  // the discovery label taken away is restored too
  w.c.kube.edit<V1Pod>(p.path, (x) => delete x.metadata!.labels!['app.io/label'])
  await until('the label restored', () => w.c.kube.peek<V1Pod>(p.path)!.metadata!.labels!['app.io/label'] === 'app.io-value')
  t.equal(await metricValue(w.c.metrics.repaired, { backend: 'kubernetes' }), 2)
})

t.test('a pod enlist never registered is skipped: no backend calls when it goes', async (t) => {
  const w = await setup(t, { workers: 1 })
  // labelled managed (tenants can set labels), but no decision of enlist's and no condition
  const stranger = enlistedPod(w.c, { status: null })
  const p = await w.registered()
  await w.start()
  const before = { deregister: backendCalls(w, 'deregister'), patches: w.c.kube.callsTo('PATCH').length }
  w.c.kube.edit<V1Pod>(stranger.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  w.c.kube.remove(stranger.path)
  // one worker, in order: once the registered pod that goes after it is done, so is the stranger
  w.c.kube.remove(p.path)
  await until('the registered pod deregistered', () => inNone(w, p.uid))
  t.equal(backendCalls(w, 'deregister', stranger.uid), 0, 'no deregistration of the stranger')
  t.equal(backendCalls(w, 'deregister') - before.deregister, 2, 'only the registered pod, once per backend')
  t.equal(w.c.kube.callsTo('PATCH', `${stranger.path}/status`).length, 0, 'no condition written on the stranger')
  t.equal(w.c.kube.callsTo('PATCH').length - before.patches, 1, "one patch: the kubernetes backend's removal of the registered pod's record")

  // directly: reconciling a terminating stranger calls nothing
  const s2 = enlistedPod(w.c, { status: null })
  w.c.kube.edit<V1Pod>(s2.path, (x) => (x.status!.phase = 'Failed'))
  const calls = w.cmdb.calls.length + w.etcd.calls.length
  await w.controller.reconcile(s2.uid)
  t.equal(w.cmdb.calls.length + w.etcd.calls.length, calls, 'reconcile() of a never-registered finished pod: no backend call')
})

t.test('a look-alike (a status sealed with a made-up key, 4,000 labels) is never registered: its deletion calls no backend', async (t) => {
  const w = await setup(t, { workers: 1 })
  const body = JSON.stringify({ version: 'v1', decision: { namespace: 'shop', serviceAccount: 'orders', service: 'orders', metadata: {}, dependsOn: [] }, pad: 'x'.repeat(200_000) }).slice(0, -1)
  const madeUp = `${body},"seal":{"key":"kmadeup-000001","mac":"${'A'.repeat(43)}"}}`
  const lookalikes = Array.from({ length: 3 }, () => enlistedPod(w.c, { status: madeUp }))
  for (const l of lookalikes) w.c.kube.edit<V1Pod>(l.path, (x) => {
    for (let j = 0; j < 4000; j++) x.metadata!.labels![`l${j}.evil.example/k`] = `v${j}`
  })
  const p = await w.registered()
  await w.start()
  await until('the look-alikes cached', () => lookalikes.every((l) => w.c.pods.byUid(l.uid)?.enlist.pending?.key === 'kmadeup-000001'))
  const calls = w.cmdb.calls.length + w.etcd.calls.length
  const patches = w.c.kube.callsTo('PATCH').length
  // one goes terminating first, one is force-deleted, one finishes
  w.c.kube.edit<V1Pod>(lookalikes[0]!.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  w.c.kube.remove(lookalikes[0]!.path)
  w.c.kube.remove(lookalikes[1]!.path)
  w.c.kube.edit<V1Pod>(lookalikes[2]!.path, (x) => (x.status!.phase = 'Failed'))
  // one worker, in order: once the registered pod that goes after them is done, so are they
  w.c.kube.remove(p.path)
  await until('the registered pod deregistered', () => inNone(w, p.uid))
  t.equal(w.cmdb.calls.length + w.etcd.calls.length - calls, 2, 'two backend calls in all: the registered pod\'s deregistration, once per backend (the unfixed controller deregistered each look-alike too, which scans ZooKeeper and etcd)')
  for (const l of lookalikes) t.equal(backendCalls(w, 'deregister', l.uid), 0, `no deregistration of ${l.pod.metadata!.name}`)
  t.equal(w.c.kube.callsTo('PATCH').length - patches, 1, 'no condition written on a look-alike')
  t.equal(await metricValue(w.c.metrics.pendingDeregistrations), 0, 'nothing pending')
  const before = w.cmdb.calls.length + w.etcd.calls.length
  await w.controller.reconcile(lookalikes[2]!.uid)
  t.equal(w.cmdb.calls.length + w.etcd.calls.length, before, 'reconcile() of a finished look-alike: no backend call')
})

t.test('the sweep removes entries whose pod no longer exists, and rewrites entries a backend lost', async (t) => {
  const w = await setup(t)
  const live = await w.registered()
  const lost = await w.registered()
  const replaced = await w.registered()
  const asked = await w.registered()
  // a pod force-deleted while enlist was down: its entries stay behind
  const ghost = { ...replaced.record, uid: 'uid-ghost', pod: 'ghost-1' }
  w.cmdb.records.set(ghost.uid, ghost)
  w.etcd.records.set(ghost.uid, ghost)
  // a namesake replaced a pod: the entry names the old uid under the live name
  const namesake = { ...replaced.record, uid: 'uid-old-namesake' }
  w.cmdb.records.set(namesake.uid, namesake)
  // a pod that asked to be deregistered, but a backend call failed after the condition was set
  w.c.kube.edit<V1Pod>(`${asked.path}`, (x) => {
    x.status!.conditions = [{ type: 'enlist.io/registered', status: 'False', reason: 'Deregistered', message: 'deregistered at the pod\'s request', lastTransitionTime: new Date() }]
  })
  await until('the cache sees it', () => w.c.pods.byUid(asked.uid)?.status.conditions?.[0]?.status === 'False')
  // a backend lost an entry (restored from an old backup)
  w.etcd.lose(lost.uid)

  await w.controller.sweep()
  t.notOk(w.cmdb.records.has(ghost.uid) || w.etcd.records.has(ghost.uid), 'the pod that no longer exists: removed from both')
  t.notOk(w.cmdb.records.has(namesake.uid), 'the entry of a pod replaced by a namesake: removed')
  t.ok(inNone(w, asked.uid), 'the pod that asked to be deregistered: removed')
  t.same(w.etcd.records.get(lost.uid), lost.record, 'the lost entry is written again, the same record')
  t.ok(inEvery(w, live.uid) && inEvery(w, replaced.uid), 'live registered pods keep their entries')
  t.equal(await metricValue(w.c.metrics.strays, { backend: 'cmdb' }), 3, 'cmdb: three strays counted')
  t.equal(await metricValue(w.c.metrics.strays, { backend: 'etcd' }), 2, 'etcd: two strays counted')
  t.equal(await metricValue(w.c.metrics.repaired, { backend: 'etcd' }), 1, 'etcd: one entry repaired')
  t.equal(await metricValue(w.c.metrics.reconciles, { result: 'ok' }), 1, 'the sweep counted as ok')
  t.ok(w.c.kube.callsTo('GET', '/api/v1/namespaces/shop/pods/ghost-1').length >= 1, 'a uid the cache does not know was asked of the apiserver')
})

t.test('a failing delete does not end the sweep, and the next sweep retries it', async (t) => {
  const w = await setup(t)
  const live = await w.registered()
  const strays = ['a', 'b', 'c'].map((n) => ({ ...live.record, uid: `uid-stray-${n}`, pod: `stray-${n}` }))
  for (const s of strays) w.cmdb.records.set(s.uid, s)
  w.cmdb.fail('deregister', 1, { uid: 'uid-stray-a' })
  await w.controller.sweep()
  t.ok(w.cmdb.records.has('uid-stray-a'), 'the entry whose delete failed is still there')
  t.notOk(w.cmdb.records.has('uid-stray-b') || w.cmdb.records.has('uid-stray-c'), 'the sweep went on and removed the others')
  t.equal(await metricValue(w.c.metrics.sweepFailures, { backend: 'cmdb', op: 'deregister' }), 1, 'the failure counted')
  t.equal(await metricValue(w.c.metrics.reconciles, { result: 'error' }), 1, 'the sweep counted as an error')
  t.ok(w.etcd.count('list') === 1 && inEvery(w, live.uid), 'the other backend was swept all the same')
  await w.controller.sweep()
  t.notOk(w.cmdb.records.has('uid-stray-a'), 'the next sweep removed it')
  t.equal(w.cmdb.count('deregister', 'uid-stray-a'), 2, 'tried twice in all')
  t.equal(await metricValue(w.c.metrics.reconciles, { result: 'ok' }), 1, 'the second sweep counted as ok')
})

t.test('ten failures in a row end one backend\'s sweep early; the other backends are still swept', async (t) => {
  const w = await setup(t)
  const live = await w.registered()
  for (let i = 0; i < 15; i++) w.cmdb.records.set(`uid-stray-${i}`, { ...live.record, uid: `uid-stray-${i}`, pod: `stray-${i}` })
  w.etcd.records.set('uid-etcd-stray', { ...live.record, uid: 'uid-etcd-stray', pod: 'etcd-stray' })
  w.cmdb.fail('deregister', Infinity)
  await w.controller.sweep()
  t.equal(w.cmdb.count('deregister'), 10, 'cmdb: stopped after ten failed deletes, not fifteen')
  t.ok(w.c.logs.some((l) => l.msg?.startsWith('registry sweep: stopping this backend early') && l.backend === 'cmdb'), 'said why')
  t.notOk(w.etcd.records.has('uid-etcd-stray'), "etcd's sweep ran after cmdb's ended")
})

t.test('a failed deregistration is retried by the controller until it succeeds', async (t) => {
  const w = await setup(t)
  const p = await w.registered()
  await w.start()
  w.cmdb.fail('deregister', 2, { uid: p.uid })
  w.c.kube.edit<V1Pod>(p.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  await until('deregistered from cmdb after its failures', () => !w.cmdb.records.has(p.uid), 10_000)
  t.equal(w.cmdb.count('deregister', p.uid), 3, 'cmdb: two failures, then success')
  t.notOk(w.etcd.records.has(p.uid), 'etcd: deregistered too')
  t.ok((await metricValue(w.c.metrics.queueRetries)) >= 2, 'the retries went through the queue')
  await until('the condition False', () => conditionOf(w.c, p.path)?.status === 'False')
  await until('the events', () => eventsOf(w.c, p.uid).some((e) => e.reason === 'Deregistered'))
  const failed = eventsOf(w.c, p.uid).filter((e) => e.reason === 'DeregistrationFailed')
  t.match(failed, [{ type: 'Warning', message: /^the registry entry could not be removed; retrying until it succeeds \(enlist log ref ([0-9a-f]{8})\)$/ }], 'one DeregistrationFailed event, on the first failure')
  // the tenant sees a reference; what failed, and where, is in enlist's log under it
  const ref = /log ref ([0-9a-f]{8})/.exec(failed[0]?.message ?? '')?.[1]
  t.ok(w.c.logs.some((l) => l.ref === ref && /cmdb is down/.test(JSON.stringify(l))), 'the log line under that reference says what failed')

  // a deleted pod's deregistration is kept (pending) until every backend confirms it
  const q = await w.registered()
  w.etcd.fail('deregister', 1, { uid: q.uid })
  w.c.kube.remove(q.path)
  await until('the failure seen', () => w.etcd.count('deregister', q.uid) >= 1)
  t.ok(w.etcd.records.has(q.uid), 'etcd still holds it after the failed call')
  await until('deregistered from etcd on the retry', () => !w.etcd.records.has(q.uid), 10_000)
  t.equal(w.etcd.count('deregister', q.uid), 2, 'not forgotten: tried again')
  await until('the pending gauge back to 0', async () => (await metricValue(w.c.metrics.pendingDeregistrations)) === 0)
})

t.test('reconciling and sweeping are idempotent: done twice, the second time changes nothing', async (t) => {
  const w = await setup(t)
  const live = await w.registered()
  const going = await w.registered()
  await w.start()
  w.c.kube.edit<V1Pod>(going.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  await until('deregistered', () => inNone(w, going.uid) && conditionOf(w.c, going.path)?.status === 'False')
  await until('the cache sees the condition', () => w.c.pods.byUid(going.uid)?.status.conditions?.[0]?.status === 'False')

  const snapshot = () => ({
    cmdb: [...w.cmdb.records.entries()],
    etcd: [...w.etcd.records.entries()],
    pods: w.c.kube.all<V1Pod>('pods').map((p) => [p.metadata!.name, p.metadata!.resourceVersion]),
  })
  const before = snapshot()
  const writes = () => w.c.kube.calls.filter((c) => c.verb === 'PATCH' || c.verb === 'PUT').length
  const [writesBefore, registers, deregisters] = [writes(), backendCalls(w, 'register'), backendCalls(w, 'deregister')]

  await w.controller.reconcile(going.uid)
  await w.controller.reconcile(live.uid)
  await w.controller.sweep()
  await w.controller.sweep()
  t.same(snapshot(), before, 'backends and pods are as they were')
  t.equal(writes() - writesBefore, 0, 'no apiserver write')
  t.equal(backendCalls(w, 'register') - registers, 0, 'no backend register')
  t.equal(backendCalls(w, 'deregister') - deregisters, 0, 'no backend deregister')
  t.ok(inEvery(w, live.uid), 'the live pod is still registered')
})
