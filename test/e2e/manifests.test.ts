// Every manifest a user applies, applied to a real apiserver (server-side dry-run): the
// base and each certificate overlay. And `make certs` output, as the certs overlay uses it.
import t from 'tap'
import { cpSync, existsSync} from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments, stringify } from 'yaml'
import { enlist } from '../helpers/cli.js'
import { startControlPlane } from '../harness/control-plane.js'
import { tempDir } from '../helpers/temp.js'

const REPO = new URL('../../', import.meta.url).pathname
const cp = await startControlPlane()
t.teardown(() => cp.stop())

// The overlays are rendered from a copy, so `enlist certs` can write the certs overlay's files.
const copy = tempDir('enlist-manifests-')
cpSync(join(REPO, 'manifests'), join(copy, 'manifests'), { recursive: true })

const servesPolicyV1 = (await cp.kubectl(['api-versions'])).stdout.split('\n').includes('policy/v1')

async function render(dir: string): Promise<Array<Record<string, unknown>>> {
  const k = await cp.kubectl(['kustomize', join(copy, 'manifests', dir)])
  if (k.code !== 0) throw new Error(`kubectl kustomize ${dir}: ${k.stderr}`)
  return parseAllDocuments(k.stdout).map((d) => d.toJS() as Record<string, unknown>).filter(Boolean)
}

async function dryRun(objects: Array<Record<string, unknown>>): Promise<{ code: number; stdout: string; stderr: string }> {
  const adjusted = objects.map((o) =>
    // Servers before 1.21 serve PodDisruptionBudget only as policy/v1beta1; the spec is the same.
    !servesPolicyV1 && o.kind === 'PodDisruptionBudget' ? { ...o, apiVersion: 'policy/v1beta1' } : o,
  )
  return cp.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: adjusted.map((o) => stringify(o)).join('---\n') })
}

// Namespaced objects can be dry-run only into a namespace that exists.
await cp.namespace('enlist-system', { 'enlist.io/inject': 'disabled' })
await cp.kubectl(['apply', '-f', join(REPO, 'test/fixtures/cert-manager-crds.yaml')])
await new Promise((r) => setTimeout(r, 1500)) // CRDs are served a moment after creation

