// The AdmissionReview layer: shape checks, non-pod requests, denials and warnings.
import t from 'tap'
import { admit, parseReview, serializeReview } from '../../src/admission/review.js'
import { EnlistError } from '../../src/lib/errors.js'
import { decodePatch, facts, FACTS_ENABLED, makePod, makePolicy, makeRequest } from '../helpers/fixtures.js'

const policy = makePolicy()

t.test('parseReview accepts v1 and v1beta1 reviews', async (t) => {
  for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
    const r = parseReview({ apiVersion, kind: 'AdmissionReview', request: { uid: 'x' } })
    t.equal(r.apiVersion, apiVersion)
    t.same(JSON.parse(serializeReview(r, { uid: 'x', allowed: true })), { apiVersion, kind: 'AdmissionReview', response: { uid: 'x', allowed: true } })
  }
})

t.test('parseReview rejects what is not a review, saying why', async (t) => {
  const cases: Array<[unknown, string]> = [
    [null, 'not an AdmissionReview: the body must be a JSON object'],
    [[], 'not an AdmissionReview: the body must be a JSON object'],
    ['x', 'not an AdmissionReview: the body must be a JSON object'],
    [{}, 'not an AdmissionReview: kind must be "AdmissionReview", got nothing'],
    [{ kind: 'Pod' }, 'not an AdmissionReview: kind must be "AdmissionReview", got "Pod"'],
    [{ kind: 'AdmissionReview' }, 'not an AdmissionReview: apiVersion must be admission.k8s.io/v1 (or v1beta1), got nothing'],
    [{ kind: 'AdmissionReview', apiVersion: 'v1' }, 'not an AdmissionReview: apiVersion must be admission.k8s.io/v1 (or v1beta1), got "v1"'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' }, 'not an AdmissionReview: request must be an object'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: [] }, 'not an AdmissionReview: request must be an object'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: {} }, 'not an AdmissionReview: request.uid must be a non-empty string'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 5 } }, 'not an AdmissionReview: request.uid must be a non-empty string'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 'u', namespace: { a: 1 } } }, 'not an AdmissionReview: request.namespace must be a string'],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 'u', operation: 7 } }, 'not an AdmissionReview: request.operation must be a string'],
  ]
  for (const [body, message] of cases) {
    t.throws(() => parseReview(body), { message, code: 'ENLIST_BAD_REQUEST', statusCode: 400 }, JSON.stringify(body))
  }
  t.throws(() => parseReview(null), EnlistError)
})

t.test('the response is written as JSON text equal to its object form', async (t) => {
  const review = parseReview({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u"1\\' } })
  const responses = [
    { uid: 'u"1\\', allowed: true },
    { uid: 'u', allowed: true, patchType: 'JSONPatch' as const, patch: Buffer.from('[{"op":"add"}]').toString('base64'), warnings: ['enlist: kept "x"\ttab'] },
    { uid: 'u', allowed: false, status: { code: 400, reason: 'BadRequest', message: 'annotation "a\n" is invalid' } },
  ]
  for (const r of responses) {
    const text = serializeReview(review, r)
    t.same(JSON.parse(text), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: r })
  }
  const injected = admit(makeRequest(makePod()), policy, FACTS_ENABLED)
  t.same(JSON.parse(serializeReview(review, injected.response)).response, injected.response)
})

t.test('anything but a pod CREATE is allowed untouched', async (t) => {
  const pod = makePod()
  const cases = [
    makeRequest(pod, { operation: 'UPDATE' }),
    makeRequest(pod, { operation: 'DELETE', object: null }),
    makeRequest(pod, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }),
    makeRequest(pod, { subResource: 'status' }),
    makeRequest(pod, { subResource: 'ephemeralcontainers' }),
    makeRequest(pod, { object: undefined }),
    makeRequest(pod, { object: 'string' }),
    { uid: 'bare' },
  ]
  for (const req of cases) {
    const out = admit(req, policy, FACTS_ENABLED)
    t.same(out.response, { uid: req.uid, allowed: true })
    t.equal(out.verdict, 'ignored')
    t.equal(out.reason, 'not-a-pod-create')
  }
})

t.test('a skip is allowed without a patch, with the reason', async (t) => {
  const out = admit(makeRequest(makePod()), policy, facts({}))
  t.same(out.response, { uid: 'req-1', allowed: true })
  t.equal(out.verdict, 'skipped')
  t.equal(out.reason, 'not-opted-in')
})

t.test('an opt-out is allowed with a warning', async (t) => {
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/inject': 'false' } } })
  const out = admit(makeRequest(pod), policy, FACTS_ENABLED)
  t.equal(out.response.allowed, true)
  t.equal(out.response.patch, undefined)
  t.same(out.response.warnings, ['enlist: not injected: the pod sets enlist.io/inject: "false"'])
})

t.test('bad annotations are denied with a message naming annotation, value and form', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'enlist.io/inject': 'yes' }, 'annotation enlist.io/inject: "yes" is invalid: not a recognised opt-in value; accepted: "true" or "false"'],
    [
      { 'enlist.io/depends-on': 'mysql:99999' },
      'annotation enlist.io/depends-on: "mysql:99999" is invalid: entry 1 "mysql:99999": port 99999 is out of range 1-65535; accepted: "[namespace/]service[:port]" separated by commas, e.g. "mysql:3306, payments/ledger"',
    ],
    [
      { 'enlist.io/metadata': '{"a":1}' },
      'annotation enlist.io/metadata: "{\\"a\\":1}" is invalid: the value of "a" is a number, not a string; accepted: a JSON object of strings, e.g. {"interface":"com.acme.Orders","group":"g1"}',
    ],
  ]
  for (const [annotations, message] of cases) {
    const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations } })
    const out = admit(makeRequest(pod), policy, FACTS_ENABLED)
    t.same(out.response, { uid: 'req-1', allowed: false, status: { code: 400, reason: 'BadRequest', message } })
    t.equal(out.verdict, 'denied')
    t.equal(out.reason, 'invalid-annotation')
  }
})

