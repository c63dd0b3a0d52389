// etcd v3 on a real control plane and a real three-member cluster (apart from the control
// plane's etcd): keys appear and disappear exactly with their pods, through a leader change,
// a whole-cluster restart and an enlist restart.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { Etcd3 } from 'etcd3'
import { startControlPlane } from '../harness/control-plane.js'
import { startEnlist } from '../harness/enlist.js'
import { startEtcd } from '../harness/etcd.js'
import { runRegistrar, startPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'

const cp = await startControlPlane()
t.teardown(() => cp.stop())
const etcd = await startEtcd()
t.teardown(() => etcd.close())
const enlist = await startEnlist(cp, {
  policy: (p) => {
    p.registry = {
      backends: [{ name: 'etcd', type: 'etcd', endpoints: etcd.endpoints, prefix: '/registry/enlist/', timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }],
      reconcileIntervalSeconds: 5,
    }
  },
})
t.teardown(() => enlist.stop())
await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })

const reader = new Etcd3({ hosts: etcd.endpoints })
t.teardown(() => reader.close())
const keys = async () => (await reader.getAll().prefix('/registry/enlist/').keys()).sort()
const expect = (pods: V1Pod[]) => pods.map((p) => `/registry/enlist/shop/orders/${p.metadata!.uid}`).sort()
const exactly = (what: string, pods: V1Pod[]) => waitFor(what, async () => JSON.stringify(await keys()) === JSON.stringify(expect(pods)), 60_000, 250)

let n = 0
async function provider(): Promise<V1Pod> {
  const created = await cp.client.create<V1Pod>('/api/v1/namespaces/shop/pods', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `orders-${++n}`, labels: { app: 'orders' } },
    spec: { containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
  })
  const pod = await startPod(cp, created)
  const run = await runRegistrar(cp, pod)
  if (run.code !== 0) throw new Error(`registrar exited ${run.code}: ${run.stdout}${run.stderr}`)
  return pod
}
const remove = (pod: V1Pod, force = false) => cp.client.delete(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`, force ? { gracePeriodSeconds: 0 } : undefined)
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
  await new Promise((r) => setTimeout(r, 11_000))
  t.same(await keys(), before, 'after two sweeps, the same keys')
})
