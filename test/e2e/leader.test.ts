// Two replicas: both serve the webhook and the registration API, one leader runs the
// controller. Kill the leader and the other takes over within the lease duration; stop it
// cleanly and it hands the lease over at once.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { podPath } from '../../src/kube/pod-ref.js'
import { cmdbFor, waitForNoEntry } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { type EnlistServer, enlistFor } from '../harness/enlist.js'
import { refOf } from '../harness/k8s.js'
import { registeredDeploymentPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'

const LEASE = ['--lease-duration=4s', '--renew-deadline=3s', '--retry-period=500ms']
const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const policy = (p: Record<string, unknown>) => {
  p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true }], reconcileIntervalSeconds: 5 }
}
const a = await enlistFor(t, cp, { args: [...LEASE, '--identity=replica-a'], policy })
const b = await enlistFor(t, cp, { args: [...LEASE, '--identity=replica-b'], install: false, pki: a.pki, optIn: ['shop'] })

const isLeader = async (s: EnlistServer) => (await s.metric('enlist_leader').catch(() => undefined)) === 1
const holder = async () =>
  (await cp.client.get<{ spec: { holderIdentity?: string; leaseTransitions?: number } }>('/apis/coordination.k8s.io/v1/namespaces/enlist-system/leases/enlist-controller')).spec

const registered = (name: string, via: EnlistServer): Promise<V1Pod> => registeredDeploymentPod(cp, 'shop', name, `${via.url}/v1/registrations`)

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
  const before = await holder()
  if (leader.process.child.pid) process.kill(-leader.process.child.pid, 'SIGKILL')
  const killed = Date.now()
  await waitFor('the follower to lead', () => isLeader(follower), 15_000, 100)
  const takeover = Date.now() - killed
  // Order, not an upper bound a busy machine can break: the follower waited out the lease (a
  // lower bound, which load only lengthens) and took it from the killed holder, not a released one
  t.ok(takeover >= 4000 - 500, `took over after ${takeover} ms (lease 4 s, retry 0.5 s): the lease waited out`)
  t.equal((await holder()).holderIdentity, follower === a ? 'replica-a' : 'replica-b')
  // taken over from the killed holder: one transition from it, and it never released the lease
  t.equal(before.holderIdentity, leader === a ? 'replica-a' : 'replica-b', 'the killed replica held the lease')
  t.equal((await holder()).leaseTransitions, (before.leaseTransitions ?? 0) + 1, 'one transition: from the killed holder to the follower')
  t.notOk(leader.logs().some((l) => l.msg === 'released the lease'), 'the killed holder never released it')

  await cp.client.delete(podPath(refOf(pod)))
  await waitForNoEntry(cmdb, pod.metadata!.uid!, 'the new leader deregisters')
  t.pass('the controller runs on the new leader')
})

t.test('a clean stop hands the lease over at once', async (t) => {
  await leader.restart()
  t.notOk(await isLeader(leader), 'the restarted replica follows')
  const before = (await holder()).leaseTransitions ?? 0
  t.equal(await follower.stop(), 0)
  const stopped = Date.now()
  await waitFor('handover', () => isLeader(leader), 15_000, 100)
  // at once: through the release (the lease taken with no previous holder), not its expiry
  // (previous: the stopped replica), whatever the clock says on a busy machine
  // (the logger batches its writes: the line may follow the metric by a moment)
  const acquired = await leader.waitForLog('the acquisition logged', (l) => l.msg === 'acquired the lease')
  t.match(acquired, { previous: null }, `handed over through the release (${Date.now() - stopped} ms)`)
  t.ok(((await holder()).leaseTransitions ?? 0) > before)
})