t.test('the first of several bad annotations is reported', async (t) => {
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/depends-on': 'x:0', 'enlist.io/metadata': '[]' } } })
  t.match(admit(makeRequest(pod), policy, FACTS_ENABLED).response.status?.message, /^annotation enlist\.io\/depends-on/)
})

t.test('bad annotations on a pod that is not injected are not judged', async (t) => {
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/depends-on': '!!!' } } })
  t.equal(admit(makeRequest(pod), policy, facts({})).verdict, 'skipped')
  t.equal(admit(makeRequest(pod, { namespace: 'kube-system' }), policy, FACTS_ENABLED).verdict, 'skipped')
})

t.test('a disallowed bad annotation is ignored, not denied', async (t) => {
  const p = makePolicy({ tenantOverrides: { allowed: [] } })
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/depends-on': '!!!' } } })
  const out = admit(makeRequest(pod), p, FACTS_ENABLED)
  t.equal(out.verdict, 'injected')
  t.match(out.response.warnings, [/depends-on ignored/])
})

t.test('dryRun requests are treated exactly like real ones', async (t) => {
  const pod = makePod()
  const real = admit(makeRequest(pod), policy, FACTS_ENABLED)
  const dry = admit(makeRequest(pod, { dryRun: true }), policy, FACTS_ENABLED)
  t.same(dry.response, real.response)
})

t.test('the namespace comes from the request, not the pod', async (t) => {
  const pod = makePod({ metadata: { generateName: 'x-', labels: {} } })
  delete pod.metadata!.namespace
  const out = admit(makeRequest(pod, { namespace: 'kube-system' }), policy, FACTS_ENABLED)
  t.equal(out.reason, 'excluded-namespace')
  t.equal(out.namespace, 'kube-system')
})

t.test('the patch is base64 JSON of add operations', async (t) => {
  const out = admit(makeRequest(makePod()), policy, FACTS_ENABLED)
  t.equal(out.response.patchType, 'JSONPatch')
  const ops = decodePatch(out.response.patch)
  t.same(ops, JSON.parse(out.patch!), 'the base64 patch is the JSON patch')
  t.ok(ops.every((o) => o.op === 'add'))
})

t.test('warnings are single-line and bounded', async (t) => {
  const pod = makePod({
    metadata: { name: 'p', namespace: 'shop', labels: { 'app.io/label': 'x'.repeat(63) } },
    spec: { containers: [{ name: 'c'.repeat(63), image: 'x', env: Array.from({ length: 8 }, (_, i) => ({ name: ['POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'POD_IP', 'POD_IPS', 'HOST_IP', 'NODE_NAME', 'POD_SERVICE_ACCOUNT'][i]!, value: 'v' })) }] },
  })
  const out = admit(makeRequest(pod), policy, facts({ 'enlist.io/inject': 'enabled\nnew' }, {}))
  for (const w of out.response.warnings ?? []) {
    t.ok(w.length <= 256, 'short')
    t.notMatch(w, /[\n\r\t]/, 'single line')
  }
})
