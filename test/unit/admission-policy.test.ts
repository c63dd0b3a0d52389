// The optional ValidatingAdmissionPolicies (manifests/components/validating-admission-policy),
// evaluated with a CEL implementation on the requests they must allow and refuse.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parseAllDocuments } from 'yaml'
import fjp from 'fast-json-patch'
import { CelEvaluationError, validate, type AdmissionContext } from '../helpers/cel.js'
import { admissionPolicyComponent, protectedKeysOf } from '../../src/admission/reserved.js'
import { defaultPolicy, loadPolicy } from '../../src/policy/load.js'

const docs = parseAllDocuments(readFileSync(new URL('../../manifests/components/validating-admission-policy/policies.yaml', import.meta.url), 'utf8')).map(
  (d) => d.toJS() as { kind: string; metadata: { name: string }; spec: never },
)
const policy = (name: string) => docs.find((d) => d.kind === 'ValidatingAdmissionPolicy' && d.metadata.name === name)!
const scope = policy('enlist-service-account-scope')
const owned = policy('enlist-owned-keys')

const ENLIST = 'system:serviceaccount:enlist-system:enlist'
const TENANT = 'alice'

const managed = () => ({
  metadata: {
    name: 'orders-1',
    namespace: 'shop',
    labels: { app: 'orders', 'enlist.io/managed': 'true', 'app.io/label': 'app.io-value' } as Record<string, string>,
    annotations: { 'enlist.io/status': '{"version":2}', note: 'x' } as Record<string, string>,
  },
  spec: { containers: [{ name: 'app', image: 'orders:1' }], nodeName: 'n1' },
  status: { phase: 'Running', podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'False' }] },
})
type Pod = ReturnType<typeof managed>

const ctx = (username: string, change: (p: Pod) => void, base = managed()): AdmissionContext => {
  const object = structuredClone(base)
  change(object)
  return { object, oldObject: base, request: { userInfo: { username }, operation: 'UPDATE' } }
}

