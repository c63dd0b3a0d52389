// `enlist sweep --adopt-unmarked` and `enlist claim` in-process, on the fake apiserver (pods,
// the decision keys' Secret) and an in-memory backend: only unmarked entries are touched; a
// live registered pod's entry is written again with the record the controller would write and
// this cluster's mark; a gone pod's (absent, another uid, terminating) is removed; a live pod
// enlist did not register is left alone; a dry run changes nothing. Claims: who holds the
// name, and the take-over printing the previous holder.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { runClaim } from '../../src/cli/claim.js'
import { adoptUnmarked } from '../../src/cli/sweep.js'
import { INSTALL_NAMESPACE, REGISTERED_CONDITION } from '../../src/names.js'
import type { CompiledPolicy } from '../../src/policy/policy.js'
import type { Backend } from '../../src/registry/backend.js'
import { type ClaimResult, type ClusterClaim, type ClusterIdentity, judgeClaim, type ListedEntry } from '../../src/registry/ownership.js'
import { buildRecord, type RegistryRecord } from '../../src/registry/record.js'
import { enlistedPod, fakeCluster } from '../helpers/fake-cluster.js'

class AdoptingBackend implements Backend {
  readonly type = 'etcd'
  readonly adopted: Array<{ entry: ListedEntry; record: RegistryRecord | undefined }> = []
  failOn = new Set<string>()
  constructor(
    readonly name: string,
    public entries: ListedEntry[],
  ) {}
  async register(): Promise<void> {}
  async deregister(): Promise<void> {}
  async list(): Promise<ListedEntry[]> {
    return this.entries
  }
  async adopt(entry: ListedEntry, record: RegistryRecord | undefined): Promise<void> {
    if (this.failOn.has(entry.uid)) throw new Error('backend down')
    this.adopted.push({ entry, record })
  }
}

const policy = { spec: { cluster: { name: 'prod-a' }, registry: { backends: [] } } } as unknown as CompiledPolicy

