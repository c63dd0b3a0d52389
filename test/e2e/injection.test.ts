// Injection through a real kube-apiserver: who gets what, what users see, and that the
// apiserver's own validation accepts every patch.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { missingItems } from '../helpers/corpus.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { createDeployment, deployment, listPods, podManifest, setPolicy, waitForPods } from '../harness/k8s.js'

const cp = await controlPlaneFor(t)
const enlist = await enlistFor(t, cp, { optIn: ['shop'], plain: ['plain'], disabled: ['closed'] })

const injected = (p: V1Pod) => p.metadata?.annotations?.['enlist.io/status'] !== undefined
const podYaml = (name: string, meta: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}) =>
  JSON.stringify(podManifest(name, { ...meta, image: 'nginx:1.27' }))
const admissionLog = (pred: (l: Record<string, unknown>) => boolean) => enlist.waitForLog('admission log line', (l) => l.msg === 'admission' && pred(l))
let markers = 0
/** A pod enlist answers, created after whatever came before and waited for in enlist's log:
 *  an admission line the earlier requests caused would be there by now (one ordered log). */
async function logCaughtUp(): Promise<void> {
  const name = `marker-${++markers}`
  const r = await cp.kubectl(['create', '--dry-run=server', '-n', 'shop', '-f', '-'], { input: podYaml(name) })
  if (r.code !== 0) throw new Error(`the marker pod was refused: ${r.stderr}`)
  await admissionLog((l) => l.pod === name)
}

t.test('labelled namespace: a Deployment\'s pods carry every item; the Deployment and ReplicaSet do not', async (t) => {
  const [pod] = await createDeployment(
    cp,
    'shop',
    deployment('checkout', {
      annotations: { 'enlist.io/depends-on': 'mysql:3306, payments/ledger', 'enlist.io/metadata': '{"interface":"com.acme.Checkout","group":"g1"}' },
      labels: { 'app.kubernetes.io/name': 'checkout-svc' },
    }),
  )
  t.same(missingItems(pod!), [], 'every item of docs/design.md')
  const reg = pod!.spec!.initContainers!.find((c) => c.name === 'enlist-registrar')!
  const env = Object.fromEntries((reg.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]))
  const status = JSON.parse(pod!.metadata!.annotations!['enlist.io/status']!) as { decision: unknown; seal: { key: string; mac: string } }
  t.same(status.decision, {
    namespace: 'shop',
    serviceAccount: 'default',
    service: 'checkout-svc',
    metadata: { interface: 'com.acme.Checkout', group: 'g1' },
    dependsOn: ['shop/mysql:3306', 'payments/ledger'],
  })
  t.match(status.seal, { key: /^k\d{14}-[0-9a-f]{6}$/, mac: /^[A-Za-z0-9_-]{43}$/ }, 'sealed with the key the leader made')
  t.equal(env.ENLIST_CA_BUNDLE, enlist.pki.ca.cert)
  t.equal(env.POD_IPS, 'status.podIPs', 'the apiserver accepts status.podIPs')
  t.same(pod!.spec!.readinessGates, [{ conditionType: 'enlist.io/registered' }])
  t.notOk(pod!.spec!.containers[0]!.volumeMounts?.some((m) => m.name === 'enlist-token'), 'the token is mounted only into the registrar')

  const dep = await cp.client.get<{ spec: { template: V1Pod } }>('/apis/apps/v1/namespaces/shop/deployments/checkout')
  const rs = await cp.client.get<{ items: Array<{ spec: { template: V1Pod } }> }>('/apis/apps/v1/namespaces/shop/replicasets', { labelSelector: 'app=checkout' })
  for (const tpl of [dep.spec.template, rs.items[0]!.spec.template]) {
    t.equal(tpl.spec?.initContainers, undefined)
    t.equal(tpl.metadata?.annotations?.['enlist.io/status'], undefined)
    t.equal(tpl.metadata?.labels?.['enlist.io/managed'], undefined)
  }

  const line = await admissionLog((l) => l.namespace === 'shop' && l.workload === 'Deployment/checkout')
  t.match(line, { decision: 'injected', reason: 'namespace-opt-in', pod: /^checkout-[a-z0-9]+-\*$/ })
  t.type(line.uid, 'string')
  t.type(line.durationMs, 'number')
})

