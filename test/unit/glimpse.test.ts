// The fast path: a decision from the raw review text must be the decision admit() makes
// on the parsed review, for every pod of the corpus and every captured fixture, under
// every namespace state and policy shape, and it must give up on anything unexpected.
import t, { type Test } from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import type { V1Pod } from '@kubernetes/client-node'
import { glimpse, podCannotMatter } from '../../src/admission/glimpse.js'
import { admit, type AdmissionReview, skipUnparsed } from '../../src/admission/review.js'
import type { CompiledPolicy } from '../../src/policy/policy.js'
import { corpus, templateOf } from '../helpers/corpus.js'
import { FACTS_ENABLED, makePolicy } from '../helpers/fixtures.js'

/** A review as the apiserver writes it: Go's field order, compact. */
function review(pod: V1Pod, namespace: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: '5c0b6e57-1a3c-4f7e-9a43-0d1c2b3a4f5e',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', uid: 'u', groups: ['system:serviceaccounts'] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...over,
    },
  }
}

const NAMESPACES: Record<string, Record<string, string> | undefined> = {
  shop: { 'enlist.io/inject': 'enabled' },
  off: { 'enlist.io/inject': 'disabled' },
  plain: {},
  odd: { 'enlist.io/inject': 'yes-please' },
  'kube-system': {},
}
const labelsOf = (ns: string) => NAMESPACES[ns]
const POLICIES: Array<[string, CompiledPolicy]> = [
  ['default', makePolicy()],
  ['never-inject selector', makePolicy({ injection: { neverInjectSelector: [{ matchLabels: { tier: 'batch' } }] } })],
  ['always-inject selector', makePolicy({ injection: { alwaysInjectSelector: [{ matchLabels: { app: 'redis' } }] } })],
  ['injection on by default', makePolicy({ injection: { default: 'enabled' } })],
  ['excluded namespace', makePolicy({ injection: { excludedNamespaces: ['plain'] } })],
]

/** Same verdict, reason, uid and warnings as the full path, wherever the fast path answers. */
function agree(t: Test, text: string, what: string): boolean {
  let fast = 0
  for (const [pname, policy] of POLICIES) {
    const parsed = JSON.parse(text) as AdmissionReview
    const ns = parsed.request.namespace ?? ''
    const skip = skipUnparsed(text, policy, labelsOf)
    if (!skip) continue
    fast++
    const full = admit(parsed.request, policy, { ...FACTS_ENABLED, namespaceLabels: labelsOf(ns) })
    if (full.verdict !== 'skipped' || full.reason !== skip.reason || full.response.warnings || skip.uid !== parsed.request.uid || skip.apiVersion !== parsed.apiVersion) {
      t.fail(`${what} / ${pname}: fast ${skip.reason}, full ${full.verdict}/${full.reason} ${JSON.stringify(full.response.warnings)}`)
      return false
    }
  }
  return fast > 0
}

t.test('every corpus pod, every namespace state and policy: the same decision', async (t) => {
  let answered = 0
  let cases = 0
  for (const e of corpus()) {
    const tpl = templateOf(e.object)
    const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: `${e.object.metadata.name}-`, ...tpl.metadata }, spec: tpl.spec }
    for (const ns of Object.keys(NAMESPACES)) {
      for (const text of [JSON.stringify(review(pod, ns)), JSON.stringify(review(pod, ns), null, 2)]) {
        cases++
        if (agree(t, text, `${e.file} in ${ns}`)) answered++
      }
    }
  }
  t.ok(answered > cases / 4, `${answered} of ${cases} answered without parsing, all as admit() would`)
})

