// enlist behind a proxy that makes the real apiserver misbehave, one persistent fault at a
// time: watches that end at once, 410 on every watch, 410 on every continue token, 429 with
// Retry-After. Under each, enlist's request rate stays within client-go's (a few requests
// per second per resource at most, where the unfixed reflectors made hundreds to thousands),
// a pod deleted during the fault is deregistered, and once the fault ends enlist recovers
// within seconds. Each phase starts enlist afresh, so that one phase's backoff does not
// carry into the next; the figures are printed.
import t from 'tap'
import { cmdbFor } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { startFaultProxy } from '../harness/fault-proxy.js'
import { cmdbPolicy, faultPhase, registeredPod } from '../harness/faults.js'
import { owned } from '../harness/processes.js'

const FAULT_MS = 10_000
// client-go's reflector settles at one list and one watch per 30-60 s; this bound still
// tells a paced client from a storm by two orders of magnitude
const MAX_RATE = 3

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const proxy = await owned(t, startFaultProxy(cp), (p) => p.close())
const enlist = await enlistFor(t, cp, { apiserver: proxy.url, args: ['--api-request-timeout=5s'], policy: cmdbPolicy(cmdb), optIn: ['shop'] })

for (const fault of ['watch-end', 'watch-gone', 'continue-gone', 'throttle'] as const) {
  t.test(`${fault}: paced like client-go, nothing lost, recovered`, async (t) => {
    await enlist.stop()
    await enlist.restart()
    const pod = await registeredPod(cp, cmdb, enlist, 'shop', `p-${fault}`)
    const r = await faultPhase({ cp, cmdb, proxy, pod, fault, faultMs: FAULT_MS, log: (l) => t.comment(l) })
    t.ok(r.maxRate <= MAX_RATE, `busiest resource ${r.maxRate.toFixed(2)} requests/s (at most ${MAX_RATE})`)
    t.ok(r.total < 6 * MAX_RATE * (r.faultMs / 1000), `${r.total} requests in all`)
    t.ok(r.recoveredAfterHealMs < 60_000, `deregistered ${(r.recoveredAfterHealMs / 1000).toFixed(1)} s after the fault ended`)
    if (fault === 'continue-gone') {
      const restarts = enlist.logs().filter((l) => l.msg === 'list continue token expired; listing again from the first page')
      t.ok(restarts.length > 0, 'an expired continue token started the list over')
      const unpaged = proxy.requests.filter((q) => q.verb === 'LIST' && q.resource === 'pods' && !q.query.includes('limit='))
      t.equal(unpaged.length, 0, 'never an unpaged list of pods (at bank size a gigabyte the heap cannot hold)')
    }
    if (fault === 'throttle') {
      const logs = enlist.logs().filter((l) => l.msg === 'list/watch failed; retrying after a backoff' && l.reason === 'throttled')
      t.ok(logs.length > 0 && logs.every((l) => Number(l.retryInMs) >= proxy.retryAfterSeconds * 1000), 'every wait honoured Retry-After')
    }
  })
}

t.test('dependency readiness reads EndpointSlices from the real apiserver', async (t) => {
  const line = enlist.logs().find((l) => l.msg === 'dependency readiness reads endpoints from this API')
  t.match(line?.source, /^discovery\.k8s\.io\/v1(beta1)?$/, `${String(line?.source)} (v1beta1 on 1.20, v1 from 1.21)`)
  t.ok(proxy.requests.some((r) => r.resource === 'endpointslices' && r.verb === 'WATCH'), 'and watches them')
  t.notOk(proxy.requests.some((r) => r.resource === 'endpoints'), 'never the deprecated Endpoints API')
})

t.test('the metrics say what happened', async (t) => {
  const m = await enlist.metrics()
  t.match(m, /enlist_apiserver_requests_total\{verb="WATCH",resource="pods",code="200"\} \d+/)
  t.match(m, /enlist_reflector_failures_total\{reflector="managed pods",reason="throttled"\} \d+/)
  t.match(m, /enlist_reflector_backoff_seconds\{reflector="managed pods"\} 0/, 'healthy again: no backoff')
})
