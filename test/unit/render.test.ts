// `enlist render`: every object of the corpus (test/fixtures), and the kinds and edge cases of
// real manifests (Lists, CronJobs, objects with no template, denials).
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { renderDocuments, type RenderOptions } from '../../src/render/render.js'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { corpus, expectedSkip, lostValues, missingItems, templateOf, VENDORED } from '../helpers/corpus.js'
import { makePolicy } from '../helpers/fixtures.js'

const enabled: RenderOptions = {
  policy: makePolicy(),
  namespaceLabels: () => ({ 'enlist.io/inject': 'enabled' }),
  defaultNamespace: 'default',
  facts: { serverVersion: { major: 1, minor: 20 }, caBundle: '' },
}

const entries = corpus()
t.ok(entries.length >= 100, `${entries.length} corpus files`)

t.test('the corpus in test/fixtures: every file names its source and holds one workload', async (t) => {
  const files = readdirSync(VENDORED).filter((f) => /\.ya?ml$/.test(f)).sort()
  t.equal(files.length, 113, 'the 113 workloads its README lists')
  for (const f of files) {
    const text = readFileSync(join(VENDORED, f), 'utf8')
    t.match(text.split('\n')[0], /^# source: kubernetes\/examples \S+\.ya?ml$/, `${f} names the file it came from`)
    const docs = parseAllDocuments(text)
    t.equal(docs.length, 1, `${f} is one document`)
    t.notOk((docs[0]!.toJS() as { metadata?: { namespace?: string } }).metadata?.namespace, `${f} names no namespace`)
  }
})

for (const e of entries) {
  t.test(`corpus ${e.file} (${e.object.kind})`, async (t) => {
    const before = structuredClone(templateOf(e.object))
    const docs: unknown[] = [e.object]
    const [d] = renderDocuments(docs, enabled)
    const skip = expectedSkip(before)
    if (skip) {
      t.equal(d?.verdict, 'skipped')
      t.equal(d?.reason, skip)
      t.same(templateOf(docs[0] as typeof e.object), before, 'left as it was')
      return
    }
    t.equal(d?.verdict, 'injected', d?.message ?? d?.reason ?? '')
    const after = templateOf(docs[0] as typeof e.object)
    t.same(missingItems(after), [], 'every item injected')
    t.same(lostValues(before, after), [], 'nothing the user wrote is lost')
  })
}

t.test('kinds: Pod, workloads with templates, CronJob, List; others pass through', async (t) => {
  const text = `
apiVersion: v1
kind: Pod
metadata: {name: solo}
spec: {containers: [{name: a, image: x}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: a, image: x}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec: {schedule: "0 1 * * *", jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: a, image: x}]}}}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: agent}
  spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: a, image: x}]}}}
---
`
  const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown)
  const service = structuredClone(docs[3])
  const diags = renderDocuments(docs, enabled)
  t.same(
    diags.map((d) => [d.object, d.verdict]),
    [
      ['Pod/solo', 'injected'],
      ['Job/migrate', 'injected'],
      ['CronJob/nightly', 'injected'],
      ['DaemonSet/agent', 'injected'],
    ],
  )
  t.same(docs[3], service, 'a Service is left alone')
  const env = (o: unknown, path: string[]) => path.reduce<unknown>((a, k) => (a as Record<string, unknown>)[k], o)
  const cron = env(docs[2], ['spec', 'jobTemplate', 'spec', 'template']) as never
  t.same(missingItems(cron), [])
  const status = (cron as { metadata: { annotations: Record<string, string> } }).metadata.annotations['enlist.io/status']!
  t.equal((JSON.parse(status) as { decision: { service: string } }).decision.service, 'nightly', 'the workload name is the CronJob')
})

t.test('not opted in, opted out, denied', async (t) => {
  const docs = parseAllDocuments(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec: {template: {spec: {containers: [{name: a, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b}
spec: {template: {metadata: {annotations: {enlist.io/inject: "true", enlist.io/depends-on: "db:99999"}}, spec: {containers: [{name: a, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: c}
spec: {template: {metadata: {annotations: {enlist.io/inject: "true"}}, spec: {containers: [{name: a, image: x}]}}}
`).map((d) => d.toJS() as unknown)
  const before = structuredClone(docs)
  const diags = renderDocuments(docs, { ...enabled, namespaceLabels: () => ({}) })
  t.same(
    diags.map((d) => [d.object, d.verdict, d.reason]),
    [
      ['Deployment/a', 'skipped', 'not-opted-in'],
      ['Deployment/b', 'denied', 'invalid-annotation'],
      ['Deployment/c', 'injected', 'pod-opt-in'],
    ],
  )
  t.same(docs[0], before[0], 'skipped: unchanged')
  t.same(docs[1], before[1], 'denied: unchanged')
  t.match(diags[1]?.message, /enlist\.io\/depends-on: "db:99999" is invalid/)
})

t.test('objects without a template or metadata are handled', async (t) => {
  const docs: unknown[] = [null, 'text', { kind: 'Deployment', spec: {} }, { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x' }] } }]
  const diags = renderDocuments(docs, enabled)
  t.same(diags.map((d) => d.object), ['Pod/(unnamed)'])
  // no name and no labels: no service name to derive, said as a denial (a pod in a cluster
  // always has a name; named through a label it is injected)
  t.match(diags[0], { verdict: 'denied', reason: 'service-name', message: /is empty once normalised to a DNS-1123 label; name the service/ })
  const labelled: unknown[] = [{ kind: 'Pod', metadata: { labels: { app: 'orders' } }, spec: { containers: [{ name: 'a', image: 'x' }] } }]
  renderDocuments(labelled, enabled)
  t.ok((labelled[0] as { metadata: { annotations: Record<string, string> } }).metadata.annotations['enlist.io/status'])
})

t.test('an OpenShift DeploymentConfig (apps.openshift.io/v1): its template is previewed like a Deployment\'s', async (t) => {
  const text = `
apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: frontend, namespace: shop}
spec:
  replicas: 2
  selector: {name: frontend}
  triggers: [{type: ConfigChange}]
  template:
    metadata: {labels: {name: frontend}}
    spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]}
`
  const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown)
  const diags = renderDocuments(docs, enabled)
  t.same(diags.map((d) => [d.object, d.verdict]), [['DeploymentConfig/frontend', 'injected']])
  const template = (docs[0] as { spec: { template: never } }).spec.template
  t.same(missingItems(template), [], 'every item injected into spec.template')
  const meta = (template as { metadata: { annotations: Record<string, string>; labels: Record<string, string> } }).metadata
  t.equal(meta.labels['enlist.io/managed'], 'true')
  const decision = (JSON.parse(meta.annotations['enlist.io/status']!) as { decision: { service: string } }).decision
  t.equal(decision.service, 'frontend', 'the workload name is the DeploymentConfig')
  t.same((docs[0] as { spec: { triggers: unknown } }).spec.triggers, [{ type: 'ConfigChange' }], 'the rest of the object is kept')
})