t.test('the captured fixtures', async (t) => {
  const dir = new URL('../../bench/fixtures/', import.meta.url).pathname
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    const original = readFileSync(dir + f, 'utf8')
    const parsed = JSON.parse(original) as AdmissionReview
    // agree() fails on any disagreement; where the fast path answers is pinned too: a pod that
    // names no enlist.io/ key is answered in every namespace that does not inject it, one that
    // does (large, typical: depends-on, metadata) always takes the full path (podCannotMatter)
    const answered = Object.keys(NAMESPACES).filter((ns) => {
      parsed.request.namespace = ns
      return agree(t, JSON.stringify(parsed), `${f} in ${ns}`)
    })
    t.same(answered, original.includes('enlist.io/') ? [] : ['off', 'plain', 'kube-system'], `${f}: answered without parsing in ${answered.join(', ') || 'no namespace'}`)
  }
  t.same(readdirSync(dir).filter((x) => x.endsWith('.json')).sort(), ['env1500.json', 'large.json', 'not-opted-in.json', 'small.json', 'typical.json'], 'both kinds of pod among the fixtures')
  const notOptedIn = readFileSync(dir + 'not-opted-in.json', 'utf8')
  t.match(skipUnparsed(notOptedIn, makePolicy(), labelsOf), { reason: 'not-opted-in', uid: JSON.parse(notOptedIn).request.uid }, 'the fixture as captured, pretty-printed')
  t.match(skipUnparsed(JSON.stringify(JSON.parse(notOptedIn)), makePolicy(), labelsOf), { reason: 'not-opted-in' }, 'and compact, as the apiserver sends it')
})

t.test('it gives up on anything it does not expect', async (t) => {
  const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'shop', labels: { app: 'x' } }, spec: { containers: [{ name: 'a', image: 'x' }] } }
  const base = review(pod, 'plain')
  const text = JSON.stringify(base)
  t.ok(skipUnparsed(text, makePolicy(), labelsOf), 'the plain case is answered')

  // A namespace named elsewhere in the body (the pod's own metadata, a label value) is not the request's.
  t.equal(glimpse(text)?.namespace, 'plain')
  const decoy = JSON.stringify(review({ ...pod, metadata: { ...pod.metadata, labels: { namespace: 'off' } } }, 'plain'))
  t.equal(glimpse(decoy)?.namespace, 'plain')

  const cases: Array<[string, string]> = [
    ['an escape in the namespace', text.replace('"namespace":"plain"', '"namespace":"pla\\u0069n"')],
    ['an escape in the uid', text.replace(/"uid":"5c0b[^"]*"/, '"uid":"5c0b\\"x"')],
    ['the object before the namespace', JSON.stringify({ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 'u', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, object: pod, namespace: 'plain', operation: 'CREATE' } })],
    ['the request before kind and apiVersion', JSON.stringify({ request: (base as { request: unknown }).request, kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' })],
    ['a duplicate namespace', text.replace('"namespace":"plain"', '"namespace":"plain","namespace":"shop"')],
    ['a duplicate apiVersion', text.replace('"apiVersion":"admission.k8s.io/v1"', '"apiVersion":"admission.k8s.io/v1","apiVersion":"x"')],
    ['an unsupported apiVersion', text.replace('admission.k8s.io/v1"', 'admission.k8s.io/v2"')],
    ['an update', text.replace('"operation":"CREATE"', '"operation":"UPDATE"')],
    ['a subresource', text.replace('"namespace":"plain"', '"subResource":"status","namespace":"plain"')],
    ['enlist.io/ in the pod', JSON.stringify(review({ ...pod, metadata: { ...pod.metadata, annotations: { 'enlist.io/inject': 'true' } } }, 'plain'))],
    ['enlist.io/ escaped with \\/', text.replace('"app":"x"', '"enlist.io\\/inject":"true"')],
    ['enlist.io/ spelled with \\u', text.replace('"app":"x"', '"enlist.io\\u002finject":"true"')],
    ['a namespace not in the cache', text.replace('"namespace":"plain"', '"namespace":"brand-new"')],
    ['an opted-in namespace', text.replace('"namespace":"plain"', '"namespace":"shop"')],
    ['an invalid opt-in label', text.replace('"namespace":"plain"', '"namespace":"odd"')],
    ['truncated', text.slice(0, 200)],
    ['not an object', '[1,2,3]'],
    ['not JSON', 'hello'],
    ['a kind that is not AdmissionReview', text.replace('"kind":"AdmissionReview"', '"kind":"Pod"')],
  ]
  for (const [what, body] of cases) t.equal(skipUnparsed(body, makePolicy(), labelsOf), undefined, what)
  t.notOk(podCannotMatter('{"a":"enlist.io/x"}'))
  t.ok(podCannotMatter('{"a":"enlist.io"}'))
  t.equal(skipUnparsed(text.replace('"namespace":"plain"', '"namespace":"kube-system"'), makePolicy(), () => undefined)?.reason, 'excluded-namespace', 'an excluded namespace needs no labels')
})
