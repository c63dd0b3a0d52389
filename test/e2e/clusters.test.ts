// Several clusters, one registry (docs/registration.md): two real control planes, each with its
// own enlist, share one three-server ZooKeeper ensemble (Dubbo's layout and enlist's), one etcd,
// one HTTP CMDB and one NATS server. Cluster "b" runs on the real node (enlist as pods of its
// Deployment, registrars reaching it through its Service); cluster "a" on a control plane with
// the kubelet stand-in. The same namespace, service and Dubbo interface in both. Pods come and
// go in both, each cluster sweeps every 5 s, cluster a loses all its pods while its enlist is
// down and starts again empty: afterwards every entry of cluster b is still there, byte for
// byte, and cluster a has nothing left. A third control plane that claims a's name is refused
// by every backend with a store. `enlist status` reports both clusters' entries and drift.
import t from 'tap'
import type { V1Deployment, V1Pod } from '@kubernetes/client-node'
import { Etcd3 } from 'etcd3'
import { Kvm } from '@nats-io/kv'
import { jetstream } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import zookeeper from 'node-zookeeper-client'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { javaUrlDecode } from '../../src/registry/dubbo.js'
import { startCmdb } from '../harness/cmdb.js'
import { type ControlPlane, startControlPlane } from '../harness/control-plane.js'
import { type NodeCluster, startNodeCluster } from '../harness/cluster.js'
import { type EnlistServer, createNamespaces, startEnlist } from '../harness/enlist.js'
import { installEnlistOnNode } from '../harness/enlist-pod.js'
import { podManifest, refOf } from '../harness/k8s.js'
import { runRegistrar, startRegistered } from '../harness/kubelet.js'
import { NATS_USERS, startNats } from '../harness/nats.js'
import { realNodeSupport, supportLine } from '../harness/node-support.js'
import { owned, waitFor } from '../harness/processes.js'
import { startEtcd } from '../harness/etcd.js'
import { startZookeeper } from '../harness/zookeeper.js'
import { enlist as runEnlist } from '../helpers/cli.js'
import { installSigningKey } from '../helpers/signing.js'

const support = realNodeSupport()
const IFACE = 'com.acme.Orders'
const METADATA = JSON.stringify({ interface: IFACE, version: '1.0.0' })
const NATS_SECRET = 'enlist-nats-credentials'

t.setTimeout(25 * 60_000)

if (support.ok) await scenarios()
else t.test('two clusters, one on the real node', { skip: supportLine(support) }, async () => undefined)

