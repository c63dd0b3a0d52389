// Issue 24, finding 2: a cache no tenant can grow. 500 look-alike pods (the managed label,
// 4,000 labels, a 200 KB enlist.io/status sealed with a key id nobody holds) in a namespace
// enlist never injected, on the real apiserver, with enlist as a process under the
// Deployment's heap settings: enlist stays ready, its RSS stays within 20 MB of before, a new
// pod in an opted-in namespace is still injected and registered, and the look-alikes' going
// makes no deregistration.
import t from 'tap'
import { readFileSync } from 'node:fs'
import type { V1Pod } from '@kubernetes/client-node'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { getPod, registeredCondition } from '../harness/k8s.js'
import { registeredDeploymentPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'
import { request } from '../helpers/https.js'

const PODS = 500
const LABELS = 4000
const STATUS_BYTES = 200_000
const CONCURRENCY = 8
/** Ordinary pods of the same size first (see the test). */
const WARMUP = 100

// The Deployment's environment (manifests/base/deployment.yaml), read from it so they stay equal.
const deploymentYaml = readFileSync(new URL('../../manifests/base/deployment.yaml', import.meta.url), 'utf8')
const envOf = (name: string): string => {
  const m = new RegExp(`- name: ${name}\\n\\s+value: "?([^"\\n]+)"?`).exec(deploymentYaml)
  if (!m) throw new Error(`${name} not found in manifests/base/deployment.yaml`)
  return m[1]!
}
const env = Object.fromEntries(['NODE_OPTIONS', 'MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_'].map((n) => [n, envOf(n)]))

const cp = await controlPlaneFor(t)
// a sweep every 5 s: its log line says how many pods the cache holds (the positive signal the
// waits below need)
const enlist = await enlistFor(t, cp, {
  env,
  optIn: ['shop'],
  plain: ['evil', 'busy'],
  policy: (p) => {
    p.registry = { ...((p.registry as Record<string, unknown> | undefined) ?? {}), reconcileIntervalSeconds: 5 }
  },
})
/** Waits until a sweep finishes with the pod cache holding `pred` of its pods. */
const cacheHolds = (what: string, pred: (pods: number) => boolean, from: number): Promise<unknown> =>
  waitFor(what, async () => enlist.logs().slice(from).find((l) => l.msg === 'registry sweep finished' && pred(Number(l.pods))), 180_000, 250)

/** enlist's own RSS in MB: the supervised child is a watchdog shell, enlist is its child. */
function rssMB(): number {
  const shell = enlist.process.child.pid!
  const pid = readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8').trim().split(/\s+/)[0]!
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!
  return Number(kb) / 1024
}

function madeUpStatus(i: number): string {
  const body = JSON.stringify({ version: 'v1', decision: { namespace: 'evil', serviceAccount: 'default', service: 'orders', metadata: {}, dependsOn: [] }, pad: 'x'.repeat(STATUS_BYTES) }).slice(0, -1)
  return `${body},"seal":{"key":"kmadeup${i % 10}-0badc0de","mac":"${'A'.repeat(43)}"}}`
}

function lookalike(i: number): V1Pod {
  const labels: Record<string, string> = { 'enlist.io/managed': 'true' }
  for (let j = 0; j < LABELS; j++) labels[`l${j}.evil.example/k`] = `v${i}-${j}`
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `lookalike-${i}`, labels, annotations: { 'enlist.io/status': madeUpStatus(i) } },
    spec: { containers: [{ name: 'app', image: 'lookalike:1' }] },
  }
}

/** Creates `n` pods in `namespace`, CONCURRENCY at a time. */
async function createAll(namespace: string, n: number, make: (i: number) => V1Pod): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        const i = next++
        await cp.client.create(`/api/v1/namespaces/${namespace}/pods`, make(i))
      }
    }),
  )
}

const ready = async (): Promise<number> => (await request(`${enlist.url}/readyz`, { ca: enlist.pki.ca.cert })).status

