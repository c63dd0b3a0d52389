// The component annotation-match-conditions (Kubernetes >= 1.28): the CEL match condition it
// gives the webhook entry annotation.inject.enlist.io, evaluated with a CEL implementation on
// the pods that must and must not reach enlist (the test apiserver, v1.20, has no
// matchConditions), and held to what enlist itself decides for the same pods.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { evaluate } from '../helpers/cel.js'
import { parsePodOptIn } from '../../src/admission/annotations.js'

const kustomization = parse(readFileSync(new URL('../../manifests/components/annotation-match-conditions/kustomization.yaml', import.meta.url), 'utf8')) as {
  patches: Array<{ target: { kind: string; name: string }; patch: string }>
}
const ops = parse(kustomization.patches[0]!.patch) as Array<{ op: string; path: string; value: unknown }>
const conditions = ops.find((o) => o.path === '/webhooks/2/matchConditions')!.value as Array<{ name: string; expression: string }>

/** Whether the apiserver would send `pod` to enlist through the entry: every condition true. */
function sent(pod: unknown): boolean {
  for (const c of conditions) {
    const r = evaluate(c.expression, { object: pod, oldObject: null, request: { operation: 'CREATE', userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' } } })
    if (r.error) throw new Error(`${c.name}: ${r.error}`)
    if (r.value !== true) return false
  }
  return true
}

const pod = (meta: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-', namespace: 'shop', ...meta }, spec: { containers: [{ name: 'app', image: 'web:1' }] } })

t.test('the patch: the annotation entry, its failure policy Fail, one condition', async (t) => {
  t.match(kustomization.patches[0]!.target, { kind: 'MutatingWebhookConfiguration', name: 'enlist' })
  t.same(ops[0], { op: 'test', path: '/webhooks/2/name', value: 'annotation.inject.enlist.io' }, 'the patch refuses to apply to another entry')
  t.same(ops.find((o) => o.path === '/webhooks/2/failurePolicy'), { op: 'replace', path: '/webhooks/2/failurePolicy', value: 'Fail' })
  t.equal(conditions.length, 1)
})

t.test('pods that reach enlist, and pods that do not', async (t) => {
  const cases: Array<[string, unknown, boolean]> = [
    ['annotation enlist.io/inject: "true"', pod({ annotations: { 'enlist.io/inject': 'true' } }), true],
    ['that annotation among others', pod({ annotations: { a: 'b', 'enlist.io/inject': 'true', 'enlist.io/depends-on': 'db:5432' } }), true],
    ['an invalid value ("yes"): enlist refuses it with a message', pod({ annotations: { 'enlist.io/inject': 'yes' } }), true],
    ['an invalid value ("True")', pod({ annotations: { 'enlist.io/inject': 'True' } }), true],
    ['no annotations at all', pod({}), false],
    ['an empty annotation map', pod({ annotations: {} }), false],
    ['other annotations only', pod({ annotations: { 'enlist.io/depends-on': 'db', 'example.com/inject': 'true' } }), false],
    ['annotation "false" (opted out)', pod({ annotations: { 'enlist.io/inject': 'false' } }), false],
    ['the label instead of the annotation (the object entry takes it)', pod({ labels: { 'enlist.io/inject': 'true' } }), false],
    ['a similar key', pod({ annotations: { 'enlist.io/injected': 'true', 'inject.enlist.io': 'true' } }), false],
    ['no labels, no annotations, no name', { apiVersion: 'v1', kind: 'Pod', metadata: {}, spec: {} }, false],
  ]
  for (const [name, p, want] of cases) t.equal(sent(p), want, `${name}: ${want ? 'sent' : 'not sent'}`)
})

t.test('every pod enlist would inject or refuse by its annotation is sent; none it would skip for it', async (t) => {
  for (const value of ['true', 'false', 'yes', '', 'TRUE', '1']) {
    const annotations = { 'enlist.io/inject': value }
    const verdict = parsePodOptIn(undefined, annotations)
    // enlist acts on "true" (inject) and on invalid values (a denial with a message): both must reach it
    const acts = !verdict.ok || verdict.value === 'true'
    t.equal(sent(pod({ annotations })), acts, `annotation ${JSON.stringify(value)}: ${acts ? 'enlist acts' : 'enlist skips'}`)
  }
})
