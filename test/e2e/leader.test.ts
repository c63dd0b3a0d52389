// Two replicas: both serve the webhook and the registration API, one leader runs the
// controller. Kill the leader and the other takes over within the lease duration; stop it
// cleanly and it hands the lease over at once.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { startCmdb } from '../harness/cmdb.js'
import { startControlPlane } from '../harness/control-plane.js'
import { type EnlistServer, startEnlist } from '../harness/enlist.js'
import { createDeployment, deployment } from '../harness/k8s.js'
import { runRegistrar, startPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'

const LEASE = ['--lease-duration=4s', '--renew-deadline=3s', '--retry-period=500ms']
const cp = await startControlPlane()
t.teardown(() => cp.stop())
const cmdb = await startCmdb()
t.teardown(() => cmdb.close())
const policy = (p: Record<string, unknown>) => {
  p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true }], reconcileIntervalSeconds: 5 }
}
const a = await startEnlist(cp, { args: [...LEASE, '--identity=replica-a'], policy })
t.teardown(() => a.stop())
const b = await startEnlist(cp, { args: [...LEASE, '--identity=replica-b'], install: false, pki: a.pki })
t.teardown(() => b.stop())
await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })

const isLeader = async (s: EnlistServer) => /^enlist_leader 1$/m.test(await s.metrics().catch(() => ''))
const holder = async () =>
  (await cp.client.get<{ spec: { holderIdentity?: string; leaseTransitions?: number } }>('/apis/coordination.k8s.io/v1/namespaces/enlist-system/leases/enlist-controller')).spec

async function registered(name: string, via: EnlistServer): Promise<V1Pod> {
  const [created] = await createDeployment(cp, 'shop', deployment(name))
  const pod = await startPod(cp, created!)
  const run = await runRegistrar(cp, pod, { env: { ENLIST_REGISTRATION_URL: `${via.url}/v1/registrations` } })
  if (run.code !== 0) throw new Error(run.stdout)
  return pod
}

let leader: EnlistServer
let follower: EnlistServer

t.test('exactly one leader; both replicas register pods', async (t) => {
  await waitFor('a leader', async () => (await isLeader(a)) || (await isLeader(b)))
  const [la, lb] = [await isLeader(a), await isLeader(b)]
  t.ok(la !== lb, 'one and only one')
  ;[leader, follower] = la ? [a, b] : [b, a]
  t.equal((await holder()).holderIdentity, la ? 'replica-a' : 'replica-b')
  for (const s of [a, b]) {
    const pod = await registered(`via-${s === a ? 'a' : 'b'}`, s)
    t.ok(cmdb.records.has(pod.metadata!.uid!), 'registered through this replica')
  }
})

t.test('kill the leader: the other takes over within the lease duration and deregisters', async (t) => {
  const pod = await registered('survivor', follower)
  if (leader.process.child.pid) process.kill(-leader.process.child.pid, 'SIGKILL')
  const killed = Date.now()
  await waitFor('the follower to lead', () => isLeader(follower), 15_000, 100)
  const takeover = Date.now() - killed
  // Followers time the lease from when they last saw it renewed: lease + a retry period or so.
  t.ok(takeover <= 4000 + 2 * 500 + 1000, `took over after ${takeover} ms (lease 4 s, retry 0.5 s)`)
  t.equal((await holder()).holderIdentity, follower === a ? 'replica-a' : 'replica-b')

  await cp.client.delete(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`)
  await waitFor('the new leader deregisters', async () => !cmdb.records.has(pod.metadata!.uid!))
  t.pass('the controller runs on the new leader')
})

t.test('a clean stop hands the lease over at once', async (t) => {
  await leader.restart()
  t.notOk(await isLeader(leader), 'the restarted replica follows')
  const before = (await holder()).leaseTransitions ?? 0
  t.equal(await follower.stop(), 0)
  const stopped = Date.now()
  await waitFor('handover', () => isLeader(leader), 15_000, 100)
  t.ok(Date.now() - stopped < 4000, `handed over after ${Date.now() - stopped} ms, less than a lease duration`)
  t.ok(((await holder()).leaseTransitions ?? 0) > before)
})