async function scenarios(): Promise<void> {
  // --- cluster b on the real node; the shared registries on the host's address on its link --
  const b: NodeCluster = await owned(t, startNodeCluster({ log: (l) => t.comment(l) }), (c) => c.stop())
  const host = b.net.hostIP
  const zk = await owned(t, startZookeeper({ host }), (z) => z.close())
  const etcd = await owned(t, startEtcd({ members: 1, host }), (e) => e.close())
  const nats = await owned(t, startNats({ host }), (n) => n.stop())
  const cmdb = await owned(t, startCmdb('/api/v1/instances', host), (c) => c.close())

  const registry = (cluster: string) => ({
    backends: [
      { name: 'kubernetes', type: 'kubernetes' },
      { name: 'dubbo', type: 'zookeeper', connect: zk.connect, allowInsecure: true, layout: 'dubbo', sessionTimeoutSeconds: 10, timeoutSeconds: 3, retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
      { name: 'zk', type: 'zookeeper', connect: zk.connect, allowInsecure: true, layout: 'enlist', sessionTimeoutSeconds: 10, timeoutSeconds: 3, retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
      { name: 'etcd', type: 'etcd', endpoints: [etcd.members[0]!.clientURL], allowInsecure: true, timeoutSeconds: 3, retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
      { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, timeoutSeconds: 3, retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
      { name: 'events', type: 'nats', url: nats.servers[0]!.url, allowInsecure: true, source: `/clusters/${cluster}`, credentialsFromSecret: NATS_SECRET, timeoutSeconds: 3, retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
    ],
    reconcileIntervalSeconds: 5,
  })
  const policyOf = (cluster: string) => (p: Record<string, unknown>) => {
    p.cluster = { name: cluster }
    p.registry = registry(cluster)
    // the interface is shop's to provide, in both clusters
    p.tenancy = { interfaces: [{ namespaces: ['shop'], interfaces: [IFACE] }] }
  }
  const natsSecret = async (cp: ControlPlane) => {
    await cp.kubectl(['create', 'namespace', 'enlist-system'])
    await cp.client.create('/api/v1/namespaces/enlist-system/secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: NATS_SECRET },
      stringData: { user: NATS_USERS.enlist.user, password: NATS_USERS.enlist.password },
    })
  }

  await natsSecret(b.cp)
  await installSigningKey(b.cp, 'b')
  const enlistB = await installEnlistOnNode(b, { policy: policyOf('b') })
  await b.cp.namespace('shop', { 'enlist.io/inject': 'enabled' })

  // --- cluster a: a second control plane, enlist as a process, the kubelet stand-in --------
  const cpA = await owned(t, startControlPlane(), (cp) => cp.stop())
  await natsSecret(cpA)
  await installSigningKey(cpA, 'a')
  const enlistA: EnlistServer = await owned(t, startEnlist(cpA, { policy: policyOf('a') }), (s) => s.stop())
  await createNamespaces(cpA, { optIn: ['shop'] })

  // --- what the registries hold, read as their own clients read them -------------------
  const etcdClient = new Etcd3({ hosts: etcd.members[0]!.clientURL })
  t.teardown(() => etcdClient.close())
  const nc = await natsConnect({ servers: nats.servers[0]!.url, user: NATS_USERS.enlist.user, pass: NATS_USERS.enlist.password })
  t.teardown(() => nc.close())
  const zkc = zookeeper.createClient(zk.connect, { sessionTimeout: 10_000, retries: 2 })
  await new Promise<void>((resolve) => {
    zkc.once('connected', () => resolve())
    zkc.connect()
  })
  t.teardown(() => zkc.close())
  const zkCall = <T>(fn: (cb: (err: unknown, v: T) => void) => void): Promise<T | undefined> =>
    new Promise((resolve, reject) =>
      fn((err, v) => {
        if (err && (err as { code?: number }).code === zookeeper.Exception.NO_NODE) return resolve(undefined)
        if (err) return reject(err)
        resolve(v)
      }),
    )
  /** Every node under `path` with its data, depth first. */
  async function zkDump(path: string, out = new Map<string, string>()): Promise<Map<string, string>> {
    const data = await zkCall<Buffer>((cb) => zkc.getData(path, (err, d) => cb(err, d)))
    if (data === undefined && path !== '/') return out
    if (data && data.length > 0) out.set(path, data.toString('utf8'))
    for (const child of (await zkCall<string[]>((cb) => zkc.getChildren(path, (err, c) => cb(err, c)))) ?? []) await zkDump(`${path === '/' ? '' : path}/${child}`, out)
    return out
  }
  async function natsLedger(): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    const kv = await new Kvm(jetstream(nc)).open('enlist-registrations')
    for await (const key of await kv.keys()) {
      const e = await kv.get(key)
      if (e && e.operation === 'PUT') out.set(key, e.string())
    }
    return out
  }
  const clusterOf = (value: string): string | undefined => {
    try {
      const v = JSON.parse(value) as { cluster?: string; data?: { cluster?: string } }
      return v.cluster ?? v.data?.cluster
    } catch {
      return undefined
    }
  }

  /** Every entry of `cluster` in every shared backend, as each backend holds it. */
  async function entriesOf(cluster: string): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for (const [path, data] of await zkDump('/dubbo')) {
      if (path.includes('/providers/') && javaUrlDecode(path.slice(path.lastIndexOf('/') + 1)).includes(`enlist.cluster=${cluster}`)) out.set(`zookeeper ${path}`, data)
    }
    for (const [path, data] of await zkDump(`/enlist/${cluster}`)) out.set(`zookeeper ${path}`, data)
    for (const [k, v] of Object.entries(await etcdClient.getAll().prefix(`/enlist/${cluster}/`).strings())) out.set(`etcd ${k}`, v)
    for (const [uid, r] of cmdb.records) if (r.cluster === cluster) out.set(`cmdb ${uid}`, JSON.stringify(r))
    for (const [k, v] of await natsLedger()) if (clusterOf(v) === cluster) out.set(`nats ${k}`, v)
    return out
  }
  /** The uids `entriesOf` names, by backend. */
  const uidsIn = (entries: Map<string, string>, backend: string): Set<string> => {
    const out = new Set<string>()
    for (const [k, v] of entries) {
      if (!k.startsWith(`${backend} `)) continue
      const parsed = JSON.parse(v) as { uid?: string; data?: { uid?: string } }
      const uid = parsed.uid ?? parsed.data?.uid
      if (uid) out.add(uid)
    }
    return out
  }
  const BACKENDS = ['zookeeper', 'etcd', 'cmdb', 'nats']
  const registeredEverywhere = (cluster: string, uids: readonly string[], what: string) =>
    waitFor(
      what,
      async () => {
        const e = await entriesOf(cluster)
        // ZooKeeper holds each pod twice: a Dubbo provider and a node in enlist's layout
        return BACKENDS.every((backend) => JSON.stringify([...uidsIn(e, backend)].sort()) === JSON.stringify([...uids].sort())) ? e : undefined
      },
      90_000,
      500,
    )

  // --- the pods ------------------------------------------------------------------------
  let n = 0
  async function providerInA(): Promise<V1Pod> {
    const created = await cpA.client.create<V1Pod>(
      podsPath('shop'),
      podManifest(`orders-a${++n}`, {
        labels: { app: 'orders' },
        annotations: { 'enlist.io/metadata': METADATA },
        containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
      }),
    )
    return startRegistered(cpA, created)
  }
  const podsOfB = async (): Promise<V1Pod[]> =>
    (await b.cp.client.get<{ items: V1Pod[] }>(podsPath('shop'), { labelSelector: 'app=orders' })).items.filter((p) => !p.metadata?.deletionTimestamp)
  async function scaleB(replicas: number): Promise<V1Pod[]> {
    await b.cp.client.patch(`/apis/apps/v1/namespaces/shop/deployments/orders`, { spec: { replicas } }, 'application/merge-patch+json')
    return waitFor(
      `cluster b at ${replicas} registered pods`,
      async () => {
        const pods = (await b.cp.client.get<{ items: V1Pod[] }>(podsPath('shop'), { labelSelector: 'app=orders' })).items
        const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === 'enlist.io/registered' && c.status === 'True'))
        return pods.length === replicas && ready.length === replicas ? pods : undefined
      },
      180_000,
      500,
    )
  }
  const sweepsOfA = () => enlistA.logs().filter((l) => l.msg === 'registry sweep finished').length
  const sweepsOfB = async () => (await enlistB.logs()).split('\n').filter((l) => l.includes('"msg":"registry sweep finished"')).length
  /** Waits for `count` more sweeps to finish, counted by the log line each one ends with. */
  async function sweeps(what: string, count: () => number | Promise<number>, more = 2): Promise<void> {
    const from = await count()
    await waitFor(what, async () => (await count()) >= from + more, 90_000, 250)
  }

  const uidsOf = (pods: V1Pod[]) => pods.map((p) => p.metadata!.uid!)

  let podsA: V1Pod[] = []
  let podsB: V1Pod[] = []
  let beforeB = new Map<string, string>()

  t.test('both clusters register providers of one interface, in one namespace and service, each entry with its cluster', async (t) => {
    await b.cp.client.create('/apis/apps/v1/namespaces/shop/deployments', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'orders' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'orders' } },
        template: {
          metadata: { labels: { app: 'orders' }, annotations: { 'enlist.io/metadata': METADATA } },
          spec: { terminationGracePeriodSeconds: 5, containers: [{ name: 'app', image: b.images.app.ref, imagePullPolicy: 'Never', ports: [{ name: 'dubbo', containerPort: 8080 }] }] },
        },
      },
    } satisfies V1Deployment)
    podsB = await scaleB(2)
    podsA = [await providerInA(), await providerInA(), await providerInA()]
    const a = await registeredEverywhere('a', uidsOf(podsA), 'cluster a registered in every backend')
    beforeB = await registeredEverywhere('b', uidsOf(podsB), 'cluster b registered in every backend')
    // the marks, as docs/registration.md gives them
    t.ok([...a.keys()].some((k) => k.startsWith('zookeeper /dubbo/com.acme.Orders/providers/') && javaUrlDecode(k).includes('enlist.cluster=a&')), 'Dubbo provider URLs carry enlist.cluster')
    t.ok([...a.keys()].some((k) => k.startsWith('zookeeper /enlist/a/shop/orders/')), 'enlist\'s ZooKeeper layout has the cluster in the path')
    t.ok([...a.keys()].some((k) => k.startsWith('etcd /enlist/a/shop/orders/')), 'etcd keys have the cluster after the prefix')
    t.same([...a.entries()].filter(([, v]) => clusterOf(v) !== 'a'), [], 'every record of a says cluster a')
    t.same([...beforeB.entries()].filter(([, v]) => clusterOf(v) !== 'b'), [], 'every record of b says cluster b')
    t.equal(uidsIn(beforeB, 'zookeeper').size, 2)
  })

  t.test('pods come and go in both clusters; each sweep leaves the other cluster\'s entries as they are', async (t) => {
    const beforeA = await entriesOf('a')
    // b: one pod goes (scale down: the ReplicaSet picks which), one comes (scale up: a new pod)
    const kept = uidsOf(await scaleB(1))
    const goneB = podsB.find((p) => !kept.includes(p.metadata!.uid!))!
    podsB = await scaleB(2)
    t.notOk(uidsOf(podsB).includes(goneB.metadata!.uid!), 'b replaced a pod')
    beforeB = await registeredEverywhere('b', uidsOf(podsB), 'cluster b\'s entries follow its pods')
    await sweeps('two sweeps of a', sweepsOfA)
    t.same(await entriesOf('a'), beforeA, 'cluster a\'s entries are untouched by b\'s churn and sweeps')

    // a: one pod goes gracefully, one comes
    const goneA = podsA.shift()!
    await cpA.client.delete(podPath(refOf(goneA)))
    podsA.push(await providerInA())
    await registeredEverywhere('a', uidsOf(podsA), 'cluster a\'s entries follow its pods')
    await sweeps('two sweeps of b', sweepsOfB)
    t.same(await entriesOf('b'), beforeB, 'cluster b\'s entries are byte for byte as they were')
    t.equal(await enlistA.metric('enlist_registry_foreign_entries{backend="etcd",kind="other"}'), uidsIn(beforeB, 'etcd').size, 'a counts b\'s etcd entries as another cluster\'s')
    t.equal(await enlistA.metric('enlist_registry_foreign_entries{backend="etcd",kind="unmarked"}'), 0)
  })

  t.test('a third control plane that claims cluster a\'s name is refused by every backend with a store, and writes nothing there', async (t) => {
    const cpC = await startControlPlane()
    t.teardown(() => cpC.stop())
    await natsSecret(cpC)
    await installSigningKey(cpC, 'a')
    const enlistC = await startEnlist(cpC, { policy: policyOf('a') })
    t.teardown(() => enlistC.stop())
    await createNamespaces(cpC, { optIn: ['shop'] })
    const created = await cpC.client.create<V1Pod>(podsPath('shop'), podManifest('intruder', { annotations: { 'enlist.io/metadata': METADATA }, containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }] }))
    const run = await runRegistrar(cpC, created, { env: { ENLIST_TIMEOUT_SECONDS: '8' } })
    t.not(run.code, 0, 'its registration fails')
    for (const backend of ['dubbo', 'zk', 'etcd', 'events']) {
      await waitFor(`backend ${backend} refused`, async () => (await enlistC.metric(`enlist_cluster_claim_refused{backend="${backend}"}`)) === 1, 30_000, 250)
    }
    const logs = enlistC.logs().map((l) => JSON.stringify(l)).join('\n')
    t.match(logs, /cluster name \\"a\\" is claimed in backend etcd by another cluster \(kube-system UID /, 'the log names the holder')
    const uid = created.metadata!.uid!
    const all = [...(await entriesOf('a')).values()].join('\n')
    t.notMatch(all, new RegExp(uid), 'nothing of its pod reached ZooKeeper, etcd or the NATS ledger')
    t.equal(await enlistA.metric('enlist_cluster_claim_refused{backend="etcd"}'), 0, 'cluster a keeps its claim')
    await enlistC.stop()
  })

  t.test('cluster a loses all its pods while its enlist is down and starts again empty: a is clean, b untouched', async (t) => {
    await enlistA.stop()
    // every pod, the one still terminating from before included (the stand-in runs no kubelet)
    for (const p of (await cpA.client.get<{ items: V1Pod[] }>(podsPath('shop'))).items) await cpA.client.delete(podPath(refOf(p)), { gracePeriodSeconds: 0 })
    await waitFor('cluster a has no pods', async () => (await cpA.client.get<{ items: V1Pod[] }>(podsPath('shop'))).items.length === 0, 60_000, 250)
    await enlistA.restart()
    await sweeps('two sweeps of a after its restart', sweepsOfA)
    await waitFor('nothing of cluster a left', async () => (await entriesOf('a')).size === 0, 60_000, 500)
    t.same(await entriesOf('a'), new Map(), 'no entry of cluster a in ZooKeeper, etcd, the CMDB or the NATS ledger')
    t.same(await entriesOf('b'), beforeB, 'every entry of cluster b is there, byte for byte')
    t.same(uidsOf(await podsOfB()).sort(), [...uidsIn(beforeB, 'etcd')].sort(), 'and still names b\'s live pods')
  })

  t.test('enlist status reads the leader\'s report with a kubeconfig alone: other clusters\' entries, drift and its exit code', async (t) => {
    await sweeps('a sweep of a', sweepsOfA, 1)
    const ok = await runEnlist(['status', `--kubeconfig=${cpA.kubeconfig}`, '-o', 'json'])
    t.equal(ok.code, 0, `the registry is true: exit 0 ${ok.stderr}`)
    const report = JSON.parse(ok.stdout) as { report?: { cluster: string; backends: Array<{ backend: string; entries: { own: number; other: number; unmarked: number }; otherClusters: Record<string, number> }> }; cluster?: string; backends?: unknown }
    const r = report.report ?? (report as unknown as NonNullable<typeof report.report>)
    t.equal(r.cluster, 'a')
    const etcdStatus = r.backends.find((x) => x.backend === 'etcd')
    t.same(etcdStatus?.entries, { own: 0, other: uidsIn(beforeB, 'etcd').size, unmarked: 0, duplicate: 0 })
    t.same(etcdStatus?.otherClusters, { b: uidsIn(beforeB, 'etcd').size })
    const table = await runEnlist(['status', `--kubeconfig=${cpA.kubeconfig}`])
    t.equal(table.code, 0)
    t.match(table.stdout, /etcd/, 'the table lists each backend')

    // drift: a stale entry of a's that its sweep may not remove (sweep off for etcd)
    const edited = await cpA.kubectl(['-n', 'enlist-system', 'get', 'configmap', 'enlist-policy', '-o', 'json'])
    const cm = JSON.parse(edited.stdout) as { data: Record<string, string> }
    const { parse, stringify } = await import('yaml')
    const policy = parse(cm.data['policy.yaml']!) as { registry: { backends: Array<Record<string, unknown>> } }
    for (const be of policy.registry.backends) if (be.name === 'etcd') be.sweep = false
    cm.data['policy.yaml'] = stringify(policy)
    await cpA.client.patch('/api/v1/namespaces/enlist-system/configmaps/enlist-policy', { data: cm.data }, 'application/merge-patch+json')
    await enlistA.waitForLog('the policy with sweep off', (l) => l.msg === 'policy in effect' && enlistA.logs().filter((x) => x.msg === 'policy in effect').length >= 2, 30_000)
    const stale = '00000000-0000-4000-8000-00000000a11e'
    await etcdClient.put(`/enlist/a/shop/orders/${stale}`).value(JSON.stringify({ uid: stale, namespace: 'shop', pod: 'orders-gone', service: 'orders', cluster: 'a' }))
    await sweeps('two sweeps of a with the stale entry', sweepsOfA)
    t.equal(await etcdClient.get(`/enlist/a/shop/orders/${stale}`).string() !== null, true, 'sweep off: the entry stays')
    const drift = await runEnlist(['status', `--kubeconfig=${cpA.kubeconfig}`, '--grace=0s', '-o', 'json'])
    t.equal(drift.code, 1, 'exit 1: an entry of this cluster whose pod is gone')
    t.match(drift.stdout, new RegExp(stale))
    const young = await runEnlist(['status', `--kubeconfig=${cpA.kubeconfig}`, '--grace=1h'])
    t.equal(young.code, 0, 'within the grace window it is not drift')
    await etcdClient.delete().key(`/enlist/a/shop/orders/${stale}`)
  })
}