t.test('opt in by annotation or label where the namespace is unlabelled', async (t) => {
  const [byAnnotation] = await createDeployment(cp, 'plain', deployment('annotated', { annotations: { 'enlist.io/inject': 'true' } }))
  t.same(missingItems(byAnnotation!), [])
  const [byLabel] = await createDeployment(cp, 'plain', deployment('labelled', { labels: { 'enlist.io/inject': 'true' } }))
  t.same(missingItems(byLabel!), [])
  const [neither] = await createDeployment(cp, 'plain', deployment('neither'))
  t.notOk(injected(neither!))
  // a pod not for enlist is decided from the raw review, never parsed: no workload in its line
  t.match(await admissionLog((l) => l.namespace === 'plain' && l.reason === 'not-opted-in'), { decision: 'skipped', parsed: false })
})

t.test('opt out with "false" in a labelled namespace: not injected, the user is told', async (t) => {
  const r = await cp.kubectl(['create', '-n', 'shop', '-f', '-'], { input: podYaml('optout', { annotations: { 'enlist.io/inject': 'false' } }) })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /Warning: enlist: not injected: the pod sets enlist\.io\/inject: "false"/)
  const pod = await cp.client.get<V1Pod>('/api/v1/namespaces/shop/pods/optout')
  t.notOk(injected(pod))
  t.match(await admissionLog((l) => l.pod === 'optout'), { decision: 'skipped', reason: 'pod-opt-out' })
  t.match(await enlist.metrics(), /enlist_admission_requests_total\{verdict="skipped",reason="pod-opt-out",code="200"\} 1/)

  // a label "false" is stopped by the apiserver itself (objectSelector): enlist is not called
  const l = await cp.kubectl(['create', '-n', 'plain', '-f', '-'], { input: podYaml('optout-label', { labels: { 'enlist.io/inject': 'false' } }) })
  t.equal(l.code, 0)
  t.notOk(injected(await cp.client.get<V1Pod>('/api/v1/namespaces/plain/pods/optout-label')))
})

t.test('disabled namespaces, enlist-system and kube-system: nothing injected', async (t) => {
  const [closed] = await createDeployment(cp, 'closed', deployment('quiet', { annotations: { 'enlist.io/inject': 'true' } }))
  t.notOk(injected(closed!))
  await logCaughtUp() // so an absent line is absent, not yet to come
  // The webhook configuration keeps enlist out of the call entirely.
  t.notOk(enlist.logs().some((l) => l.msg === 'admission' && l.namespace === 'closed'), 'enlist is not even called')

  for (const ns of ['kube-system', 'enlist-system']) {
    const r = await cp.kubectl(['create', '-n', ns, '-f', '-'], { input: podYaml(`sys-${ns}`, { annotations: { 'enlist.io/inject': 'true' } }) })
    t.equal(r.code, 0, r.stderr)
    t.notOk(injected(await cp.client.get<V1Pod>(`/api/v1/namespaces/${ns}/pods/sys-${ns}`)), ns)
  }
  // Kubernetes 1.20 has no kubernetes.io/metadata.name label to select on, so
  // kube-system pods reach enlist through the annotation entry: it says why it skips them.
  const version = await cp.client.version()
  if (version.minor < 21) {
    t.match(await admissionLog((l) => l.namespace === 'kube-system'), { decision: 'skipped', reason: 'excluded-namespace' })
    t.match(await enlist.metrics(), /enlist_admission_requests_total\{verdict="skipped",reason="excluded-namespace",code="200"\} [1-9]/)
  }
  await logCaughtUp()
  t.notOk(enlist.logs().some((l) => l.msg === 'admission' && l.namespace === 'enlist-system'), 'enlist-system never reaches enlist')
})

