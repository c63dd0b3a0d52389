// Every manifest a user applies: each overlay and each component, rendered with kustomize v5
// (kubectl v1.33 from hack/kustomize.sh; the test apiserver's kubectl v1.20 cannot render
// components) without a single warning, and applied to a real apiserver (server-side dry run).
// The test apiserver is v1.20: objects whose kinds or fields it lacks (ValidatingAdmissionPolicy,
// webhook matchConditions, ServiceMonitor without its CRD) are checked structurally here, and
// their CEL by test/unit/match-conditions.test.ts and test/unit/admission-policy.test.ts.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse, parseAllDocuments, stringify } from 'yaml'
import { enlist } from '../helpers/cli.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { kustomizeKubectl as kustomizeKubectlPath } from '../harness/kustomize.js'
import { tempDir } from '../helpers/temp.js'
import { loadPolicy } from '../../src/policy/load.js'
import { admit } from '../../src/admission/review.js'
import { makePod, makeRequest } from '../helpers/fixtures.js'
import { testKeys } from '../helpers/keys.js'

type Obj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } }

const REPO = new URL('../../', import.meta.url).pathname
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
const run = promisify(execFile)
const kustomizeKubectl = await kustomizeKubectlPath()

const cp = await controlPlaneFor(t)

// Rendered from a copy: `enlist certs` writes the certs overlay's files, and the tests add overlays.
const copy = tempDir('enlist-manifests-')
cpSync(join(REPO, 'manifests'), join(copy, 'manifests'), { recursive: true })

const COMPONENTS = ['self-managed', 'cert-manager', 'openshift', 'service-monitor', 'network-policy', 'priority-class', 'annotation-match-conditions', 'validating-admission-policy', 'relay']
const RECOMMENDED = ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of', 'app.kubernetes.io/managed-by']

/** An overlay of the base and `components`, written into the copy; returns its directory. */
function overlay(name: string, components: string[], extra: Record<string, unknown> = {}): string {
  const dir = join(copy, 'manifests/overlays', name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['../../base'], components: components.map((c) => `../../components/${c}`), ...extra }),
  )
  return `overlays/${name}`
}

/** Renders with kustomize v5: it must succeed and say nothing on stderr (no deprecation warning). */
async function render(t: Test, dir: string): Promise<Obj[]> {
  let r: { stdout: string; stderr: string }
  try {
    r = await run(kustomizeKubectl, ['kustomize', join(copy, 'manifests', dir)], { maxBuffer: 16 << 20 })
  } catch (err) {
    throw new Error(`kustomize ${dir}: ${(err as { stderr?: string }).stderr ?? String(err)}`, { cause: err })
  }
  t.equal(r.stderr, '', `${dir}: kustomize v5 renders it without warnings`)
  const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
  checkLabels(t, dir, objects)
  return objects
}

function checkLabels(t: Test, dir: string, objects: Obj[]): void {
  const missing = objects.flatMap((o) => RECOMMENDED.filter((k) => !o.metadata.labels?.[k]).map((k) => `${o.kind}/${o.metadata.name}: ${k}`))
  t.same(missing, [], `${dir}: the six recommended labels on every object`)
  const wrong = objects.filter((o) => o.metadata.labels?.['app.kubernetes.io/version'] !== VERSION || o.metadata.labels['app.kubernetes.io/part-of'] !== 'enlist')
  t.same(wrong.map((o) => `${o.kind}/${o.metadata.name}`), [], `${dir}: version ${VERSION} (package.json), part-of enlist`)
  for (const d of objects.filter((o) => o.kind === 'Deployment') as unknown as Array<{ metadata: { name: string }; spec: { selector: { matchLabels: Record<string, string> } } }>) {
    t.same(Object.keys(d.spec.selector.matchLabels), ['app.kubernetes.io/name'], `${d.metadata.name}: the selector stays the name alone (immutable across upgrades)`)
  }
}

