// ZooKeeper in Dubbo's layout on a real control plane and a real three-server ensemble: a
// Dubbo consumer's reader (test/helpers/dubbo-reader.ts) sees exactly the live, registered
// pods at their advertised addresses, through pod churn, a session expiry, a leader failover,
// a full ensemble restart and an enlist restart.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { createDeployment, deployment, podManifest, refOf } from '../harness/k8s.js'
import { runRegistrar, startPod, startRegistered } from '../harness/kubelet.js'
import { owned, waitFor } from '../harness/processes.js'
import { startZookeeper } from '../harness/zookeeper.js'
import { dubboProviders } from '../helpers/dubbo-reader.js'

const cp = await controlPlaneFor(t)
const zk = await owned(t, startZookeeper(), (z) => z.close())
const enlist = await enlistFor(t, cp, {
  policy: (p) => {
    p.registry = {
      backends: [{ name: 'zookeeper', type: 'zookeeper', connect: zk.connect, allowInsecure: true, layout: 'dubbo', sessionTimeoutSeconds: 4, timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }],
      reconcileIntervalSeconds: 5,
    }
    p.tenantOverrides = { allowed: ['podOptIn', 'dependsOn', 'metadata', 'service', 'drainSeconds', 'advertise'] }
  },
  optIn: ['shop'],
})

const IFACE = 'com.acme.Orders'
const metadata = JSON.stringify({ interface: IFACE, version: '1.0.0', methods: 'get,list' })
const providers = () => dubboProviders(zk.connect, IFACE, { version: '1.0.0' })
const addresses = async () => (await providers()).map((p) => `${p.host}:${p.port}`)
const expect = (pods: V1Pod[]) => pods.map((p) => `${p.status!.podIP}:20880`).sort()
const exactly = (what: string, pods: V1Pod[]) =>
  waitFor(what, async () => JSON.stringify(await addresses()) === JSON.stringify(expect(pods)), 60_000, 250)

let n = 0
async function provider(): Promise<V1Pod> {
  const name = `orders-${++n}`
  const created = await cp.client.create<V1Pod>(
    podsPath('shop'),
    podManifest(name, {
      labels: { app: 'orders' },
      annotations: { 'enlist.io/metadata': metadata },
      containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }, { name: 'http', containerPort: 8080 }] }],
    }),
  )
  return startRegistered(cp, created)
}
async function remove(pod: V1Pod, force = false): Promise<void> {
  await cp.client.delete(podPath(refOf(pod)), force ? { gracePeriodSeconds: 0 } : undefined)
}

const live: V1Pod[] = []

t.test('providers appear as Dubbo consumers read them, and go exactly when their pods go', async (t) => {
  live.push(await provider(), await provider(), await provider())
  await exactly('three providers', live)
  const [p] = await providers()
  t.match(p!.params, { interface: IFACE, version: '1.0.0', methods: 'get,list', side: 'provider', application: 'orders', dubbo: '2.0.2', dynamic: 'false' })
  t.equal(p!.protocol, 'dubbo')
  // a graceful delete (the pod terminates) and a force delete (the pod vanishes)
  await remove(live.shift()!)
  await remove(live.shift()!, true)
  await exactly('one provider left', live)
  t.same(await addresses(), expect(live))
})

t.test('a pod that is no Dubbo provider is refused at admission, saying why', async (t) => {
  const r = await cp.kubectl(['-n', 'shop', 'run', 'nointerface', '--image=x:1', '--port=20880', '--annotations=enlist.io/metadata={"version":"1"}'])
  t.not(r.code, 0)
  t.match(r.stderr, /enlist\.io\/metadata.*registers every pod as a Dubbo provider: the metadata has no "interface"/)
})

t.test('a session expiry loses nothing and leaves nothing stale', async (t) => {
  const before = await addresses()
  // Freeze enlist past its 4 s session: the ensemble expires the session; on waking the
  // client learns it and enlist opens a new one.
  process.kill(-enlist.process.child.pid!, 'SIGSTOP')
  await new Promise((r) => setTimeout(r, 9000))
  process.kill(-enlist.process.child.pid!, 'SIGCONT')
  await waitFor('the session expiry seen', async () => ((await enlist.metric('enlist_zookeeper_session_expirations_total{backend="zookeeper"}')) ?? 0) >= 1, 60_000, 500)
  t.same(await addresses(), before, 'the persistent nodes outlived the session')
  live.push(await provider())
  await exactly('a provider registered on the new session', live)
  await remove(live.shift()!, true)
  await exactly('and deregistered', live)
})

t.test('a leader failover and a whole-ensemble restart lose nothing and leave nothing stale', async (t) => {
  const leader = await zk.leader()
  await zk.stop(leader)
  await zk.waitServing()
  live.push(await provider())
  await exactly('registered after the failover', live)
  await zk.start(leader)
  await zk.waitServing()

  for (const s of zk.servers) await zk.stop(s.id)
  // meanwhile a pod goes: its deregistration waits for the ensemble, retried, never dropped
  const gone = live.shift()!
  await remove(gone, true)
  for (const s of zk.servers) await zk.start(s.id)
  await zk.waitServing()
  await exactly('the pod removed during the outage is gone, the rest kept', live)
  t.same(await addresses(), expect(live))
})

t.test('enlist restarting deregisters nothing', async (t) => {
  const before = await addresses()
  t.ok(before.length > 0)
  await enlist.stop()
  t.same(await addresses(), before, 'enlist down: the providers stay')
  await enlist.restart()
  // a sweep runs at start and every 5 s: wait for two to have finished (their log lines), not
  // a fixed sleep that passes whether or not a sweep ran
  const sweeps = () => enlist.logs().filter((l) => l.msg === 'registry sweep finished')
  await waitFor('two sweeps finished', async () => sweeps().length >= 2, 30_000, 100)
  t.equal(sweeps().length >= 2, true, `${sweeps().length} sweeps finished since the restart`)
  t.same(await addresses(), before, 'enlist back and swept: the same providers')
})

t.test('advertise nodePort: consumers outside the cluster get a node address and the nodePort', async (t) => {
  await cp.client.create('/api/v1/namespaces/shop/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'orders-external' },
    spec: { type: 'NodePort', selector: { app: 'edge' }, ports: [{ name: 'dubbo', port: 20880, targetPort: 'dubbo', nodePort: 30880 }] },
  })
  const [created] = await createDeployment(cp, 'shop', deployment('edge', {
    annotations: { 'enlist.io/metadata': JSON.stringify({ interface: 'com.acme.Edge' }), 'enlist.io/advertise': 'zookeeper=nodePort' },
    containers: [{ name: 'app', image: 'edge:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
  }))
  const pod = await startPod(cp, created!)
  const run = await runRegistrar(cp, pod)
  t.equal(run.code, 0, run.stdout + run.stderr)
  const edge = await waitFor('the edge provider', async () => {
    const l = await dubboProviders(zk.connect, 'com.acme.Edge')
    return l.length === 1 ? l : undefined
  })
  // node-1's only address is its InternalIP (ExternalIP preferred, absent)
  t.same(edge.map((p) => `${p.host}:${p.port}`), ['127.0.0.1:30880'])
  await cp.client.delete(podPath(refOf(pod)), { gracePeriodSeconds: 0 })
  await waitFor('the edge provider gone', async () => (await dubboProviders(zk.connect, 'com.acme.Edge')).length === 0, 60_000, 250)
})
