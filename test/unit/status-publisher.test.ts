// The leader's status report writer: ConfigMap enlist-status created, then updated, with
// what each sweep found; only while started (leader); a failed write is logged, never
// thrown, and the next sweep writes again; reports arriving during a write coalesce.
import t from 'tap'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { StatusPublisher } from '../../src/controller/status-publisher.js'
import { type BackendStatus, STATUS_CONFIGMAP, STATUS_KEY, type StatusReport } from '../../src/contract/status-report.js'
import { KubeApiError } from '../../src/kube/client.js'
import { FakeKube } from '../helpers/fake-kube.js'
import { captureLogger } from '../helpers/fake-cluster.js'

const NS = 'enlist-system'
const PATH = `/api/v1/namespaces/${NS}/configmaps/${STATUS_CONFIGMAP}`

function backend(name: string, own: number): BackendStatus {
  return { backend: name, type: 'etcd', sweep: true, entries: { own, other: 2, unmarked: 1, duplicate: 0 }, otherClusters: { 'prod-b': 2 }, removed: 0, rewritten: 0, stale: [], staleCount: 0, missing: [], missingCount: 0 }
}

function setup() {
  const kube = new FakeKube()
  const { log, lines } = captureLogger()
  const pub = new StatusPublisher({
    client: kube.client,
    namespace: NS,
    identity: 'enlist-0',
    cluster: () => ({ name: 'prod-a', uid: 'ks-uid' }),
    sweepIntervalSeconds: () => 60,
    log,
    now: () => new Date('2026-01-02T03:04:05.000Z'),
  })
  const stored = (): StatusReport | undefined => {
    const cm = kube.peek<V1ConfigMap>(PATH)
    return cm ? (JSON.parse(cm.data![STATUS_KEY]!) as StatusReport) : undefined
  }
  return { kube, pub, lines, stored }
}

t.test('creates the ConfigMap at the first sweep, updates it at the next', async (t) => {
  const { kube, pub, stored } = setup()
  pub.start()
  pub.publish([backend('etcd', 3)])
  await pub.settled()
  t.same(stored(), { cluster: 'prod-a', clusterUID: 'ks-uid', leader: 'enlist-0', generatedAt: '2026-01-02T03:04:05.000Z', sweepIntervalSeconds: 60, backends: [backend('etcd', 3)] })
  t.equal(kube.callsTo('POST').length, 1, 'created when absent')
  pub.publish([backend('etcd', 4)])
  await pub.settled()
  t.equal(stored()!.backends[0]!.entries.own, 4)
  t.equal(kube.callsTo('POST').length, 1, 'then updated')
  t.equal(kube.callsTo('PUT', PATH).length, 2, 'an update is tried first each time')
  await pub.stop()
})

t.test('writes nothing unless started (followers), nor after stop (leadership lost)', async (t) => {
  const { kube, pub } = setup()
  pub.publish([backend('etcd', 1)])
  await pub.settled()
  t.equal(kube.calls.length, 0)
  const lease = new AbortController()
  pub.start(lease.signal)
  lease.abort()
  pub.publish([backend('etcd', 1)])
  await pub.settled()
  t.equal(kube.calls.length, 0, 'the lease lost: nothing written')
  await pub.stop()
})

t.test('a failed write is logged, never thrown; the next sweep writes again', async (t) => {
  const { kube, pub, lines, stored } = setup()
  pub.start()
  kube.fail({ verb: 'PUT' }, 500)
  pub.publish([backend('etcd', 1)])
  await pub.settled()
  t.equal(stored(), undefined)
  t.match(lines.find((l) => l.level === 40), { msg: /cannot write the registry status report; the next sweep writes it again/, configMap: `${NS}/${STATUS_CONFIGMAP}` })
  pub.publish([backend('etcd', 2)])
  await pub.settled()
  t.equal(stored()!.backends[0]!.entries.own, 2)
  t.ok(lines.some((l) => /written again/.test(String(l.msg))), 'the recovery is logged')
  await pub.stop()
})

t.test('reports that arrive during a write coalesce: the newest is written next', async (t) => {
  const { kube, pub, stored } = setup()
  pub.start()
  pub.publish([backend('etcd', 1)])
  pub.publish([backend('etcd', 2)])
  pub.publish([backend('etcd', 3)])
  await pub.settled()
  t.equal(stored()!.backends[0]!.entries.own, 3)
  t.ok(kube.callsTo('PUT', PATH).length <= 2, 'no write per report')
  await pub.stop()
})

t.test('a ConfigMap created meanwhile (409 on create) is updated after all', async (t) => {
  const { kube, pub, stored } = setup()
  pub.start()
  // another leader's create lands between this one's PUT (404) and POST
  kube.fail({ verb: 'POST' }, () => {
    kube.put(PATH, { apiVersion: 'v1', kind: 'ConfigMap', data: { [STATUS_KEY]: '{}' } })
    return new KubeApiError(409, 'AlreadyExists', 'configmaps "enlist-status" already exists', 'POST', PATH)
  })
  pub.publish([backend('etcd', 6)])
  await pub.settled()
  t.equal(stored()!.backends[0]!.entries.own, 6)
  t.equal(kube.callsTo('PUT', PATH).length, 2)
  await pub.stop()
})
