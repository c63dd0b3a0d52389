// etcd v3 on a real control plane and a real three-member cluster (apart from the control
// plane's etcd): keys appear and disappear exactly with their pods, through a leader change,
// a whole-cluster restart and an enlist restart. The etcd is shared with other clusters: their
// entries and unmarked ones outlive every sweep byte for byte, the old layout's key of a live
// pod moves to this cluster's, and a name claimed by another cluster refuses the backend.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { Etcd3 } from 'etcd3'
import { parse, stringify } from 'yaml'
import { podPath } from '../../src/kube/pod-ref.js'
import { decodeClaim, encodeClaim } from '../../src/registry/ownership.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { startEtcd } from '../harness/etcd.js'
import { createPod } from '../harness/events.js'
import { refOf, setPolicy } from '../harness/k8s.js'
import { register } from '../harness/kubelet.js'
import { owned, waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t)
const etcd = await owned(t, startEtcd(), (e) => e.close())
const PREFIX = '/registry/enlist/'
const enlist = await enlistFor(t, cp, {
  policy: (p) => {
    p.cluster = { name: 'east' }
    p.registry = {
      backends: [{ name: 'etcd', type: 'etcd', endpoints: etcd.endpoints, allowInsecure: true, prefix: '/registry/enlist/', timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }],
      reconcileIntervalSeconds: 5,
    }
  },
  optIn: ['shop'],
})

const reader = new Etcd3({ hosts: etcd.endpoints })
t.teardown(() => reader.close())
// this cluster's entries: `<prefix>east/<namespace>/<service>/<uid>`
const keys = async () => (await reader.getAll().prefix(`${PREFIX}east/`).keys()).sort()
const expect = (pods: V1Pod[]) => pods.map((p) => `${PREFIX}east/shop/orders/${p.metadata!.uid}`).sort()
const exactly = (what: string, pods: V1Pod[]) => waitFor(what, async () => JSON.stringify(await keys()) === JSON.stringify(expect(pods)), 60_000, 250)
const sweeps = () => enlist.logs().filter((l) => l.msg === 'registry sweep finished').length
/** Waits for `n` sweeps to finish from now: a positive signal, never a guess at the time. */
async function sweptTimes(n: number): Promise<void> {
  const from = sweeps()
  await waitFor(`${n} sweeps`, async () => sweeps() >= from + n, 60_000, 200)
}
/** Key, value and revisions: what "byte for byte" compares. */
const snapshot = async (key: string) => {
  const kv = (await reader.get(key).exec()).kvs[0]
  return kv ? { key: kv.key.toString(), value: kv.value.toString('base64'), mod: kv.mod_revision, version: kv.version } : undefined
}

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
  t.match(value, { uid: live[0]!.metadata!.uid, namespace: 'shop', pod: 'orders-1', service: 'orders', cluster: 'east', ip: live[0]!.status!.podIP, advertised: { mode: 'podIP', address: live[0]!.status!.podIP } })
  // the claim on the name holds this cluster's kube-system UID
  const kubeSystem = await cp.client.get<{ metadata: { uid: string } }>('/api/v1/namespaces/kube-system')
  t.match(decodeClaim((await reader.get(`${PREFIX}.clusters/east`).string()) ?? ''), { name: 'east', uid: kubeSystem.metadata.uid })
  const leases = await reader.getAll().prefix(PREFIX).exec()
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
  await sweptTimes(2)
  t.same(await keys(), before, 'after two sweeps, the same keys')
})