t.test('manifests/base', async (t) => {
  const objects = await render('base')
  t.same(
    objects.map((o) => o.kind).sort(),
    ['ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'Namespace', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount'],
  )
  const roles = objects.filter((o) => o.kind === 'ClusterRole') as Array<{ metadata: { name: string }; rules: Array<{ resources: string[]; verbs: string[] }> }>
  const patchesPods = roles.filter((r) => r.rules.some((rule) => rule.resources.includes('pods') && rule.verbs.includes('patch'))).map((r) => r.metadata.name)
  t.same(patchesPods, ['enlist-pod-records'], 'patching pods is granted only for the kubernetes backend, apart')
  t.notOk(roles.some((r) => r.rules.some((rule) => rule.resources.includes('events') && rule.verbs.some((v) => v !== 'create'))), 'events: create only')
  const r = await dryRun(objects)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /deployment\.apps\/enlist (created|configured) \(server dry run\)/)
  t.match(r.stdout, /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/enlist (created|configured) \(server dry run\)/)

  const hook = objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as { webhooks: Array<Record<string, unknown>> }
  t.same(hook.webhooks.map((w) => w.name), ['namespace.inject.enlist.io', 'object.inject.enlist.io', 'annotation.inject.enlist.io'])
  for (const w of hook.webhooks) {
    t.same(w.admissionReviewVersions, ['v1'])
    t.equal(w.sideEffects, 'None')
    t.equal(w.reinvocationPolicy, 'IfNeeded')
    t.ok((w.timeoutSeconds as number) <= 10, 'a short timeout')
    const excluded = (w.namespaceSelector as { matchExpressions: Array<{ key: string; operator: string; values?: string[] }> }).matchExpressions.find((e) => e.key === 'kubernetes.io/metadata.name')
    t.same(excluded, { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', 'enlist-system'] })
  }
  t.same(hook.webhooks.map((w) => w.failurePolicy), ['Fail', 'Fail', 'Ignore'])

  const dep = objects.find((o) => o.kind === 'Deployment') as { spec: { replicas: number; template: { spec: Record<string, unknown> } } }
  t.equal(dep.spec.replicas, 2)
  const pod = dep.spec.template.spec as { priorityClassName: string; securityContext: Record<string, unknown>; containers: Array<Record<string, Record<string, unknown>>>; affinity: unknown }
  t.equal(pod.priorityClassName, 'system-cluster-critical')
  t.match(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
  t.match(pod.containers[0]!.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  t.match(pod.containers[0], { readinessProbe: { httpGet: { path: '/readyz' } }, livenessProbe: { httpGet: { path: '/healthz' } }, resources: { requests: {}, limits: {} } })
  t.ok(pod.affinity, 'spread across nodes')
  const ns = objects.find((o) => o.kind === 'Namespace') as { metadata: { labels: Record<string, string> } }
  t.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted')
})

t.test('manifests/overlays/self-managed', async (t) => {
  const objects = await render('overlays/self-managed')
  const r = await dryRun(objects)
  t.equal(r.code, 0, r.stderr)
  const dep = objects.find((o) => o.kind === 'Deployment') as { spec: { template: { spec: { containers: Array<{ args: string[]; volumeMounts?: unknown[] }>; volumes?: unknown[] } } } }
  t.ok(dep.spec.template.spec.containers[0]!.args.includes('--self-signed'))
  t.same(dep.spec.template.spec.volumes ?? [], [], 'no TLS volume to mount')
  t.ok(objects.some((o) => o.kind === 'ClusterRole' && (o.metadata as { name: string }).name === 'enlist-self-managed'))
})

t.test('manifests/overlays/cert-manager', async (t) => {
  const objects = await render('overlays/cert-manager')
  const r = await dryRun(objects)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /certificate\.cert-manager\.io\/enlist-serving (created|configured) \(server dry run\)/)
  const hook = objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as { metadata: { annotations: Record<string, string> } }
  t.equal(hook.metadata.annotations['cert-manager.io/inject-ca-from'], 'enlist-system/enlist-serving')
})

t.test('make certs, then manifests/overlays/certs', async (t) => {
  const out = join(copy, 'certs')
  const overlay = join(copy, 'manifests/overlays/certs')
  const made = await enlist(['certs', '--out-dir', out, '--overlay', overlay])
  t.equal(made.code, 0, made.stderr)
  t.ok(existsSync(join(out, 'ca.key')) && existsSync(join(overlay, 'generated/secret.yaml')), 'keys in certs/, manifests in the overlay')
  const again = await enlist(['certs', '--out-dir', out, '--overlay', overlay])
  t.match(again.stderr, /reusing the CA/, 're-running keeps the CA')
  const objects = await render('overlays/certs')
  const r = await dryRun(objects)
  t.equal(r.code, 0, r.stderr)
  const hook = objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as { webhooks: Array<{ clientConfig: { caBundle?: string } }> }
  const secret = objects.find((o) => o.kind === 'Secret') as { data: Record<string, string> }
  for (const w of hook.webhooks) t.equal(w.clientConfig.caBundle, secret.data['ca.crt'], 'every entry trusts the CA')
  t.equal((objects.find((o) => o.kind === 'Secret') as { type: string }).type, 'kubernetes.io/tls')
})

t.test('manifests/components/relay (an optional kustomize Component)', async (t) => {
  // kubectl 1.20 embeds a kustomize without Components; a Component of resources alone renders
  // to those resources, as kustomize v5 does when an overlay lists it under components.
  const dir = join(copy, 'manifests/components/relay')
  const { readFileSync } = await import('node:fs')
  const { parse } = await import('yaml')
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { apiVersion: string; kind: string; resources: string[] }
  t.match(k, { apiVersion: 'kustomize.config.k8s.io/v1alpha1', kind: 'Component' })
  t.same(Object.keys(k).sort(), ['apiVersion', 'kind', 'resources'], 'resources only: rendering adds nothing')
  const objects = k.resources.flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as Record<string, unknown>).filter(Boolean))
  t.same(objects.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'Role', 'RoleBinding', 'ServiceAccount'])
  const r = await dryRun(objects)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /deployment\.apps\/enlist-relay (created|configured) \(server dry run\)/)
  const dep = objects.find((o) => o.kind === 'Deployment') as { spec: { template: { spec: { containers: Array<Record<string, unknown>>; securityContext: Record<string, unknown> } } } }
  const c = dep.spec.template.spec.containers[0]!
  t.same(c.args, ['relay'])
  t.match(c, { readinessProbe: { httpGet: { path: '/readyz' } }, livenessProbe: { httpGet: { path: '/healthz' } }, securityContext: { readOnlyRootFilesystem: true } })
  t.match(dep.spec.template.spec.securityContext, { runAsNonRoot: true })
  // every ConfigMap variable is a flag the relay knows
  const { relayFlags } = await import('../../src/cli/relay.js')
  const envs = new Set(Object.values(relayFlags).map((f) => (f as { env?: string }).env))
  const cm = objects.find((o) => o.kind === 'ConfigMap') as { data: Record<string, string> }
  for (const key of Object.keys(cm.data)) t.ok(envs.has(key), `${key} is a relay flag`)
})