t.test('adoption: live pods re-marked with their record, gone ones removed, others never touched', async (t) => {
  const c = await fakeCluster()
  t.teardown(() => c.stop())
  const at = '2026-01-01T00:00:00Z'
  const live = enlistedPod(c, { name: 'live' })
  c.kube.edit<V1Pod>(live.path, (p) => {
    p.status!.conditions = [...(p.status!.conditions ?? []), { type: REGISTERED_CONDITION, status: 'True', lastTransitionTime: at as unknown as Date }]
  })
  const unregistered = enlistedPod(c, { name: 'unregistered' })
  const terminating = enlistedPod(c, { name: 'terminating' })
  c.kube.edit<V1Pod>(terminating.path, (p) => {
    p.metadata!.deletionTimestamp = new Date() as unknown as Date
  })
  enlistedPod(c, { name: 'replaced' }) // a pod of that name, another uid
  const e = (pod: string, uid: string, cluster?: string): ListedEntry => ({ namespace: 'shop', pod, uid, cluster })
  const entries = [
    e('live', live.uid),
    e('unregistered', unregistered.uid),
    e('terminating', terminating.uid),
    e('replaced', 'old-uid'),
    e('absent', 'uid-x'),
    e('theirs', 'uid-b', 'prod-b'),
    e('ours', 'uid-a', 'prod-a'),
  ]
  const b = new AdoptingBackend('etcd', entries)
  const opened = { client: c.kube.client, policy, backend: b }

  const lines: string[] = []
  const dry = await adoptUnmarked(opened, false, INSTALL_NAMESPACE, (l) => lines.push(l))
  t.equal(b.adopted.length, 0, 'a dry run adopts nothing')
  t.equal(dry.failures, 0)
  t.same(dry.plans.map((p) => `${p.entry.pod}:${p.action}`), ['live:remark', 'unregistered:skip', 'terminating:remove', 'replaced:remove', 'absent:remove'], 'only the unmarked entries are planned')
  t.match(lines.join('\n'), /would adopt shop\/live \(uid .*\): its pod lives in this cluster/)
  t.match(lines.join('\n'), /would remove shop\/absent \(uid uid-x\): its pod is gone \(no such pod in this cluster\)/)
  t.match(lines.join('\n'), /would remove shop\/replaced \(uid old-uid\): its pod is gone \(pod shop\/replaced here is another pod/)
  t.match(lines.join('\n'), /would remove shop\/terminating .*the pod is terminating/)
  t.match(lines.join('\n'), /left alone shop\/unregistered .*not registered by enlist/)
  t.match(lines.at(-1), /backend etcd: 5 unmarked entries: 1 of live pods of this cluster, 3 of gone pods, 1 left alone; 1 already this cluster's, 1 of other clusters \(never touched\)\. Dry run: nothing changed; add --apply to adopt/)

  b.failOn.add('uid-x')
  lines.length = 0
  const applied = await adoptUnmarked(opened, true, INSTALL_NAMESPACE, (l) => lines.push(l))
  t.equal(applied.failures, 1, 'a failed adoption is counted (exit 1)')
  t.match(lines.join('\n'), /failed shop\/absent \(uid uid-x\): backend down; run again to retry/)
  t.same(b.adopted.map((a) => `${a.entry.pod}:${a.record ? 'record' : 'none'}`), ['live:record', 'terminating:none', 'replaced:none'])
  const expected = { ...buildRecord(live.pod, live.decision, at), cluster: 'prod-a' }
  t.same(b.adopted[0]!.record, expected, "the record the controller would write, with this cluster's mark")
  t.notOk(b.adopted.some((a) => a.entry.cluster !== undefined), 'never an entry with a mark')
})

t.test('adoption: a live pod whose record cannot be made (no keys) is left alone and counted', async (t) => {
  const c = await fakeCluster()
  t.teardown(() => c.stop())
  const live = enlistedPod(c, { name: 'live' })
  const b = new AdoptingBackend('etcd', [{ namespace: 'shop', pod: 'live', uid: live.uid, cluster: undefined }])
  const lines: string[] = []
  const r = await adoptUnmarked({ client: c.kube.client, policy, backend: b }, true, 'elsewhere', (l) => lines.push(l))
  t.equal(r.failures, 1)
  t.equal(b.adopted.length, 0)
  t.match(lines[0], /left alone shop\/live .*its record cannot be made: Secret elsewhere\/enlist-decision-keys not found/)
})

class ClaimingBackend implements Backend {
  readonly type = 'zookeeper'
  constructor(
    readonly name: string,
    public stored: ClusterClaim | undefined,
  ) {}
  async register(): Promise<void> {}
  async deregister(): Promise<void> {}
  async list(): Promise<ListedEntry[]> {
    return []
  }
  async claim(self: ClusterIdentity, takeOver: boolean): Promise<ClaimResult> {
    const { write, result } = judgeClaim(this.stored, self, takeOver)
    if (write) this.stored = write
    return result
  }
}

t.test('claim: held by us, free, held by another, taken over', async (t) => {
  const self = { name: 'prod-a', uid: 'uid-dr' }
  const out: string[] = []
  const mine = new ClaimingBackend('zk', { name: 'prod-a', uid: 'uid-dr', claimedAt: '2026-01-01T00:00:00.000Z' })
  t.equal(await runClaim({ backend: mine }, self, false, (l) => out.push(l)), 0)
  t.match(out.pop(), /cluster name "prod-a" in backend zk: held by this cluster \(kube-system UID uid-dr\) since 2026-01-01/)
  t.equal(await runClaim({ backend: mine }, self, true, (l) => out.push(l)), 0)
  t.match(out.pop(), /nothing to take over/)

  const free = new ClaimingBackend('zk', undefined)
  t.equal(await runClaim({ backend: free }, self, false, (l) => out.push(l)), 0)
  t.match(out.pop(), /no cluster held it; claimed it now for this cluster/)

  const primary = { name: 'prod-a', uid: 'uid-primary', claimedAt: '2025-06-01T00:00:00.000Z' }
  const held = new ClaimingBackend('zk', primary)
  t.equal(await runClaim({ backend: held }, self, false, (l) => out.push(l)), 1, 'another holds it: exit 1')
  t.match(out.pop(), /held by another cluster \(kube-system UID uid-primary\) since 2025-06-01.*this cluster's UID is uid-dr.*enlist claim --take-over --backend zk/)
  t.same(held.stored, primary, 'without --take-over nothing changes')

  t.equal(await runClaim({ backend: held }, self, true, (l) => out.push(l)), 0)
  t.match(out.join('\n'), /taken over from the cluster with kube-system UID uid-primary \(held since 2025-06-01T00:00:00.000Z\); now held by this cluster \(kube-system UID uid-dr\)/)
  t.equal(held.stored?.uid, 'uid-dr')
})
