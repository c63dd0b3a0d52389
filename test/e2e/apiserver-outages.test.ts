// enlist behind a proxy that makes the real apiserver fail outright, one persistent fault
// at a time: 500s, stalls (accepted, never answered), answers that drip a byte at a time,
// connections reset. Then flaps: short faults in a row, with the CMDB down for part of
// them, while pods are deleted. Every call has a deadline, so nothing hangs; the request
// rate stays within client-go's; no deregistration is lost; recovery takes seconds. This
// replica runs with --leader-elect false: its controller runs without a Lease.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { cmdbFor, waitForNoEntry } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { type Fault, startFaultProxy } from '../harness/fault-proxy.js'
import { cmdbPolicy, deletePod, faultPhase, registeredPod } from '../harness/faults.js'
import { boundToken } from '../harness/kubelet.js'
import { owned } from '../harness/processes.js'
import { request } from '../helpers/https.js'

const FAULT_MS = 10_000
const MAX_RATE = 3

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const proxy = await owned(t, startFaultProxy(cp), (p) => p.close())
const enlist = await enlistFor(t, cp, { apiserver: proxy.url, args: ['--api-request-timeout=3s', '--leader-elect', 'false'], policy: cmdbPolicy(cmdb), optIn: ['shop'] })

t.test('--leader-elect false: the controller runs, no Lease is touched', async (t) => {
  await enlist.waitForLog('the controller', (l) => l.msg === 'controller started')
  t.notOk(enlist.logs().some((l) => l.msg.startsWith('became leader')))
  t.equal(proxy.requests.filter((r) => r.resource === 'leases').length, 0)
  t.match(await enlist.metrics(), /enlist_leader 0|# TYPE enlist_leader gauge\n(?!enlist_leader 1)/)
})

for (const fault of ['error', 'stall', 'drip', 'reset'] as const) {
  t.test(`${fault}: every call bounded, paced like client-go, nothing lost, recovered`, async (t) => {
    await enlist.stop()
    await enlist.restart()
    const pod = await registeredPod(cp, cmdb, enlist, 'shop', `p-${fault}`)
    // a registration meanwhile, with a token enlist has not reviewed yet: its TokenReview
    // cannot hang, the caller gets a 503 to retry
    const token = await boundToken(cp, pod)
    const during = async (): Promise<void> => {
      const started = Date.now()
      const res = await request(`${enlist.url}/v1/registrations`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, ca: enlist.pki.ca.cert, timeoutMs: 30_000 })
      const ms = Date.now() - started
      t.comment(`${fault}: a registration's TokenReview answered ${res.status} ${res.json<{ code: string }>().code} after ${ms} ms`)
      t.equal(res.status, 503, 'the apiserver could not be asked: 503, never a hang')
      t.ok(ms < 15_000, `within the request deadline (3 s) and its retries: ${ms} ms`)
    }
    const r = await faultPhase({ cp, cmdb, proxy, pod, fault, faultMs: FAULT_MS, log: (l) => t.comment(l), during })
    t.ok(r.maxRate <= MAX_RATE, `busiest resource ${r.maxRate.toFixed(2)} requests/s (at most ${MAX_RATE})`)
    t.ok(r.recoveredAfterHealMs < 60_000, `deregistered ${(r.recoveredAfterHealMs / 1000).toFixed(1)} s after the fault ended`)
    if (fault === 'stall' || fault === 'drip') {
      const cut = enlist.logs().filter((l) => /no complete answer within 3000 ms/.test(String(l.err)))
      t.ok(cut.length > 0, `calls were cut at the deadline (${cut.length} log lines say so)`)
    }
  })
}

t.test('flaps, and the CMDB down among them: no deregistration is lost', async (t) => {
  await enlist.stop()
  await enlist.restart()
  const pods: V1Pod[] = []
  for (let i = 0; i < 4; i++) pods.push(await registeredPod(cp, cmdb, enlist, 'shop', `flap-${i}`))
  const sequence: Array<{ fault: Fault | undefined; cmdbDown?: boolean; deletes?: V1Pod }> = [
    { fault: 'reset', deletes: pods[0] },
    { fault: undefined },
    { fault: 'error', cmdbDown: true, deletes: pods[1] },
    { fault: undefined, cmdbDown: true },
    { fault: 'stall', deletes: pods[2] },
    { fault: 'watch-gone', cmdbDown: true },
    { fault: undefined, cmdbDown: true, deletes: pods[3] },
    { fault: 'reset' },
  ]
  const began = Date.now()
  for (const step of sequence) {
    proxy.setFault(step.fault)
    cmdb.down = step.cmdbDown ?? false
    if (step.deletes) await deletePod(cp, step.deletes)
    await new Promise((r) => setTimeout(r, 1500))
  }
  proxy.setFault(undefined)
  cmdb.down = false
  const ended = Date.now()
  for (const p of pods) {
    await waitForNoEntry(cmdb, p.metadata!.uid!, `${p.metadata!.name} deregistered`, 120_000, 50)
  }
  const recovered = Date.now()
  t.comment(`flaps for ${((ended - began) / 1000).toFixed(1)} s (resets, 500s, a stall, 410s; the CMDB down for 6 s of it): all 4 pods deleted meanwhile deregistered ${((recovered - ended) / 1000).toFixed(1)} s after the last flap`)
  const rate = Math.max(...proxy.perResource(began, ended).values()) / ((ended - began) / 1000)
  t.ok(rate <= MAX_RATE, `busiest resource ${rate.toFixed(2)} requests/s through the flaps`)
  t.ok(recovered - ended < 90_000)
  t.match(await enlist.metrics(), /enlist_pending_deregistrations 0/, 'nothing left pending')
})