t.test("another cluster's entries and unmarked ones survive every sweep, byte for byte; this cluster's stray goes", async (t) => {
  const record = (uid: string, pod: string, cluster?: string) => JSON.stringify({ uid, namespace: 'shop', pod, service: 'orders', ip: '10.9.9.9', ...(cluster ? { cluster } : {}) })
  const west = `${PREFIX}west/shop/orders/0d6e1f2a-0000-4000-8000-000000000001`
  const unmarked = `${PREFIX}shop/orders/0d6e1f2a-0000-4000-8000-000000000002`
  const stray = `${PREFIX}east/shop/orders/0d6e1f2a-0000-4000-8000-000000000003`
  await reader.put(west).value(record('0d6e1f2a-0000-4000-8000-000000000001', 'orders-west', 'west'))
  await reader.put(unmarked).value(record('0d6e1f2a-0000-4000-8000-000000000002', 'orders-old'))
  await reader.put(stray).value(record('0d6e1f2a-0000-4000-8000-000000000003', 'orders-gone', 'east'))
  const before = [await snapshot(west), await snapshot(unmarked)]
  await waitFor("this cluster's stray removed", async () => (await snapshot(stray)) === undefined, 60_000, 250)
  await sweptTimes(3)
  t.same([await snapshot(west), await snapshot(unmarked)], before, 'untouched: same value, same revision')
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="etcd",kind="other"}'), 1)
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="etcd",kind="unmarked"}'), 1)
  t.same(await keys(), expect(live), "this cluster's entries: its live pods'")
  await reader.delete().key(west).exec()
  await reader.delete().key(unmarked).exec()
})

t.test("the old layout's key of a live pod moves to this cluster's; others stay unmarked", async (t) => {
  const pod = await provider()
  live.push(pod)
  await exactly('registered', live)
  const uid = pod.metadata!.uid!
  const now = `${PREFIX}east/shop/orders/${uid}`
  const old = `${PREFIX}shop/orders/${uid}`
  // as an enlist before marks left it: the old key, a record with no cluster (one transaction,
  // so that no sweep sees the pod with neither)
  const value = JSON.parse((await reader.get(now).string())!) as Record<string, unknown>
  delete value.cluster
  await reader.if(now, 'Version', '>', 0).then(reader.delete().key(now), reader.put(old).value(JSON.stringify(value))).commit()
  await waitFor('the old key moved', async () => (await snapshot(old)) === undefined && (await snapshot(now)) !== undefined, 60_000, 250)
  t.match(JSON.parse((await reader.get(now).string())!), { uid, pod: pod.metadata!.name, cluster: 'east' }, 'marked, the record otherwise as it was')
  t.same(await keys(), expect(live))
})

t.test('a name claimed by another cluster refuses the backend: unhealthy, counted, nothing written', async (t) => {
  const claimed = '/registry/claimed/'
  const holder = encodeClaim({ name: 'east', uid: 'a-dr-cluster-kube-system-uid', claimedAt: '2026-01-01T00:00:00.000Z' })
  await reader.put(`${claimed}.clusters/east`).value(holder)
  const cm = await cp.client.get<{ data: Record<string, string> }>('/api/v1/namespaces/enlist-system/configmaps/enlist-policy')
  const good = cm.data['policy.yaml']!
  const policy = parse(good) as { registry: { backends: Array<Record<string, unknown>> } }
  policy.registry.backends.push({ name: 'claimed', type: 'etcd', endpoints: etcd.endpoints, allowInsecure: true, prefix: claimed, timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } })
  await setPolicy(cp, stringify(policy))
  t.teardown(() => setPolicy(cp, good))
  const readyz = () => enlist.readyz() // the metrics listener's: readiness details never reach tenants
  // (a new backend first says it is connecting; then why it is refused)
  const warning = await waitFor('the refusal in /readyz?verbose', async () => (await readyz()).warnings.find((w) => w.check === 'backend claimed' && /is claimed/.test(w.reason)), 60_000, 250)
  t.match(warning.reason, /cluster name "east" is claimed in backend claimed by another cluster \(kube-system UID a-dr-cluster-kube-system-uid/)
  t.match(warning.reason, /enlist claim --take-over --backend claimed/, 'says how a DR cluster takes the name over')
  t.equal(await enlist.metric('enlist_cluster_claim_refused{backend="claimed"}'), 1)
  t.equal(await enlist.metric('enlist_cluster_claim_refused{backend="etcd"}'), 0)
  await sweptTimes(2)
  t.same(await reader.getAll().prefix(claimed).keys(), [`${claimed}.clusters/east`], 'no entry written, the claim not taken')
  t.equal(await reader.get(`${claimed}.clusters/east`).string(), holder)
  t.ok(enlist.logs().some((l) => l.level === 'error' && /is claimed in backend claimed/.test(l.msg)), 'logged')
  await setPolicy(cp, good)
  await waitFor('the refused backend gone from /readyz', async () => !(await readyz()).warnings.some((w) => w.check === 'backend claimed'), 60_000, 250)
})
