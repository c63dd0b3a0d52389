// Two replicas, each reaching the apiserver through its own fault proxy; the leader is cut
// off (a partition: nothing it asks is answered, nothing in flight arrives). With the timings
// the issue measured (lease 6 s, renew deadline 3 s, retry 1 s), the leader stops leading at
// its renew deadline, before its lease can pass, and the other replica takes over after the
// lease duration: at no instant do both act as leader, sampled on both replicas' enlist_leader
// and the Lease, and read from their logs. A pod deleted meanwhile is deregistered by the
// new leader; once the partition heals, the old leader follows and serves again.
import t from 'tap'
import { cmdbFor, waitForNoEntry } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { type EnlistServer, enlistFor, type LogLine } from '../harness/enlist.js'
import { startFaultProxy } from '../harness/fault-proxy.js'
import { cmdbPolicy, deletePod, registeredPod } from '../harness/faults.js'
import { owned, waitFor } from '../harness/processes.js'

const LEASE = ['--lease-duration=6s', '--renew-deadline=3s', '--retry-period=1s', '--api-request-timeout=5s']

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const proxyA = await owned(t, startFaultProxy(cp), (p) => p.close())
const proxyB = await owned(t, startFaultProxy(cp), (p) => p.close())
const a = await enlistFor(t, cp, { apiserver: proxyA.url, args: [...LEASE, '--identity=replica-a'], policy: cmdbPolicy(cmdb) })
const b = await enlistFor(t, cp, { apiserver: proxyB.url, args: [...LEASE, '--identity=replica-b'], install: false, pki: a.pki, optIn: ['shop'] })

const leaderValue = (s: EnlistServer): Promise<number | undefined> => s.metric('enlist_leader').catch(() => undefined)
const holder = async (): Promise<string | undefined> =>
  (await cp.client.get<{ spec: { holderIdentity?: string } }>('/apis/coordination.k8s.io/v1/namespaces/enlist-system/leases/enlist-controller').catch(() => undefined))?.spec.holderIdentity ?? undefined
const at = (l: LogLine): number => Date.parse(String(l.time))
const lastLog = (s: EnlistServer, msg: string): LogLine | undefined => s.logs().filter((l) => l.msg === msg).at(-1)

t.test('a partitioned leader steps down before the other takes over: never two leaders', async (t) => {
  await waitFor('a leader', async () => (await leaderValue(a)) === 1 || (await leaderValue(b)) === 1, 30_000)
  const [leader, follower, leaderProxy, leaderName, followerName] = (await leaderValue(a)) === 1 ? [a, b, proxyA, 'replica-a', 'replica-b'] : [b, a, proxyB, 'replica-b', 'replica-a']
  await leader.waitForLog('the controller', (l) => l.msg === 'controller started', 30_000)
  const pod = await registeredPod(cp, cmdb, follower, 'shop', 'survivor')

  // sample both replicas' enlist_leader and the Lease's holder, ten times a second
  const samples: Array<{ at: number; leader?: number; follower?: number; holder?: string }> = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const [l, f, h] = await Promise.all([leaderValue(leader), leaderValue(follower), holder()])
      samples.push({ at: Date.now(), leader: l, follower: f, holder: h })
      await new Promise((r) => setTimeout(r, 100))
    }
  })()

  const partitioned = Date.now()
  leaderProxy.setFault('partition')
  await new Promise((r) => setTimeout(r, 1000))
  const deleted = Date.now()
  await deletePod(cp, pod)
  await waitFor('the follower to lead', async () => (await leaderValue(follower)) === 1, 30_000, 50)
  const tookOver = Date.now()
  await waitForNoEntry(cmdb, pod.metadata!.uid!, 'the new leader deregisters the pod deleted during the partition', 60_000, 50)
  const deregistered = Date.now()

  const healed = Date.now()
  leaderProxy.setFault(undefined)
  // the old leader serves registrations again once it reaches the apiserver
  const again = await registeredPod(cp, cmdb, leader, 'shop', 'after-heal')
  const registeredAgain = Date.now()
  await new Promise((r) => setTimeout(r, 2000)) // a few more samples with both connected
  sampling = false
  await sampler

  const stopped = lastLog(leader, 'stopped leading: abandoning the leader-only work')
  const workStopped = lastLog(leader, 'the leader-only work has stopped')
  const controllerStopped = lastLog(leader, 'controller stopped')
  const became = lastLog(follower, 'became leader: starting the controller')
  const started = follower.logs().filter((l) => l.msg === 'controller started').at(-1)
  t.ok(stopped && workStopped && controllerStopped && became && started, 'both sides logged their turn')
  t.comment(
    `partition: the leader stepped down ${at(stopped!) - partitioned} ms after it (renew deadline 3 s) and its work had stopped ${at(workStopped!) - partitioned} ms after it; ` +
      `the other replica became leader ${at(became!) - partitioned} ms after it (lease 6 s), ${at(became!) - at(workStopped!)} ms after the old leader's work stopped; ` +
      `the pod deleted meanwhile was deregistered ${deregistered - deleted} ms after its deletion; after the partition healed the old leader registered a pod in ${registeredAgain - healed} ms; ` +
      `${samples.length} samples`,
  )
  t.ok(at(workStopped!) < at(became!), "the old leader's work stopped before the new leader began")
  t.ok(at(controllerStopped!) <= at(workStopped!) && at(controllerStopped!) < at(started!), "the old controller stopped before the new one started")
  t.ok(at(stopped!) - partitioned <= 3000 + 1500, `stepped down within the renew deadline (${at(stopped!) - partitioned} ms)`)
  t.ok(tookOver - partitioned >= 5000, 'the other replica waited out the lease')
  const both = samples.filter((s) => s.leader === 1 && s.follower === 1)
  t.equal(both.length, 0, `never both enlist_leader 1, in ${samples.length} samples`)
  const stale = samples.filter((s) => s.leader === 1 && s.holder === followerName)
  t.equal(stale.length, 0, 'never the old leader acting while the Lease names the new one')
  t.ok(samples.some((s) => s.holder === leaderName) && samples.some((s) => s.holder === followerName), 'the samples span the handover')
  t.equal(await leaderValue(leader), 0, 'the healed replica follows')
  t.equal(await leaderValue(follower), 1)
  t.ok(cmdb.records.has(again.metadata!.uid!))
  const m = await leader.metrics()
  t.match(m, /enlist_leader_renew_failures_total [1-9]/, 'the failed renewals are counted')
})