const servesPolicyV1 = (await cp.kubectl(['api-versions'])).stdout.split('\n').includes('policy/v1')
// Kinds and fields the v1.20 apiserver does not serve: checked structurally instead.
const NOT_ON_120 = new Set(['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'ServiceMonitor'])

async function dryRun(t: Test, objects: Obj[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const adjusted = objects
    .filter((o) => !NOT_ON_120.has(o.kind))
    .map((o) => {
      // Servers before 1.21 serve PodDisruptionBudget only as policy/v1beta1; the spec is the same.
      if (!servesPolicyV1 && o.kind === 'PodDisruptionBudget') return { ...o, apiVersion: 'policy/v1beta1' }
      // matchConditions arrived in 1.28; kubectl 1.20 would refuse the unknown field
      if (o.kind === 'MutatingWebhookConfiguration') {
        const c = structuredClone(o) as unknown as { webhooks: Array<Record<string, unknown>> }
        for (const w of c.webhooks) delete w.matchConditions
        return c
      }
      return o
    })
  const r = await cp.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: adjusted.map((o) => stringify(o)).join('---\n') })
  t.equal(r.code, 0, r.stderr)
  return r
}

const byKind = (objects: Obj[], kind: string, name?: string): Obj[] => objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
const one = <T = Obj>(objects: Obj[], kind: string, name?: string): T => {
  const found = byKind(objects, kind, name)
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? `/${name}` : ''}, found ${found.length}`)
  return found[0] as unknown as T
}

interface Container { name: string; image: string; args?: string[]; env?: Array<{ name: string; value?: string }>; securityContext?: Record<string, unknown> }
interface DeploymentObj { metadata: { name: string }; spec: { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: { priorityClassName?: string; securityContext: Record<string, unknown>; containers: Container[]; volumes?: unknown[]; affinity?: unknown } } } }
interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }

/** Every grant as "group/resource[/name]:verb", sorted. */
function grants(objects: Obj[]): string[] {
  const out = new Set<string>()
  for (const r of objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole') as unknown as Array<{ metadata: { name: string }; rules: Rule[] }>) {
    for (const rule of r.rules) for (const g of rule.apiGroups) for (const res of rule.resources) for (const v of rule.verbs) for (const n of rule.resourceNames ?? ['*']) out.add(`${g || 'core'}/${res}/${n.startsWith('enlist-ledger-') ? 'enlist-ledger-*' : n}:${v}`)
  }
  return [...out].sort()
}

/** The policy text of the ConfigMap enlist-policy. */
const policyText = (objects: Obj[]): string => one<{ data: Record<string, string> }>(objects, 'ConfigMap', 'enlist-policy').data['policy.yaml']!

// Namespaced objects can be dry-run only into a namespace that exists.
await cp.namespace('enlist-system', { 'enlist.io/inject': 'disabled' })
await cp.kubectl(['apply', '-f', join(REPO, 'test/fixtures/cert-manager-crds.yaml')])
// CRDs are served a moment after creation: wait for them to say so (Established), not a guess
const established = await cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(REPO, 'test/fixtures/cert-manager-crds.yaml')])
if (established.code !== 0) throw new Error(`cert-manager's CRDs were not established: ${established.stderr}`)

// the base's objects, for comparisons (rendered once)
const baseObjects = await (async () => {
  const r = await run(kustomizeKubectl, ['kustomize', join(copy, 'manifests/base')], { maxBuffer: 16 << 20 })
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj).filter(Boolean)
})()

t.test('no deprecated kustomize fields anywhere', async (t) => {
  const { globSync } = await import('node:fs')
  const files = globSync('manifests/**/kustomization.yaml', { cwd: REPO })
  t.ok(files.length >= 14, `${files.length} kustomizations`)
  for (const f of files) {
    const k = parse(readFileSync(join(REPO, f), 'utf8')) as Record<string, unknown>
    for (const key of ['bases', 'patchesStrategicMerge', 'patchesJson6902', 'commonLabels', 'vars']) t.notOk(key in k, `${f}: no ${key}`)
    if (f.startsWith('manifests/components/')) t.match(k, { apiVersion: 'kustomize.config.k8s.io/v1alpha1', kind: 'Component' }, `${f} is a Component`)
  }
  t.same(globSync('manifests/components/*/', { cwd: REPO }).map((d) => d.split('/')[2]).sort(), [...COMPONENTS].sort(), 'the components this test covers')
})