t.test('500 look-alike pods leave enlist ready, its RSS within 20 MB, and new pods injected and registered', async (t) => {
  await waitFor('enlist ready', async () => (await ready()) === 200, 60_000)
  // a first pod through every path (admission, registration) before the baseline: what a
  // first request costs once is not the look-alikes'
  const first = await registeredDeploymentPod(cp, 'shop', 'before')
  t.equal(registeredCondition(await getPod(cp, first))?.status, 'True', 'a pod registered before')
  // and a burst of ordinary pods of the same size (not managed: admission only, never cached),
  // so the runtime's heap has grown to what bursts of pods cost it whatever they are: what is
  // measured below is what the look-alikes leave behind, not V8 sizing its young generation
  await createAll('busy', WARMUP, (i) => ({ ...lookalike(i), metadata: { ...lookalike(i).metadata, name: `ordinary-${i}`, labels: { app: 'ordinary' } } }))
  await cacheHolds('a sweep after the ordinary pods', (n) => n >= 1, enlist.logs().length)
  const before = Math.min(rssMB(), rssMB())
  t.comment(`enlist RSS ${before.toFixed(1)} MB after ${WARMUP} ordinary pods of the same size`)

  const started = Date.now()
  await createAll('evil', PODS, lookalike)
  const createdS = (Date.now() - started) / 1000
  const size = JSON.stringify(lookalike(0)).length
  t.comment(`created ${PODS} look-alikes of ${Math.round(size / 1024)} KB of JSON each in ${createdS.toFixed(1)} s (${CONCURRENCY} at a time)`)

  // every look-alike in the cache (a sweep counts them), then RSS sampled once a second until it
  // is within the bound or 60 s have passed: V8 gives back the pages of a burst's garbage lazily
  await cacheHolds('every look-alike in the cache', (n) => n >= PODS + 1, 0)
  const samples: number[] = []
  const until = Date.now() + 60_000
  do {
    samples.push(rssMB())
    if (samples.at(-1)! - before <= 20) break
    await new Promise((r) => setTimeout(r, 1000))
  } while (Date.now() < until)
  const after = Math.min(...samples)
  t.comment(`enlist RSS: ${before.toFixed(1)} MB before, ${samples.map((s) => s.toFixed(1)).join(', ')} MB after ${PODS} look-alikes`)
  t.ok(after - before <= 20, `RSS within 20 MB of before (${before.toFixed(1)} -> ${after.toFixed(1)} MB; the unfixed cache grew about 0.22 MB a pod, some 110 MB)`)
  t.equal(await ready(), 200, 'ready')
  t.ok(enlist.process.child.exitCode === null, 'still running')

  const pod = await registeredDeploymentPod(cp, 'shop', 'after')
  t.ok(pod.spec?.initContainers?.some((c) => c.name === 'enlist-registrar'), 'a new pod is injected')
  t.equal(registeredCondition(await getPod(cp, pod))?.status, 'True', 'and registered')

  // their going: no deregistration, no condition (the pods have no node: deleted at once)
  const logsBefore = enlist.logs().length
  // one by one, CONCURRENCY at a time: a collection delete of 150 MB of pods outlasts the
  // apiserver's own request timeout
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < PODS) await cp.client.delete(`/api/v1/namespaces/evil/pods/lookalike-${next++}`, { gracePeriodSeconds: 0 })
    }),
  )
  await waitFor('the look-alikes gone', async () => ((await cp.client.get<{ items: unknown[] }>('/api/v1/namespaces/evil/pods', { limit: 1 })).items.length === 0 ? true : undefined), 120_000, 500)
  // the cache has seen them go (a sweep counts the pods left) before nothing is asserted of them
  await cacheHolds('a sweep with the look-alikes gone from the cache', (n) => n <= 2, logsBefore)
  const deregistered = enlist.logs().slice(logsBefore).filter((l) => /deregister/i.test(String(l.msg)) && /evil\//.test(String(l.pod ?? '')))
  t.same(deregistered, [], 'no deregistration of a look-alike')
  t.equal(await ready(), 200, 'still ready')
})
