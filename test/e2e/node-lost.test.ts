// A node lost: its kubelet is killed, the node lifecycle controller marks it unreachable,
// the taint manager evicts its pods, and enlist deregisters them although no kubelet will
// ever confirm the deletion. Node monitoring and the default tolerations are shortened
// (16 s grace, 5 s toleration instead of 40 s and 300 s), so this takes seconds, not minutes.
// Its own cluster: the node does not come back. A witness node stays healthy beside it,
// because a controller that sees every node lost evicts nothing (witness-node.ts).
import t from 'tap'
import type { V1Node, V1Pod } from '@kubernetes/client-node'
import { podPath } from '../../src/kube/pod-ref.js'
import { REGISTERED_CONDITION } from '../../src/names.js'
import { startCmdb } from '../harness/cmdb.js'
import { startNodeCluster } from '../harness/cluster.js'
import { installEnlistOnNode } from '../harness/enlist-pod.js'
import { refOf } from '../harness/k8s.js'
import { realNodeSupport, supportLine } from '../harness/node-support.js'
import { waitFor } from '../harness/processes.js'
import { startWitnessNode } from '../harness/witness-node.js'

const support = realNodeSupport()

async function scenario(): Promise<void> {
  t.setTimeout(15 * 60_000)
  const c = await startNodeCluster({
    log: (l) => t.comment(l),
    apiserverArgs: ['--default-not-ready-toleration-seconds=5', '--default-unreachable-toleration-seconds=5'],
    // the kubelet renews its lease every 2 s (nodeLeaseDurationSeconds 8): 16 s is 8 missed renewals
    controllerManagerArgs: ['--node-monitor-grace-period=16s', '--node-monitor-period=2s'],
  })
  t.teardown(() => c.stop())
  // Without a second, healthy node the controller would never evict (see witness-node.ts).
  const witness = await startWitnessNode(c.cp)
  t.teardown(() => witness.stop())
  const cmdb = await startCmdb('/api/v1/instances', c.net.hostIP)
  t.teardown(() => cmdb.close())
  await installEnlistOnNode(c, {
    policy: (p) => {
      p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, timeoutSeconds: 5 }] }
    },
  })
  await c.cp.namespace('shop', { 'enlist.io/inject': 'enabled' })

  t.test('a killed kubelet: the node is lost, its pod evicted and deregistered', async (t) => {
    await c.cp.client.create('/apis/apps/v1/namespaces/shop/deployments', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'orders' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'orders' } },
        template: { metadata: { labels: { app: 'orders' } }, spec: { containers: [{ name: 'app', image: c.images.app.ref, imagePullPolicy: 'Never' }] } },
      },
    })
    const pod = await waitFor('the orders pod Ready', async () => {
      const [p] = (await c.cp.client.get<{ items: V1Pod[] }>('/api/v1/namespaces/shop/pods', { labelSelector: 'app=orders' })).items
      return p?.status?.conditions?.find((x) => x.type === 'Ready')?.status === 'True' ? p : undefined
    }, 120_000, 200)
    const uid = pod.metadata!.uid!
    t.ok(cmdb.records.has(uid), 'registered')

    const killed = Date.now()
    await c.node.killKubelet()
    const lost = await waitFor('the node marked lost', async () => {
      const n = await c.cp.client.get<V1Node>(`/api/v1/nodes/${c.node.name}`)
      return n.status?.conditions?.find((x) => x.type === 'Ready')?.status === 'Unknown' ? n : undefined
    }, 120_000, 500)
    t.match(lost.status?.conditions?.find((x) => x.type === 'Ready'), { status: 'Unknown', reason: 'NodeStatusUnknown' }, 'Ready is Unknown: the kubelet stopped posting')
    const evicted = await waitFor('the pod evicted', async () => {
      const p = await c.cp.client.get<V1Pod>(podPath(refOf(pod)))
      return p.metadata?.deletionTimestamp ? p : undefined
    }, 120_000, 500)
    t.ok(evicted.metadata?.deletionTimestamp, 'the taint manager deleted it; no kubelet confirms, so it stays Terminating')
    await waitFor('deregistered from the CMDB', async () => !cmdb.records.has(uid), 60_000, 200)
    const gone = await waitFor('the condition False', async () => {
      const p = await c.cp.client.get<V1Pod>(podPath(refOf(pod)))
      return p.status?.conditions?.find((x) => x.type === REGISTERED_CONDITION)?.status === 'False' ? p : undefined
    }, 60_000, 200)
    t.match(gone.status?.conditions?.find((x) => x.type === REGISTERED_CONDITION), { reason: 'Deregistered' }, 'enlist.io/registered=False, reason Deregistered')
    t.equal(gone.metadata?.annotations?.['app.io/annotation'], undefined, 'the discovery record is gone from the pod')
    t.comment(`deregistered ${Date.now() - killed} ms after the kubelet was killed`)
  })
}

if (support.ok) await scenario()
else t.test('a node lost', { skip: supportLine(support) }, async () => undefined)
