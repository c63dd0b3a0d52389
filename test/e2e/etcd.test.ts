// etcd v3 on a real control plane and a real three-member cluster (apart from the control
// plane's etcd): keys appear and disappear exactly with their pods, through a leader change,
// a whole-cluster restart and an enlist restart.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { Etcd3 } from 'etcd3'
import { podPath } from '../../src/kube/pod-ref.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { startEtcd } from '../harness/etcd.js'
import { createPod } from '../harness/events.js'
import { refOf } from '../harness/k8s.js'
import { register } from '../harness/kubelet.js'
import { owned, waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t)
const etcd = await owned(t, startEtcd(), (e) => e.close())
const enlist = await enlistFor(t, cp, {
  policy: (p) => {
    p.registry = {
      backends: [{ name: 'etcd', type: 'etcd', endpoints: etcd.endpoints, allowInsecure: true, prefix: '/registry/enlist/', timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }],
      reconcileIntervalSeconds: 5,
    }
  },
  optIn: ['shop'],
})

const reader = new Etcd3({ hosts: etcd.endpoints })
t.teardown(() => reader.close())
const keys = async () => (await reader.getAll().prefix('/registry/enlist/').keys()).sort()
const expect = (pods: V1Pod[]) => pods.map((p) => `/registry/enlist/shop/orders/${p.metadata!.uid}`).sort()
const exactly = (what: string, pods: V1Pod[]) => waitFor(what, async () => JSON.stringify(await keys()) === JSON.stringify(expect(pods)), 60_000, 250)

let n = 0
async function provider(): Promise<V1Pod> {
  const pod = await createPod(cp, 'shop', `orders-${++n}`)
  await register(cp, pod)
  return pod
}
const remove = (pod: V1Pod, force = false) => cp.client.delete(podPath(refOf(pod)), force ? { gracePeriodSeconds: 0 } : undefined)
const live: V1Pod[] = []

t.test('keys appear with their pods and go exactly when the pods go', async (t) => {
  live.push(await provider(), await provider(), await provider())
  await exactly('three keys', live)
  const value = JSON.parse((await reader.get(expect([live[0]!])[0]!).string())!) as Record<string, unknown>
  t.match(value, { uid: live[0]!.metadata!.uid, namespace: 'shop', pod: 'orders-1', service: 'orders', ip: live[0]!.status!.podIP, advertised: { mode: 'podIP', address: live[0]!.status!.podIP } })
  const leases = await reader.getAll().prefix('/registry/enlist/').exec()
  t.ok(leases.kvs.every((kv) => String(kv.lease) === '0'), 'plain keys, no lease tied to enlist')
  await remove(live.shift()!)
  await remove(live.shift()!, true)
  await exactly('one key left', live)
})

t.test('a leader change and a whole-cluster restart lose nothing and leave nothing stale', async (t) => {
  const leader = await etcd.leader()
  await etcd.stop(leader)
  await waitFor('a new leader', async () => (await etcd.leader()) !== leader, 60_000, 250)
  live.push(await provider())
  await exactly('registered after the leader change', live)
  await remove(live.shift()!, true)
  await exactly('deregistered after the leader change', live)
  await etcd.start(leader)
  await etcd.waitHealthy()

  for (let i = 0; i < etcd.members.length; i++) await etcd.stop(i)
  // meanwhile the last pod goes: its deregistration waits for etcd, retried, never dropped
  await remove(live.shift()!, true)
  for (let i = 0; i < etcd.members.length; i++) await etcd.start(i)
  await etcd.waitHealthy()
  await exactly('the pod removed during the outage is gone', live)
  t.same(await keys(), expect(live))
})

t.test('enlist restarting deregisters nothing', async (t) => {
  live.push(await provider())
  await exactly('a key', live)
  const before = await keys()
  await enlist.stop()
  t.same(await keys(), before)
  await enlist.restart()
  // two sweeps finished (one at start, one 5 s later), each line naming its backends: not a
  // fixed sleep that passes whether or not a sweep ran
  const sweeps = () => enlist.logs().filter((l) => l.msg === 'registry sweep finished')
  await waitFor('two sweeps finished', async () => sweeps().length >= 2, 30_000, 100)
  t.equal(sweeps().length >= 2, true, `${sweeps().length} sweeps finished since the restart`)
  t.same(await keys(), before, 'after two sweeps, the same keys')
})
