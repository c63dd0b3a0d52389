// The policy ConfigMap, live: a change reaches the next pod within 2 s; an invalid one is
// ignored (logged, counted) and pods keep getting the last good policy.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { podManifest, setPolicy } from '../harness/k8s.js'
import { waitFor } from '../harness/processes.js'
import { request } from '../helpers/https.js'

const cp = await controlPlaneFor(t)
const enlist = await enlistFor(t, cp, { optIn: ['shop'] })

const HEADER = 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'
let n = 0
async function dryRunPod(): Promise<V1Pod> {
  const pod = podManifest(`p${n++}`)
  const r = await cp.kubectl(['create', '-n', 'shop', '--dry-run=server', '-o', 'json', '-f', '-'], { input: JSON.stringify(pod) })
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as V1Pod
}
const drainOf = (p: V1Pod) => p.spec!.containers[0]!.lifecycle?.preStop?.exec?.command?.[2]

t.test('the installed policy is the one in effect', async (t) => {
  t.equal(drainOf(await dryRunPod()), 'sleep 5')
  t.match(await enlist.metrics(), /enlist_policy_info\{hash="[0-9a-f]{16}",source="enlist-system\/enlist-policy"\} 1/)
})

t.test('a changed ConfigMap reaches the next pod within 2 s', async (t) => {
  for (const drain of [17, 23]) {
    const started = Date.now()
    await setPolicy(cp, `${HEADER}preStop: {drainSeconds: ${drain}}\n`)
    let got: string | undefined
    while (Date.now() - started < 10_000) {
      got = drainOf(await dryRunPod())
      if (got === `sleep ${drain}`) break
    }
    const elapsed = Date.now() - started
    t.equal(got, `sleep ${drain}`)
    t.ok(elapsed < 2000, `took effect after ${elapsed} ms`)
  }
})

t.test('an invalid policy is ignored: logged, counted, the last good one keeps serving', async (t) => {
  const before = await enlist.metrics()
  const rejectedBefore = Number(/enlist_policy_rejected_total (\d+)/.exec(before)?.[1] ?? 0)
  await setPolicy(cp, `${HEADER}preStop: {drainSeconds: 0, mode: sometimes}\n`)
  const line = await enlist.waitForLog('rejection', (l) => l.level === 'error' && /invalid policy rejected/.test(l.msg))
  t.equal(line.source, 'enlist-system/enlist-policy')
  t.same((line.errors as Array<{ path: string }>).map((e) => e.path).sort(), ['/preStop/drainSeconds', '/preStop/mode'])
  t.equal(drainOf(await dryRunPod()), 'sleep 23', 'pods get the last good policy')
  t.match(await enlist.metrics(), new RegExp(`enlist_policy_rejected_total ${rejectedBefore + 1}`))
  t.equal((await cp.kubectl(['get', '--raw', '/api/v1/namespaces/enlist-system/configmaps/enlist-policy'])).code, 0)

  // YAML that does not parse, and a ConfigMap without the key
  await setPolicy(cp, 'kind: [\n')
  await enlist.waitForLog('yaml rejection', (l) => l.level === 'error' && JSON.stringify(l.errors ?? '').includes('YAML'))
  await cp.client.patch('/api/v1/namespaces/enlist-system/configmaps/enlist-policy', { data: { 'policy.yaml': null, 'policy.yml': HEADER } }, 'application/merge-patch+json')
  await enlist.waitForLog('missing key', (l) => l.level === 'error' && l.err === 'ConfigMap enlist-system/enlist-policy has no key policy.yaml')
  t.equal(drainOf(await dryRunPod()), 'sleep 23')

  // and a valid one is taken again
  await setPolicy(cp, `${HEADER}preStop: {drainSeconds: 9}\n`)
  await enlist.waitForLog('recovered', (l) => l.msg === 'policy in effect' && l.source === 'enlist-system/enlist-policy' && (l.generation as number) >= 4)
  t.equal(drainOf(await dryRunPod()), 'sleep 9')
})

t.test('a restarted server with an invalid policy in the ConfigMap is not ready', async (t) => {
  await setPolicy(cp, `${HEADER}injection: {default: perhaps}\n`)
  await enlist.waitForLog('rejected', (l) => l.level === 'error' && JSON.stringify(l.errors ?? '').includes('/injection/default'))
  await enlist.stop()
  await enlist.restart({ waitReady: false })
  // tenants (and the apiserver) are told only "not ready"; the metrics listener says why
  await waitFor('readyz not ready', async () => {
    const r = await request(`${enlist.url}/readyz`, { ca: enlist.pki.ca.cert }).catch(() => undefined)
    return r && r.status === 503 && r.body === 'not ready' ? r : undefined
  })
  const notReady = await waitFor('the metrics listener\'s readyz to name the policy', async () => {
    const r = await fetch(`${enlist.metricsUrl}/readyz`).catch(() => undefined)
    const body = r ? await r.text() : ''
    return r && r.status === 503 && body.includes('/injection/default') ? JSON.parse(body) as unknown : undefined
  })
  t.match(notReady, { ready: false, failing: [{ check: 'policy', reason: /no valid policy loaded: invalid policy enlist-system\/enlist-policy:\n {2}\/injection\/default: must be one of "enabled", "disabled"; got "perhaps"/ }] })
  const refused = await cp.kubectl(['create', '-n', 'shop', '--dry-run=server', '-f', '-'], { input: JSON.stringify(podManifest('x', { containers: [{ name: 'a', image: 'b' }] })) })
  t.not(refused.code, 0, 'labelled namespaces refuse pods rather than skip injection')
  // refused by the webhook's failure (enlist answers 503 without a policy), not by anything else
  // kubectl could exit non-zero for
  t.match(refused.stderr, /failed calling webhook "namespace\.inject\.enlist\.io"/, 'the refusal is the webhook call failing')
  await enlist.stop()
  await setPolicy(cp, HEADER)
  await enlist.restart()
  t.equal(drainOf(await dryRunPod()), 'sleep 5')
})