t.test('neverInjectSelector from the policy', async (t) => {
  await setPolicy(cp, 'apiVersion: enlist.io/v1alpha1\nkind: Policy\ninjection:\n  neverInjectSelector:\n    - matchLabels: {tier: batch}\n')
  await enlist.waitForLog('policy applied', (l) => l.msg === 'policy in effect' && l.generation === 2)
  t.teardown(() => setPolicy(cp, 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'))
  const [pod] = await createDeployment(cp, 'shop', deployment('nightly', { labels: { tier: 'batch' } }))
  t.notOk(injected(pod!))
  t.match(await admissionLog((l) => l.workload === 'Deployment/nightly'), { decision: 'skipped', reason: 'never-inject-selector' })
  t.match(await enlist.metrics(), /enlist_admission_requests_total\{verdict="skipped",reason="never-inject-selector",code="200"\} 1/)
})

t.test('bad annotations: the create is refused with a message naming the annotation and the form', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'enlist.io/inject': 'yes' }, /annotation enlist\.io\/inject: "yes" is invalid: not a recognised opt-in value; accepted: "true" or "false"/],
    [{ 'enlist.io/depends-on': 'mysql:0' }, /annotation enlist\.io\/depends-on: "mysql:0" is invalid: entry 1 "mysql:0": port 0 is out of range 1-65535; accepted: "\[namespace\/\]service\[:port\]" separated by commas/],
    [{ 'enlist.io/metadata': '{"a":1}' }, /annotation enlist\.io\/metadata: "\{\\"a\\":1\}" is invalid: the value of "a" is a number, not a string; accepted: a JSON object of strings/],
  ]
  for (const [annotations, message] of cases) {
    const r = await cp.kubectl(['create', '-n', 'shop', '-f', '-'], { input: podYaml('bad', { annotations }) })
    t.not(r.code, 0)
    t.match(r.stderr, /admission webhook "namespace\.inject\.enlist\.io" denied the request/)
    t.match(r.stderr, message)
  }
  t.equal((await listPods(cp, 'shop')).filter((p) => p.metadata?.name === 'bad').length, 0)
  t.match(await enlist.metrics(), /enlist_admission_requests_total\{verdict="denied",reason="invalid-annotation",code="200"\} 3/)
})

t.test('--dry-run=server gives the same pod as a real create, and leaves nothing behind', async (t) => {
  const input = podYaml('twin', { annotations: { 'enlist.io/depends-on': 'db' } })
  const dry = await cp.kubectl(['create', '-n', 'shop', '--dry-run=server', '-o', 'json', '-f', '-'], { input })
  t.equal(dry.code, 0, dry.stderr)
  t.equal((await listPods(cp, 'shop')).filter((p) => p.metadata?.name === 'twin').length, 0, 'nothing created')
  const real = await cp.kubectl(['create', '-n', 'shop', '-o', 'json', '-f', '-'], { input })
  t.equal(real.code, 0, real.stderr)
  const strip = (p: V1Pod) => {
    const m = { ...p.metadata } as Record<string, unknown>
    for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'managedFields', 'selfLink']) delete m[k]
    return { metadata: m, spec: p.spec }
  }
  t.same(strip(JSON.parse(dry.stdout) as V1Pod), strip(JSON.parse(real.stdout) as V1Pod))
  t.match(await admissionLog((l) => l.pod === 'twin' && l.dryRun === true), { decision: 'injected' })
})

t.test('pods from Jobs are injected; the registrar wait is bounded', async (t) => {
  await cp.client.create('/apis/batch/v1/namespaces/shop/jobs', {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'migrate' },
    spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'm', image: 'busybox', command: ['true'] }] } } },
  })
  const [pod] = await waitForPods(cp, 'shop', 'job-name=migrate')
  t.same(missingItems(pod!), [])
  const timeout = pod!.spec!.initContainers![0]!.env!.find((e) => e.name === 'ENLIST_TIMEOUT_SECONDS')
  t.equal(timeout?.value, '300')
  t.match(await admissionLog((l) => l.workload === 'Job/migrate'), { decision: 'injected' })
})

t.test('one log line per admission, with the fields operators search by', async (t) => {
  const lines = enlist.logs().filter((l) => l.msg === 'admission')
  t.ok(lines.length > 10)
  for (const l of lines) {
    for (const k of ['uid', 'namespace', 'decision', 'reason', 'durationMs']) t.ok(k in l, `${k} in ${JSON.stringify(l)}`)
  }
})