t.test('manifests/base', async (t) => {
  const objects = await render(t, 'base')
  t.same(
    objects.map((o) => o.kind).sort(),
    ['ClusterRole', 'ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'Namespace', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount'],
  )
  const roles = objects.filter((o) => o.kind === 'ClusterRole') as unknown as Array<{ metadata: { name: string }; rules: Rule[] }>
  const patchesPods = roles.filter((r) => r.rules.some((rule) => rule.resources.includes('pods') && rule.verbs.includes('patch'))).map((r) => r.metadata.name)
  t.same(patchesPods, ['enlist-pod-records'], 'patching pods is granted only for the kubernetes backend, apart')
  // Every grant is a call the code makes (src/**: client.get/create/replace/patch, Reflector
  // list+watch, TokenReview); nothing else.
  t.same(grants(objects), [
    'authentication.k8s.io/tokenreviews/*:create',
    'coordination.k8s.io/leases/*:create', // the first leader creates the Lease
    'coordination.k8s.io/leases/enlist-controller:get',
    'coordination.k8s.io/leases/enlist-controller:update', // renewals are PUTs
    'core/configmaps/*:create', // the amqp ledger's shards
    'core/configmaps/enlist-ledger-*:get',
    'core/configmaps/enlist-ledger-*:update',
    'core/configmaps/enlist-policy:list', // watched by name: list and watch, no get
    'core/configmaps/enlist-policy:watch',
    'core/configmaps/enlist-status:get', // ClusterRole enlist-status-reader: what users bind to run enlist status
    'core/configmaps/enlist-status:update', // the leader's status report
    'core/endpoints/*:list',
    'core/endpoints/*:watch',
    'core/events/*:create', // never updated
    'core/namespaces/*:list',
    'core/namespaces/*:watch',
    'core/namespaces/kube-system:get', // the cluster's UID in claims on its name
    'core/nodes/*:get',
    'core/pods/*:get',
    'core/pods/*:list',
    'core/pods/*:patch',
    'core/pods/*:watch',
    'core/pods/status/*:patch',
    'core/secrets/*:create', // enlist-decision-keys, on first start
    'core/secrets/enlist-amqp-credentials:get',
    'core/secrets/enlist-decision-keys:get',
    'core/secrets/enlist-decision-keys:list',
    'core/secrets/enlist-decision-keys:update',
    'core/secrets/enlist-decision-keys:watch',
    'core/secrets/enlist-event-signing-key:get', // the nats and amqp backends sign their events
    'core/secrets/enlist-nats-credentials:get',
    'core/secrets/enlist-registry-credentials:get',
    'core/services/*:list',
    'core/services/*:watch',
    'discovery.k8s.io/endpointslices/*:list',
    'discovery.k8s.io/endpointslices/*:watch',
  ], 'the grants of the base, each used by the code')
  t.notOk(grants(objects).some((g) => g.startsWith('core/secrets/enlist-tls')), 'the serving Secret is not the base\'s: files are mounted')

  const r = await dryRun(t, objects)
  t.match(r.stdout, /deployment\.apps\/enlist (created|configured) \(server dry run\)/)
  t.match(r.stdout, /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/enlist (created|configured) \(server dry run\)/)

  const hook = one<{ webhooks: Array<Record<string, unknown>> }>(objects, 'MutatingWebhookConfiguration')
  t.same(hook.webhooks.map((w) => w.name), ['namespace.inject.enlist.io', 'object.inject.enlist.io', 'annotation.inject.enlist.io'])
  for (const w of hook.webhooks) {
    t.same(w.admissionReviewVersions, ['v1'])
    t.equal(w.sideEffects, 'None')
    t.equal(w.reinvocationPolicy, 'IfNeeded')
    t.ok((w.timeoutSeconds as number) <= 10, 'a short timeout')
    t.notOk('matchConditions' in w, 'no matchConditions in the base: it serves Kubernetes < 1.28 too')
    const excluded = (w.namespaceSelector as { matchExpressions: Array<{ key: string; operator: string; values?: string[] }> }).matchExpressions.find((e) => e.key === 'kubernetes.io/metadata.name')
    t.same(excluded, { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', 'enlist-system'] })
  }
  t.same(hook.webhooks.map((w) => w.failurePolicy), ['Fail', 'Fail', 'Ignore'])

  const dep = one<DeploymentObj>(objects, 'Deployment')
  t.equal(dep.spec.replicas, 2)
  const pod = dep.spec.template.spec
  t.equal(pod.priorityClassName, undefined, 'no priority class unless the component priority-class adds it')
  t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } })
  t.match(pod.containers[0]!.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  t.match(pod.containers[0], { readinessProbe: { httpGet: { path: '/readyz' } }, livenessProbe: { httpGet: { path: '/healthz' } }, resources: { requests: {}, limits: {} } })
  t.ok(pod.affinity, 'spread across nodes')
  t.match(dep.spec.template.metadata.labels, { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/version': VERSION }, 'the pods carry the recommended labels too')
  const env = Object.fromEntries((pod.containers[0]!.env ?? []).map((e) => [e.name, e.value]))
  t.equal(env.ENLIST_IMAGE, pod.containers[0]!.image, 'ENLIST_IMAGE is the container\'s image')
  const ns = one<{ metadata: { labels: Record<string, string> } }>(objects, 'Namespace')
  t.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted')
  const policy = parse(policyText(objects)) as { registrar: Record<string, unknown> }
  t.notOk('image' in policy.registrar, 'the policy names no registrar image: enlist\'s own is used')
  t.equal(policy.registrar.runAsUser, 65532)
})

t.test('manifests/overlays/self-managed', async (t) => {
  const objects = await render(t, 'overlays/self-managed')
  await dryRun(t, objects)
  const dep = one<DeploymentObj>(objects, 'Deployment')
  t.ok(dep.spec.template.spec.containers[0]!.args!.includes('--self-signed'))
  t.same(dep.spec.template.spec.volumes ?? [], [], 'no TLS volume to mount')
  t.ok(byKind(objects, 'ClusterRole', 'enlist-self-managed').length === 1)
  const extra = grants(objects).filter((g) => !grants(baseObjects).includes(g))
  t.same(extra, [
    'admissionregistration.k8s.io/mutatingwebhookconfigurations/enlist:get',
    'admissionregistration.k8s.io/mutatingwebhookconfigurations/enlist:patch',
    'core/secrets/enlist-tls:get',
    'core/secrets/enlist-tls:list',
    'core/secrets/enlist-tls:update',
    'core/secrets/enlist-tls:watch',
  ], 'self-managed mode adds only its Secret and its caBundle')
})


t.test('manifests/overlays/cert-manager', async (t) => {
  const objects = await render(t, 'overlays/cert-manager')
  const r = await dryRun(t, objects)
  t.match(r.stdout, /certificate\.cert-manager\.io\/enlist-serving (created|configured) \(server dry run\)/)
  const hook = one<{ metadata: { annotations: Record<string, string> } }>(objects, 'MutatingWebhookConfiguration')
  t.equal(hook.metadata.annotations['cert-manager.io/inject-ca-from'], 'enlist-system/enlist-serving')
  t.same(grants(objects), grants(baseObjects), 'no grants beyond the base: the certificate is mounted')
})

t.test('make certs, then manifests/overlays/certs', async (t) => {
  const out = join(copy, 'certs')
  const dir = join(copy, 'manifests/overlays/certs')
  const made = await enlist(['certs', '--out-dir', out, '--overlay', dir])
  t.equal(made.code, 0, made.stderr)
  t.ok(existsSync(join(out, 'ca.key')) && existsSync(join(dir, 'generated/secret.yaml')), 'keys in certs/, manifests in the overlay')
  const again = await enlist(['certs', '--out-dir', out, '--overlay', dir])
  t.match(again.stderr, /reusing the CA/, 're-running keeps the CA')
  const objects = await render(t, 'overlays/certs')
  await dryRun(t, objects)
  const hook = one<{ webhooks: Array<{ clientConfig: { caBundle?: string } }> }>(objects, 'MutatingWebhookConfiguration')
  const secret = one<{ type: string; data: Record<string, string> }>(objects, 'Secret')
  for (const w of hook.webhooks) t.equal(w.clientConfig.caBundle, secret.data['ca.crt'], 'every entry trusts the CA')
  t.equal(secret.type, 'kubernetes.io/tls')
})

t.test('manifests/overlays/openshift: no fixed UID, GID or fsGroup anywhere', async (t) => {
  const objects = await render(t, 'overlays/openshift')
  await dryRun(t, objects)
  const fixed: string[] = []
  const walk = (v: unknown, path: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`))
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) {
      if (['runAsUser', 'runAsGroup', 'fsGroup', 'supplementalGroups'].includes(k)) fixed.push(`${path}.${k}`)
      walk(x, `${path}.${k}`)
    }
  }
  for (const o of objects) walk(o, `${o.kind}/${o.metadata.name}`)
  t.same(fixed, [], 'no object sets a UID, GID or fsGroup')
  const text = policyText(objects)
  const policy = loadPolicy(text, 'openshift policy', { image: 'enlist:0.1.0' })
  t.equal(policy.spec.registrar.runAsUser, undefined, 'the registrar gets no fixed UID')
  // the rest of the policy is the base's (the component carries a copy of it)
  const base = parse(policyText(baseObjects)) as { registrar: Record<string, unknown> }
  delete base.registrar.runAsUser
  t.same(parse(text), base, 'the OpenShift policy is the base policy without registrar.runAsUser')
  const dep = one<DeploymentObj>(objects, 'Deployment')
  t.match(dep.spec.template.spec.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } }, 'still non-root, restricted')
  t.ok(dep.spec.template.spec.containers[0]!.args!.includes('--self-signed'), 'self-managed certificates')
  // what the registrar looks like there
  const out = admit(makeRequest(makePod({ metadata: { name: 'web', namespace: 'shop' } })), policy, { namespaceLabels: { 'enlist.io/inject': 'enabled' }, serverVersion: { major: 1, minor: 28 }, caBundle: '', keys: testKeys() })
  t.equal(out.verdict, 'injected')
  const ops = JSON.parse(Buffer.from(out.response.patch!, 'base64').toString()) as Array<{ path: string; value: unknown }>
  const registrar = (ops.find((o) => o.path === '/spec/initContainers')!.value as Container[])[0]!
  t.notOk('runAsUser' in registrar.securityContext! || 'runAsGroup' in registrar.securityContext!, 'the injected registrar names no UID or GID')
  t.match(registrar.securityContext, { runAsNonRoot: true })
})

t.test('one image setting reaches the Deployment, the relay and the registrar', async (t) => {
  const image = 'registry.example.com/platform/enlist:0.2.0'
  const dir = overlay('image', ['self-managed', 'relay'], { images: [{ name: 'enlist', newName: 'registry.example.com/platform/enlist', newTag: '0.2.0' }] })
  const objects = await render(t, dir)
  await dryRun(t, objects)
  const dep = one<DeploymentObj>(objects, 'Deployment', 'enlist')
  const c = dep.spec.template.spec.containers[0]!
  t.equal(c.image, image)
  const env = c.env!.find((e) => e.name === 'ENLIST_IMAGE')
  t.equal(env?.value, image, 'ENLIST_IMAGE follows the images: entry')
  t.equal(one<DeploymentObj>(objects, 'Deployment', 'enlist-relay').spec.template.spec.containers[0]!.image, image, 'the relay too')
  // what enlist does with it: the policy names no image, so the registrar gets enlist's own
  const policy = loadPolicy(policyText(objects), 'enlist-policy', { image: env!.value! })
  t.equal(policy.spec.registrar.image, image, 'the registrar\'s image is the Deployment\'s')
  // a nested overlay (yours, on top of a ready-made one) works the same way
  const nested = join(copy, 'manifests/overlays/yours')
  mkdirSync(nested, { recursive: true })
  writeFileSync(join(nested, 'kustomization.yaml'), stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['../self-managed'], images: [{ name: 'enlist', newName: 'mirror.example.com/enlist', digest: `sha256:${'a'.repeat(64)}` }] }))
  const mine = one<DeploymentObj>(await render(t, 'overlays/yours'), 'Deployment', 'enlist').spec.template.spec.containers[0]!
  t.equal(mine.image, `mirror.example.com/enlist@sha256:${'a'.repeat(64)}`)
  t.equal(mine.env!.find((e) => e.name === 'ENLIST_IMAGE')?.value, mine.image, 'an images: entry in an overlay above reaches ENLIST_IMAGE too (digest pinned)')
  t.equal(loadPolicy(policyText(objects), 'p', { image: mine.image }).spec.registrar.image, mine.image, 'a digest reference is a valid registrar image')
})

t.test('each component, with the base and self-managed certificates', async (t) => {
  for (const c of COMPONENTS.filter((c) => c !== 'self-managed' && c !== 'cert-manager')) {
    await t.test(c, async (t) => {
      const objects = await render(t, overlay(`with-${c}`, ['self-managed', c]))
      const r = await dryRun(t, objects)
      t.match(r.stdout, /deployment\.apps\/enlist (created|configured) \(server dry run\)/)
      const dep = one<DeploymentObj>(objects, 'Deployment', 'enlist')
      switch (c) {
        case 'priority-class': {
          t.equal(dep.spec.template.spec.priorityClassName, 'system-cluster-critical')
          const quota = one<{ metadata: { namespace: string }; spec: { scopeSelector: unknown } }>(objects, 'ResourceQuota')
          t.equal(quota.metadata.namespace, 'enlist-system')
          t.same(quota.spec.scopeSelector, { matchExpressions: [{ scopeName: 'PriorityClass', operator: 'In', values: ['system-cluster-critical'] }] }, 'the quota GKE requires for a system class outside kube-system')
          t.match(r.stdout, /resourcequota\/enlist-critical-pods (created|configured) \(server dry run\)/)
          break
        }
        case 'network-policy': {
          const np = one<{ spec: { podSelector: { matchLabels: Record<string, string> }; ingress: Array<{ ports: Array<{ port: number }> }> } }>(objects, 'NetworkPolicy', 'enlist')
          t.same(np.spec.podSelector.matchLabels, { 'app.kubernetes.io/name': 'enlist' })
          const port = (dep.spec.template.spec.containers[0] as unknown as { ports: Array<{ containerPort: number }> }).ports[0]!.containerPort
          t.same(np.spec.ingress.flatMap((i) => i.ports.map((p) => p.port)), [port], 'only the HTTPS port the Deployment serves')
          t.match(r.stdout, /networkpolicy\.networking\.k8s\.io\/enlist (created|configured) \(server dry run\)/)
          break
        }
        case 'service-monitor': {
          // no ServiceMonitor CRD on the test apiserver: checked against the objects it scrapes
          const sm = one<{ metadata: { namespace: string }; spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; scheme: string; path: string; tlsConfig: { serverName: string; ca: { secret: { name: string; key: string } } } }> } }>(objects, 'ServiceMonitor')
          t.equal(sm.metadata.namespace, 'enlist-system')
          const svc = one<{ metadata: { labels: Record<string, string> }; spec: { ports: Array<{ name: string }> } }>(objects, 'Service', 'enlist')
          t.match(svc.metadata.labels, sm.spec.selector.matchLabels, 'it selects the enlist Service')
          const ep = sm.spec.endpoints[0]!
          t.ok(svc.spec.ports.some((p) => p.name === ep.port), `the Service has port ${ep.port}`)
          t.match(ep, { scheme: 'https', path: '/metrics', tlsConfig: { serverName: 'enlist.enlist-system.svc', ca: { secret: { name: 'enlist-tls', key: 'ca.crt' } } } }, 'Prometheus trusts enlist\'s CA')
          break
        }
        case 'annotation-match-conditions': {
          const hook = one<{ webhooks: Array<{ name: string; failurePolicy: string; matchConditions?: Array<{ name: string; expression: string }> }> }>(objects, 'MutatingWebhookConfiguration')
          t.same(hook.webhooks.map((w) => [w.name, w.failurePolicy, (w.matchConditions ?? []).length]), [
            ['namespace.inject.enlist.io', 'Fail', 0],
            ['object.inject.enlist.io', 'Fail', 0],
            ['annotation.inject.enlist.io', 'Fail', 1],
          ], 'the annotation entry fails closed, behind its match condition (evaluated in test/unit/match-conditions.test.ts)')
          break
        }
        case 'validating-admission-policy':
          t.same(objects.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy')).map((o) => o.apiVersion), Array(6).fill('admissionregistration.k8s.io/v1'), 'six objects (three policies, their bindings), not served by 1.20 (test/unit/admission-policy.test.ts evaluates them)')
          break
        case 'relay': {
          t.match(r.stdout, /deployment\.apps\/enlist-relay (created|configured) \(server dry run\)/)
          const relay = one<DeploymentObj>(objects, 'Deployment', 'enlist-relay')
          t.same(relay.spec.template.spec.containers[0]!.args, ['relay'])
          const { relayFlags } = await import('../../src/cli/relay.js')
          const envs = new Set(Object.values(relayFlags).map((f) => (f as { env?: string }).env))
          const cm = one<{ data: Record<string, string> }>(objects, 'ConfigMap', 'enlist-relay')
          for (const key of Object.keys(cm.data)) t.ok(envs.has(key), `${key} is a relay flag`)
          // exact names, as rendered: a folded YAML line once made "enlist- ledger-04"
          const role = one<{ rules: Rule[] }>(objects, 'Role', 'enlist-relay')
          const pad = (i: number) => String(i).padStart(2, '0')
          t.same(role.rules.map((rule) => [rule.resources, rule.verbs, rule.resourceNames]), [
            [['configmaps'], ['get'], Array.from({ length: 64 }, (_, i) => `enlist-ledger-${pad(i)}`)],
            [['configmaps'], ['get', 'update'], Array.from({ length: 16 }, (_, i) => `enlist-relay-tombstones-${pad(i)}`)],
            [['configmaps'], ['create'], undefined],
          ], 'the Role names the 64 ledger shards and the 16 tombstone shards exactly')
          for (const rule of role.rules) for (const n of rule.resourceNames ?? []) t.match(n, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${JSON.stringify(n)} is an object name`)
          break
        }
        case 'openshift':
          t.same(Object.keys(dep.spec.template.spec.securityContext).sort(), ['runAsNonRoot', 'seccompProfile'])
          break
      }
    })
  }
})

t.test('every component at once, openshift last', async (t) => {
  const objects = await render(t, overlay('everything', COMPONENTS.filter((c) => c !== 'cert-manager' && c !== 'openshift').concat('openshift')))
  await dryRun(t, objects)
  for (const d of byKind(objects, 'Deployment') as unknown as DeploymentObj[]) {
    t.same(Object.keys(d.spec.template.spec.securityContext).sort(), ['runAsNonRoot', 'seccompProfile'], `${d.metadata.name}: no fixed ids`)
  }
})