t.test("enlist's service account: its own keys on managed pods, nothing else", async (t) => {
  const allowed: Array<[string, (p: Pod) => void]> = [
    ['write the discovery record', (p) => (p.metadata.annotations = { ...p.metadata.annotations, 'app.io/annotation': 'W3tdXQ==' })],
    ['set the discovery label', (p) => (p.metadata.labels['app.io/label'] = 'app.io-value')],
    ['set the registered condition', (p) => p.status.conditions.push({ type: 'enlist.io/registered', status: 'True' })],
    ['change nothing', () => undefined],
  ]
  for (const [what, change] of allowed) t.same(validate(scope, ctx(ENLIST, change)), [], what)

  const withRecord = managed()
  ;(withRecord.metadata.annotations as Record<string, string>)['app.io/annotation'] = 'W3tdXQ=='
  t.same(validate(scope, ctx(ENLIST, (p) => delete (p.metadata.annotations as Record<string, string>)['app.io/annotation'], withRecord)), [], 'remove the discovery record')

  const refused: Array<[string, (p: Pod) => void, RegExp]> = [
    ['swap an image', (p) => (p.spec.containers[0]!.image = 'evil:1'), /never changes a pod's spec/],
    ['add a label', (p) => (p.metadata.labels = { ...p.metadata.labels, owner: 'enlist' }), /only the record labels/],
    ['drop a label', (p) => delete (p.metadata.labels as Record<string, string>).app, /only the record labels/],
    ['edit another annotation', (p) => (p.metadata.annotations.note = 'y'), /only the record annotations/],
    ['rewrite enlist.io/status', (p) => (p.metadata.annotations['enlist.io/status'] = '{}'), /only the record annotations/],
    ['set Ready', (p) => (p.status.conditions[0]!.status = 'True'), /only the condition enlist.io\/registered/],
  ]
  for (const [what, change, message] of refused) {
    const failures = validate(scope, ctx(ENLIST, change))
    t.equal(failures?.length, 1, what)
    t.match(failures?.[0], message, what)
  }
  const unmanaged = managed()
  delete (unmanaged.metadata.labels as Record<string, string>)['enlist.io/managed']
  t.match(validate(scope, ctx(ENLIST, (p) => (p.metadata.labels['app.io/label'] = 'app.io-value'), unmanaged)), [/only pods it manages/], 'a pod enlist does not manage')
  const bare = { metadata: { name: 'p', namespace: 'x' }, spec: { containers: [] }, status: {} } as unknown as Pod
  t.match(validate(scope, ctx(ENLIST, () => undefined, bare)), [/only pods it manages/], 'no labels at all: refused, not an error')
  t.equal(validate(scope, ctx(TENANT, (p) => (p.spec.containers[0]!.image = 'x'))), undefined, 'others are not in scope of this policy')
})

t.test("no one else changes enlist's keys on a managed pod", async (t) => {
  const LABELS = "the labels enlist.io/managed and the record labels of a managed pod are enlist's"
  const ANNOTATIONS = "the annotations enlist.io/status and the discovery records of a managed pod are enlist's"
  const refused: Array<[string, (p: Pod) => void, string]> = [
    ['forge a discovery record', (p) => ((p.metadata.annotations as Record<string, string>)['app.io/annotation'] = 'W3t9XQ=='), ANNOTATIONS],
    ['rewrite enlist.io/status', (p) => (p.metadata.annotations['enlist.io/status'] = '{"version":2,"forged":true}'), ANNOTATIONS],
    ['drop enlist.io/status', (p) => delete (p.metadata.annotations as Record<string, string>)['enlist.io/status'], ANNOTATIONS],
    ['unset the managed label', (p) => delete (p.metadata.labels as Record<string, string>)['enlist.io/managed'], LABELS],
    ['change the discovery label', (p) => (p.metadata.labels['app.io/label'] = 'other'), LABELS],
  ]
  // the very message of the validation that should refuse: one refusing for another reason
  // (or an expression that errors, which validate() throws) does not pass
  for (const [what, change, message] of refused) t.same(validate(owned, ctx(TENANT, change)), [message], what)
  t.same(validate(owned, ctx(TENANT, (p) => (p.metadata.labels.app = 'v2'))), [], 'their own labels stay theirs')
  t.same(validate(owned, ctx(TENANT, (p) => (p.metadata.annotations.note = 'y'))), [], 'and their own annotations')
  const unmanaged = managed()
  delete (unmanaged.metadata.labels as Record<string, string>)['enlist.io/managed']
  t.equal(validate(owned, ctx(TENANT, (p) => ((p.metadata.annotations as Record<string, string>)['app.io/annotation'] = 'x'), unmanaged)), undefined, 'pods enlist does not manage are not in scope')
  t.equal(validate(owned, ctx(ENLIST, (p) => ((p.metadata.annotations as Record<string, string>)['app.io/annotation'] = 'x'))), undefined, 'enlist is governed by the other policy')
})

t.test('an expression that errors is an error, not a refusal', async (t) => {
  const broken = { spec: { validations: [{ expression: 'object.metadata.nothing.here == 1', message: 'refused' }] } }
  t.throws(() => validate(broken, ctx(TENANT, () => undefined)), CelEvaluationError, 'a validation')
  const variable = { spec: { variables: [{ name: 'v', expression: "object.metadata.labels['absent']" }], validations: [{ expression: 'true' }] } }
  t.throws(() => validate(variable, ctx(TENANT, () => undefined)), CelEvaluationError, 'a variable')
  const condition = { spec: { matchConditions: [{ name: 'm', expression: 'object.spec.nothing' }], validations: [{ expression: 'false', message: 'refused' }] } }
  t.throws(() => validate(condition, ctx(TENANT, () => undefined)), CelEvaluationError, 'a match condition')
})

t.test('the component renders as kustomize expects', async (t) => {
  const k = readFileSync(new URL('../../manifests/components/validating-admission-policy/kustomization.yaml', import.meta.url), 'utf8')
  t.match(k, /kind: Component/)
  t.same(docs.map((d) => d.kind), ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'])
})

t.test('the protected record keys are those of the layouts in use (issue 24)', async (t) => {
  const component = (dir: string) => readFileSync(new URL(`../../manifests/components/validating-admission-policy/${dir}kustomization.yaml`, import.meta.url), 'utf8')
  const list = (p: { spec: { variables: Array<{ name: string; expression: string }> } }, name: string) => p.spec.variables.find((v) => v.name === name)?.expression
  const keys = protectedKeysOf(defaultPolicy().spec)
  t.same(keys, { recordLabels: ['app.io/label'], recordAnnotations: ['app.io/annotation'] })
  for (const p of [scope, owned] as unknown as Array<{ spec: { variables: Array<{ name: string; expression: string }> } }>) {
    t.same(p.spec.variables.slice(0, 2).map((v) => v.name), ['recordLabels', 'recordAnnotations'], 'first: the generated patches name them by index')
    t.equal(list(p, 'recordLabels'), "['app.io/label']", 'the component as shipped: the default layout')
    t.equal(list(p, 'recordAnnotations'), "['app.io/annotation']")
  }
  const dubbo = loadPolicy('apiVersion: enlist.io/v1alpha1\nkind: Policy\ntenantOverrides: {allowed: [metadata]}\nregistry:\n  backends: [{name: pods, type: kubernetes, layout: dubbo}]\n')
  const generated = admissionPolicyComponent(dubbo.spec, 'layout dubbo, the default discovery keys')
  t.equal(component('dubbo-layout/'), generated, 'the dubbo-layout component is the generator\'s output for layout dubbo')

  // the dubbo-layout component applied as kustomize would
  const patched = (policy: typeof scope) => {
    const doc = structuredClone(policy) as { metadata: { name: string } }
    const c = parseAllDocuments(generated)[0]!.toJS() as { patches: Array<{ target: { name: string }; patch: string }> }
    const ops = parseAllDocuments(c.patches.find((p) => p.target.name === doc.metadata.name)!.patch)[0]!.toJS() as fjp.Operation[]
    return fjp.applyPatch(doc, ops, true, false).newDocument as typeof scope
  }
  const dubboRecord = (p: Pod) => {
    p.metadata.labels['dubbo.io/label'] = 'dubbo.io.provider'
    ;(p.metadata.annotations as Record<string, string>)['dubbo.io/annotation'] = 'W3siayI6Ii9kdWJibyIsInYiOiIifV0='
  }
  const REFUSED = "the annotations enlist.io/status and the discovery records of a managed pod are enlist's"
  t.same(validate(patched(owned), ctx(TENANT, dubboRecord)), [REFUSED.replace('annotations enlist.io/status and the discovery records', 'labels enlist.io/managed and the record labels'), REFUSED], "layout dubbo: a tenant's dubbo.io record on a managed pod is refused")
  t.same(validate(owned, ctx(TENANT, dubboRecord)), [], 'without it (no dubbo layout) dubbo.io keys are the tenant\'s')
  t.same(validate(patched(scope), ctx(ENLIST, dubboRecord)), [], 'and enlist may write them')
  t.equal(validate(scope, ctx(ENLIST, dubboRecord))?.length, 2, 'which the default layout\'s policy refuses enlist')
})
