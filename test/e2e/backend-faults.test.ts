// A misbehaving CMDB: down, 500s, stalls, slow drips, resets. Deregistrations are retried
// until it answers again and then go within seconds; every call is cut at its deadline; the
// sweep goes on past an entry it cannot remove, reads a paged list, and leaves alone entries
// whose uid is not a pod UID; what tenants see of a failure names no URL and quotes nothing
// the CMDB said.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { V1Pod } from '@kubernetes/client-node'
import { type CmdbFault, cmdbFor, waitForNoEntry } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { cmdbPolicy, deletePod, registeredPod } from '../harness/faults.js'
import { createDeployment, deployment } from '../harness/k8s.js'
import { runRegistrar, startPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const enlist = await enlistFor(t, cp, {
  args: ['--backend-budget=1s'],
  policy: (p) => {
    cmdbPolicy(cmdb)(p)
    ;(p.registry as { reconcileIntervalSeconds: number }).reconcileIntervalSeconds = 5
  },
  optIn: ['shop'],
})

const metric = async (series: string): Promise<number> => (await enlist.metric(series)) ?? 0

t.test('an outage: deregistrations wait it out, then go within seconds, none lost', async (t) => {
  const pods: V1Pod[] = []
  for (let i = 0; i < 3; i++) pods.push(await registeredPod(cp, cmdb, enlist, 'shop', `out-${i}`))
  cmdb.down = true
  for (const p of pods) await deletePod(cp, p)
  await waitFor('the deregistrations failing and queued again', async () => (await metric('enlist_controller_retries_total')) >= 3, 30_000)
  await new Promise((r) => setTimeout(r, 8000)) // an outage long enough for the retries to back off
  const deletesDuring = cmdb.requests.filter((r) => r.method === 'DELETE').length
  const up = Date.now()
  cmdb.down = false
  for (const p of pods) await waitForNoEntry(cmdb, p.metadata!.uid!, `${p.metadata!.name} deregistered`, 60_000, 50)
  const recovered = Date.now() - up
  t.comment(`CMDB outage of ~10 s with 3 pods deleted: ${deletesDuring} DELETEs during it; all deregistered ${recovered} ms after it ended`)
  t.ok(recovered < 15_000, `within seconds (${recovered} ms)`)
  t.ok(deletesDuring < 3 * 12, 'retries backed off')
})

for (const fault of ['error', 'stall', 'drip', 'reset'] satisfies CmdbFault[]) {
  t.test(`${fault}: each call cut at its deadline, the deregistration goes once it answers`, async (t) => {
    const pod = await registeredPod(cp, cmdb, enlist, 'shop', `f-${fault}`)
    cmdb.fault = fault
    const since = Date.now()
    await deletePod(cp, pod)
    await new Promise((r) => setTimeout(r, 6000))
    const tries = cmdb.requests.filter((r) => r.method === 'DELETE' && r.path.endsWith(pod.metadata!.uid!) && r.at >= since).length
    const healed = Date.now()
    cmdb.fault = undefined
    await waitForNoEntry(cmdb, pod.metadata!.uid!, `${pod.metadata!.name} deregistered`, 60_000, 50)
    t.comment(`CMDB ${fault} for 6 s: ${tries} DELETE attempts meanwhile; deregistered ${Date.now() - healed} ms after it ended`)
    t.ok(tries >= 1 && tries <= 8, `${tries} attempts in 6 s`)
    t.ok(Date.now() - healed < 20_000)
    if (fault === 'stall' || fault === 'drip') {
      t.ok(enlist.logs().some((l) => l.msg === 'reconcile failed; will retry' && /no complete answer within 2s/.test(String(l.err))), 'cut at timeoutSeconds (2 s), answer included')
    }
  })
}

t.test('what a tenant sees of a failure: no URL, nothing the CMDB said', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('tenant'))
  const pod = await startPod(cp, created!)
  cmdb.fault = 'error' // its body names an internal host
  const run = await runRegistrar(cp, pod, { env: { ENLIST_TIMEOUT_SECONDS: '4' } })
  cmdb.fault = undefined
  t.equal(run.code, 1, 'gave up at its timeout')
  const ref = /the registry could not be written \(backend cmdb\) \(enlist log ref ([0-9a-f]+)\)/.exec(run.stdout)?.[1]
  t.ok(ref, 'the registrar is told which backend failed, and a reference')
  const events = await cp.kubectl(['get', 'events', '-n', 'shop', '--field-selector', `involvedObject.name=${pod.metadata!.name}`, '-o', 'jsonpath={.items[*].message}'])
  t.match(events.stdout, /the registry could not be written \(backend cmdb\)/)
  for (const text of [run.stdout, events.stdout]) {
    t.notMatch(text, /127\.0\.0\.1|cmdb\.internal|internal error|\/api\/v1\/instances/, 'neither the URL nor the answer')
  }
  t.ok(enlist.logs().some((l) => l.ref === ref && /backend cmdb: register failed: HTTP 500/.test(String(l.err))), "the log says what failed, under the reference, still without the URL")
  t.ok(enlist.logs().some((l) => l.msg === 'backend answered with an error' && String(l.body).includes('cmdb.internal') && String(l.url).startsWith(cmdb.url)), "and the backend's log line has the URL and the answer")
})

t.test('the sweep: a paged list, past an entry it cannot remove, and never a path from a bad uid', async (t) => {
  // this cluster's strays (its mark): the sweep removes only those
  const strays = Array.from({ length: 7 }, (_, i) => ({ uid: randomUUID(), namespace: 'shop', pod: `gone-${i}`, cluster: 'e2e' }))
  for (const s of strays) cmdb.records.set(s.uid, s)
  const stuck = strays[3]!
  cmdb.failDelete.add(stuck.uid)
  for (const bad of ['..', 'a/b', 'not-a-uid']) cmdb.records.set(bad, { uid: bad, namespace: 'shop', pod: 'evil' })
  cmdb.pageSize = 3
  cmdb.paging = 'link'
  const failuresBefore = await metric('enlist_registry_sweep_failures_total{backend="cmdb",op="deregister"}')
  await waitFor('every stray but the stuck one removed', async () => strays.every((s) => s === stuck || !cmdb.records.has(s.uid)), 30_000)
  await waitFor('the stuck one counted', async () => (await metric('enlist_registry_sweep_failures_total{backend="cmdb",op="deregister"}')) > failuresBefore, 30_000)
  t.ok(cmdb.records.has(stuck.uid), 'the entry that cannot be deleted is still there')
  t.ok(cmdb.requests.some((r) => r.method === 'GET' && r.query === 'page=2'), 'the list was read page by page')
  cmdb.failDelete.clear()
  await waitFor('the next sweep removes it', async () => !cmdb.records.has(stuck.uid), 30_000)
  for (const bad of ['..', 'a/b', 'not-a-uid']) t.ok(cmdb.records.has(bad), `${bad} left alone`)
  t.notOk(cmdb.requests.some((r) => r.method === 'DELETE' && !/\/[0-9a-f-]{36}$/.test(r.path)), 'no DELETE but to a pod UID')
  cmdb.pageSize = undefined
  for (const bad of ['..', 'a/b', 'not-a-uid']) cmdb.records.delete(bad)
})
