// ZooKeeper in Dubbo's layout on a real control plane and a real three-server ensemble: a
// Dubbo consumer's reader (test/helpers/dubbo-reader.ts) sees exactly the live, registered
// pods at their advertised addresses, through pod churn, a session expiry, a leader failover,
// a full ensemble restart and an enlist restart. The ensemble is shared with other clusters:
// their providers and unmarked ones outlive every sweep byte for byte, the unmarked node of a
// live pod takes this cluster's mark, layout enlist keeps this cluster's nodes under its name,
// and a name claimed by another cluster refuses the backend.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import zookeeper from 'node-zookeeper-client'
import { parse, stringify } from 'yaml'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { dubboProvider, enlistOwner, javaUrlDecode, javaUrlEncode, providerNodeName } from '../../src/registry/dubbo.js'
import { encodeClaim } from '../../src/registry/ownership.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { createDeployment, deployment, podManifest, refOf, setPolicy } from '../harness/k8s.js'
import { runRegistrar, startPod, startRegistered } from '../harness/kubelet.js'
import { owned, waitFor } from '../harness/processes.js'
import { startZookeeper } from '../harness/zookeeper.js'
import { dubboProviders } from '../helpers/dubbo-reader.js'

const cp = await controlPlaneFor(t)
const zk = await owned(t, startZookeeper(), (z) => z.close())
const enlist = await enlistFor(t, cp, {
  policy: (p) => {
    p.cluster = { name: 'east' }
    p.registry = {
      backends: [{ name: 'zookeeper', type: 'zookeeper', connect: zk.connect, allowInsecure: true, layout: 'dubbo', sessionTimeoutSeconds: 4, timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }],
      reconcileIntervalSeconds: 5,
    }
    p.tenantOverrides = { allowed: ['podOptIn', 'dependsOn', 'metadata', 'service', 'drainSeconds', 'advertise'] }
    // shop owns the com.acme package; every other interface is anyone's
    p.tenancy = { interfaces: [{ namespaces: ['shop'], interfaces: ['com.acme.*'] }, { namespaces: ['*'], interfaces: ['*'] }] }
  },
  optIn: ['shop', 'evil'],
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

const sweeps = () => enlist.logs().filter((l) => l.msg === 'registry sweep finished').length
/** Waits for `n` sweeps to finish from now: a positive signal, never a guess at the time. */
async function sweptTimes(n: number): Promise<void> {
  const from = sweeps()
  await waitFor(`${n} sweeps`, async () => sweeps() >= from + n, 60_000, 200)
}

// The test's own session, to write other clusters' nodes and read what enlist left.
const zkc = zookeeper.createClient(zk.connect, { sessionTimeout: 10_000, retries: 2 })
await new Promise<void>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no ZooKeeper session with ${zk.connect}`)), 30_000)
  zkc.once('connected', () => {
    clearTimeout(timer)
    resolve()
  })
  zkc.connect()
})
t.teardown(() => zkc.close())
const NO_NODE = zookeeper.Exception.NO_NODE
const gone = (e: Error | zookeeper.Exception | null) => e !== null && 'getCode' in e && e.getCode() === NO_NODE
const zkDo = <T>(fn: (cb: (e: Error | zookeeper.Exception | null, v?: T) => void) => void): Promise<T> =>
  new Promise<T>((resolve, reject) => fn((e, v) => (e ? reject(e instanceof Error ? e : new Error(e.toString())) : resolve(v as T))))
const zkCreate = async (path: string, data: string) => {
  await zkDo((cb) => zkc.mkdirp(path.slice(0, path.lastIndexOf('/')), (e) => cb(e)))
  await zkDo((cb) => zkc.create(path, Buffer.from(data), zookeeper.CreateMode.PERSISTENT, (e) => cb(e)))
}
const zkRemove = (path: string) => zkDo((cb) => zkc.remove(path, -1, (e) => cb(gone(e) ? null : e)))
const zkChildren = (path: string) => zkDo<string[]>((cb) => zkc.getChildren(path, (e, c) => (gone(e) ? cb(null, []) : cb(e, c))))
/** Data and stat: what "byte for byte" compares; undefined when the node is gone. */
const zkNode = (path: string) =>
  zkDo<{ data: string; mzxid: string; version: number } | undefined>((cb) =>
    zkc.getData(path, (e, data, stat) => (gone(e) ? cb(null, undefined) : cb(e, e ? undefined : { data: data?.toString('base64') ?? '', mzxid: stat.mzxid.toString('hex'), version: stat.version }))),
  )
const readyz = () => enlist.readyz() // the metrics listener's: readiness details never reach tenants
const currentPolicy = async () => (await cp.client.get<{ data: Record<string, string> }>('/api/v1/namespaces/enlist-system/configmaps/enlist-policy')).data['policy.yaml']!
const ZK_BACKEND = { type: 'zookeeper', connect: zk.connect, allowInsecure: true, sessionTimeoutSeconds: 4, timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 } }
const fakeUid = (n: number) => `0d6e1f2a-0000-4000-8000-${String(n).padStart(12, '0')}`

t.test('providers appear as Dubbo consumers read them, and go exactly when their pods go', async (t) => {
  live.push(await provider(), await provider(), await provider())
  await exactly('three providers', live)
  const [p] = await providers()
  t.match(p!.params, { interface: IFACE, version: '1.0.0', methods: 'get,list', side: 'provider', application: 'orders', dubbo: '2.0.2', dynamic: 'false', 'enlist.cluster': 'east' })
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

/** Every node under /dubbo, with its path: what a Dubbo consumer could read as anything. */
async function dubboTree(path = '/dubbo'): Promise<string[]> {
  const out: string[] = []
  for (const c of await zkChildren(path)) {
    const child = `${path}/${c}`
    out.push(child)
    out.push(...(await dubboTree(child)))
  }
  return out
}

t.test('issue 24: a tenant in another namespace claiming an owned interface is denied and never among its providers', async (t) => {
  const before = await addresses()
  const r = await cp.kubectl(['-n', 'evil', 'run', 'thief', '--image=x:1', '--port=20880', '--labels=app=orders', `--annotations=enlist.io/metadata=${JSON.stringify({ interface: IFACE, version: '1.0.0' })}`])
  t.not(r.code, 0, 'denied')
  t.match(r.stderr, /the Dubbo interface "com\.acme\.Orders" is not assigned to namespace evil \(policy field tenancy\.interfaces\)/)
  const star = await cp.kubectl(['-n', 'evil', 'run', 'star', '--image=x:1', '--port=20880', '--annotations=enlist.io/metadata={"interface":"*"}'])
  t.not(star.code, 0, 'a "*" interface is denied')
  t.match(star.stderr, /"interface" "\*" is not one interface/)
  await t.rejects(cp.client.get(podPath({ namespace: 'evil', pod: 'thief' })), 'no such pod was created')
  // the same tenant with an interface nobody keeps registers as usual
  const own = await cp.client.create<V1Pod>(podsPath('evil'), podManifest('stock', {
    labels: { app: 'stock' },
    annotations: { 'enlist.io/metadata': JSON.stringify({ interface: 'org.evil.Stock' }) },
    containers: [{ name: 'app', image: 'stock:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
  }))
  const registered = await startRegistered(cp, own)
  t.same(await addresses(), before, 'the owned interface\'s providers unchanged')
  t.notOk((await providers()).some((p) => p.params['enlist.pod']?.startsWith('evil/')), 'no provider of com.acme.Orders from evil')
  t.equal((await dubboProviders(zk.connect, 'org.evil.Stock')).length, 1)
  await remove(registered, true)
})

t.test('issue 24: metadata naming category, a protocol not allowed or rule is denied; nothing but provider URLs is written', async (t) => {
  const tries: Array<[string, Record<string, string>, RegExp]> = [
    ['cat', { interface: IFACE, category: 'routers', force: 'true', rule: '=>host=6.6.6.6' }, /metadata keys "category", "force", "rule" are read by Dubbo as routing or configuration/],
    ['proto', { interface: IFACE, protocol: 'override', disabled: 'true' }, /metadata key "disabled" is read by Dubbo|"protocol" "override" is not allowed/],
    ['rest', { interface: IFACE, protocol: 'rest' }, /"protocol" "rest" is not allowed; accepted \(tenancy\.dubbo\.protocols\): dubbo, tri/],
    ['rule', { interface: IFACE, rule: 'host=1.2.3.4=>host=6.6.6.6' }, /metadata key "rule" is read by Dubbo/],
  ]
  for (const [name, md, why] of tries) {
    const r = await cp.kubectl(['-n', 'shop', 'run', name, '--image=x:1', '--port=20880', '--labels=app=orders', `--annotations=enlist.io/metadata=${JSON.stringify(md)}`])
    t.not(r.code, 0, `${name} denied`)
    t.match(r.stderr, why, name)
  }
  // a key that is no provider parameter stays in the record but out of the URL
  const created = await cp.client.create<V1Pod>(podsPath('shop'), podManifest('orders-extra', {
    labels: { app: 'orders' },
    annotations: { 'enlist.io/metadata': JSON.stringify({ interface: IFACE, version: '1.0.0', owner: 'team-a' }) },
    containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
  }))
  live.push(await startRegistered(cp, created))
  await exactly('the extra provider registered', live)
  const extra = (await providers()).find((p) => p.params['enlist.pod'] === 'shop/orders-extra')!
  t.equal(extra.params.owner, undefined, 'not a provider parameter: out of the URL')
  const dir = `/dubbo/${IFACE}/providers`
  const node = (await zkChildren(dir)).find((c) => enlistOwner(c)?.pod === 'orders-extra')!
  t.match(JSON.parse(Buffer.from((await zkNode(`${dir}/${node}`))!.data, 'base64').toString()), { metadata: { owner: 'team-a' } }, 'the record keeps it')
  // the whole tree: interfaces, each with providers only (and the cluster claims), every URL a provider's
  for (const path of await dubboTree()) {
    const rel = path.slice('/dubbo/'.length).split('/')
    if (rel[0] === '.clusters') continue
    if (rel.length === 2) t.equal(rel[1], 'providers', `${path}: providers only`)
    if (rel.length === 3) {
      const url = javaUrlDecode(rel[2]!)
      t.match(url, /^(dubbo|tri):\/\//, 'a provider protocol')
      t.notMatch(url, /[?&](category|rule|force|runtime|disabled|enabled|priority)=/, 'no routing parameter')
    }
  }
})

t.test('issue 24: hostile names through owner references are normalised or refused', async (t) => {
  // no labels: the name comes from the owner reference, as for a Deployment's pods
  const owned = (name: string, owner: string) => {
    const m = podManifest(name, {
      annotations: { 'enlist.io/metadata': JSON.stringify({ interface: 'com.acme.Names' }) },
      containers: [{ name: 'app', image: 'x:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
    })
    return { ...m, metadata: { ...m.metadata, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: owner, uid: '5d9e1f2a-0000-4000-8000-000000000001', controller: true }] } }
  }
  const service = (p: V1Pod): string => (JSON.parse(p.metadata!.annotations!['enlist.io/status']!) as { decision: { service: string } }).decision.service
  const dotted = await cp.client.create<V1Pod>(podsPath('shop'), owned('dotted', 'Orders.V2_beta'))
  t.equal(service(dotted), 'orders-v2-beta', 'dots, capitals and "_" normalised')
  const long = await cp.client.create<V1Pod>(podsPath('shop'), owned('long', `${'a'.repeat(300)}.x`))
  t.match(service(long), /^a{54}-[0-9a-f]{8}$/, 'a long name cut to 63 with a hash')
  const r = await cp.kubectl(['-n', 'shop', 'create', '-f', '-'], { input: JSON.stringify(owned('stars', '***')) })
  t.not(r.code, 0, 'nothing left: denied')
  t.match(r.stderr, /the service name enlist derives from the pod's ReplicaSet "\*\*\*" is empty once normalised/)
  const label = await cp.kubectl(['-n', 'shop', 'run', 'label', '--image=x:1', '--port=20880', '--labels=app=Orders_V2', `--annotations=enlist.io/metadata=${JSON.stringify({ interface: 'com.acme.Names' })}`])
  t.not(label.code, 0, 'an explicit name must already be a label')
  t.match(label.stderr, /label app: "Orders_V2" is invalid: not a service name; accepted: a DNS-1123 label/)
  // (their owner does not exist: the garbage collector may have deleted them already)
  for (const p of [dotted, long]) await remove(p, true).catch((err: Error) => t.match(err.message, /404/))
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
  await sweptTimes(2)
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

const PROVIDERS = `/dubbo/${IFACE}/providers`
const providerNode = (uid: string, pod: string, host: string, cluster?: string) =>
  providerNodeName(dubboProvider({ uid, namespace: 'shop', pod, service: 'orders', metadata: { interface: IFACE, version: '1.0.0' }, registeredAt: '2026-11-22T03:00:00Z', host, port: 20880, cluster }))

t.test("another cluster's providers and unmarked ones survive every sweep, byte for byte; this cluster's stray goes", async (t) => {
  const west = `${PROVIDERS}/${providerNode(fakeUid(1), 'orders-west', '10.9.9.1', 'west')}`
  const unmarked = `${PROVIDERS}/${providerNode(fakeUid(2), 'orders-old', '10.9.9.2')}`
  const stray = `${PROVIDERS}/${providerNode(fakeUid(3), 'orders-gone', '10.9.9.3', 'east')}`
  await zkCreate(west, JSON.stringify({ uid: fakeUid(1), cluster: 'west' }))
  await zkCreate(unmarked, JSON.stringify({ uid: fakeUid(2) }))
  await zkCreate(stray, JSON.stringify({ uid: fakeUid(3), cluster: 'east' }))
  const before = [await zkNode(west), await zkNode(unmarked)]
  t.ok(before.every((n) => n !== undefined))
  await waitFor("this cluster's stray removed", async () => (await zkNode(stray)) === undefined, 60_000, 250)
  await sweptTimes(3)
  t.same([await zkNode(west), await zkNode(unmarked)], before, 'untouched: same data, same modification')
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="zookeeper",kind="other"}'), 1)
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="zookeeper",kind="unmarked"}'), 1)
  // consumers see them all: the mark changes nothing for them
  t.ok((await addresses()).includes('10.9.9.1:20880'))
  await zkRemove(west)
  await zkRemove(unmarked)
  await exactly("this cluster's providers: its live pods'", live)
})

t.test('the unmarked node of a live pod takes this cluster\'s mark', async (t) => {
  live.push(await provider())
  await exactly('registered', live)
  const pod = live.at(-1)!
  const uid = pod.metadata!.uid!
  const mine = (await zkChildren(PROVIDERS)).find((c) => enlistOwner(c)?.uid === uid)!
  t.equal(enlistOwner(mine)?.cluster, 'east')
  // as an enlist before marks wrote it: no enlist.cluster, a record with no cluster
  const old = javaUrlDecode(mine).replace('&enlist.cluster=east', '')
  const oldNode = `${PROVIDERS}/${javaUrlEncode(old)}`
  const data = JSON.parse(Buffer.from((await zkNode(`${PROVIDERS}/${mine}`))!.data, 'base64').toString()) as Record<string, unknown>
  delete data.cluster
  await zkDo((cb) => zkc.transaction().create(oldNode, Buffer.from(JSON.stringify(data)), zookeeper.CreateMode.PERSISTENT).remove(`${PROVIDERS}/${mine}`, -1).commit((e) => cb(e)))
  t.equal(enlistOwner(oldNode.slice(PROVIDERS.length + 1))?.cluster, undefined)
  await waitFor('the node marked again', async () => {
    const nodes = (await zkChildren(PROVIDERS)).filter((c) => enlistOwner(c)?.uid === uid)
    return nodes.length === 1 && enlistOwner(nodes[0]!)?.cluster === 'east'
  }, 60_000, 250)
  t.equal(await zkNode(oldNode), undefined, 'the unmarked one gone')
  await exactly('the same providers', live)
})

t.test("layout enlist: <root>/<cluster>/<namespace>/<service>/<uid>; the old layout's node of a live pod moves there", async (t) => {
  const good = await currentPolicy()
  const policy = parse(good) as { registry: { backends: Array<Record<string, unknown>> } }
  policy.registry.backends.push({ ...ZK_BACKEND, name: 'zk-enlist', layout: 'enlist', root: '/enlist' })
  // another cluster's node and an unmarked one of no pod here, written before enlist looks
  const west = `/enlist/west/shop/orders/${fakeUid(11)}`
  const unmarked = `/enlist/shop/orders/${fakeUid(12)}`
  await zkCreate(west, JSON.stringify({ uid: fakeUid(11), cluster: 'west', pod: 'orders-west' }))
  await zkCreate(unmarked, JSON.stringify({ uid: fakeUid(12), pod: 'orders-old' }))
  const before = [await zkNode(west), await zkNode(unmarked)]
  await setPolicy(cp, stringify(policy))
  t.teardown(() => setPolicy(cp, good))
  const nodes = async () => (await zkChildren('/enlist/east/shop/orders')).sort()
  const uids = () => live.map((p) => p.metadata!.uid!).sort()
  await waitFor('every live pod under /enlist/east', async () => JSON.stringify(await nodes()) === JSON.stringify(uids()), 60_000, 250)
  const pod = live[0]!
  const uid = pod.metadata!.uid!
  t.match(JSON.parse(Buffer.from((await zkNode(`/enlist/east/shop/orders/${uid}`))!.data, 'base64').toString()), { uid, cluster: 'east' })
  // as an enlist before marks left it: the node at <root>/<ns>/<svc>/<uid>, no cluster
  const data = JSON.parse(Buffer.from((await zkNode(`/enlist/east/shop/orders/${uid}`))!.data, 'base64').toString()) as Record<string, unknown>
  delete data.cluster
  await zkDo((cb) => zkc.transaction().create(`/enlist/shop/orders/${uid}`, Buffer.from(JSON.stringify(data)), zookeeper.CreateMode.PERSISTENT).remove(`/enlist/east/shop/orders/${uid}`, -1).commit((e) => cb(e)))
  await waitFor('the old node moved', async () => (await zkNode(`/enlist/shop/orders/${uid}`)) === undefined && (await zkNode(`/enlist/east/shop/orders/${uid}`)) !== undefined, 60_000, 250)
  t.match(JSON.parse(Buffer.from((await zkNode(`/enlist/east/shop/orders/${uid}`))!.data, 'base64').toString()), { uid, pod: pod.metadata!.name, cluster: 'east' })
  await sweptTimes(2)
  t.same([await zkNode(west), await zkNode(unmarked)], before, "another cluster's node and the unmarked one untouched")
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="zk-enlist",kind="other"}'), 1)
  t.equal(await enlist.metric('enlist_registry_foreign_entries{backend="zk-enlist",kind="unmarked"}'), 1)
  // a pod that goes leaves nothing under this cluster's name
  await remove(live.pop()!, true)
  await waitFor('its node gone', async () => JSON.stringify(await nodes()) === JSON.stringify(uids()), 60_000, 250)
  await setPolicy(cp, good)
  await zkRemove(west)
  await zkRemove(unmarked)
})

t.test('a name claimed by another cluster refuses the backend: unhealthy, counted, nothing written', async (t) => {
  const holder = encodeClaim({ name: 'east', uid: 'a-dr-cluster-kube-system-uid', claimedAt: '2026-01-01T00:00:00.000Z' })
  await zkCreate('/claimed/.clusters/east', holder)
  const good = await currentPolicy()
  const policy = parse(good) as { registry: { backends: Array<Record<string, unknown>> } }
  policy.registry.backends.push({ ...ZK_BACKEND, name: 'claimed', layout: 'enlist', root: '/claimed' })
  await setPolicy(cp, stringify(policy))
  t.teardown(() => setPolicy(cp, good))
  // (a new backend first says it is connecting; then why it is refused)
  const warning = await waitFor('the refusal in /readyz?verbose', async () => (await readyz()).warnings.find((w) => w.check === 'backend claimed' && /is claimed/.test(w.reason)), 60_000, 250)
  t.match(warning.reason, /cluster name "east" is claimed in backend claimed by another cluster \(kube-system UID a-dr-cluster-kube-system-uid/)
  t.equal(await enlist.metric('enlist_cluster_claim_refused{backend="claimed"}'), 1)
  t.equal(await enlist.metric('enlist_cluster_claim_refused{backend="zookeeper"}'), 0)
  await sweptTimes(2)
  t.same(await zkChildren('/claimed'), ['.clusters'], 'no entry written')
  t.equal(Buffer.from((await zkNode('/claimed/.clusters/east'))!.data, 'base64').toString(), holder, 'the claim not taken')
  // this cluster's own claim, in the backend it holds
  const kubeSystem = await cp.client.get<{ metadata: { uid: string } }>('/api/v1/namespaces/kube-system')
  t.match(JSON.parse(Buffer.from((await zkNode('/dubbo/.clusters/east'))!.data, 'base64').toString()), { name: 'east', uid: kubeSystem.metadata.uid })
  await setPolicy(cp, good)
  await waitFor('the refused backend gone from /readyz', async () => !(await readyz()).warnings.some((w) => w.check === 'backend claimed'), 60_000, 250)
})
