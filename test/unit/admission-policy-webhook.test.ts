// Self-managed mode's webhook writes (issue 24): RBAC lets enlist patch its whole
// MutatingWebhookConfiguration; the ValidatingAdmissionPolicy enlist-webhook-cabundle-only
// (manifests/components/validating-admission-policy/webhook-cabundle.yaml) narrows that to
// the caBundle. VAP needs Kubernetes 1.30 and the test apiserver is 1.20, so it is evaluated
// here with the CEL implementation test/helpers/cel.ts uses, on the base's real configuration.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse, parseAllDocuments } from 'yaml'
import { validate, type AdmissionContext } from '../helpers/cel.js'

const policy = parseAllDocuments(readFileSync(new URL('../../manifests/components/validating-admission-policy/webhook-cabundle.yaml', import.meta.url), 'utf8'))
  .map((d) => d.toJS() as { kind: string; metadata: { name: string }; spec: never })
  .find((d) => d.kind === 'ValidatingAdmissionPolicy')!
type Webhook = Record<string, unknown> & { name: string; clientConfig: Record<string, unknown> & { caBundle?: string; service?: Record<string, unknown>; url?: string } }
interface Config {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  webhooks: Webhook[]
}
const base = (): Config => parse(readFileSync(new URL('../../manifests/base/mutatingwebhookconfiguration.yaml', import.meta.url), 'utf8')) as Config

const ENLIST = 'system:serviceaccount:enlist-system:enlist'
const ctx = (change: (c: Config) => void, o: { username?: string; operation?: string; resource?: string; old?: Config } = {}): AdmissionContext => {
  const oldObject = o.old ?? base()
  const object = structuredClone(oldObject)
  change(object)
  const operation = o.operation ?? 'UPDATE'
  return {
    object: operation === 'DELETE' ? null : object,
    oldObject: operation === 'CREATE' ? null : oldObject,
    request: { userInfo: { username: o.username ?? ENLIST }, operation, resource: { resource: o.resource ?? 'mutatingwebhookconfigurations' } } as AdmissionContext['request'],
  }
}

t.test('enlist may publish the caBundle of its webhooks', async (t) => {
  t.ok(base().webhooks.length >= 3, 'the base configuration, every entry')
  t.same(validate(policy, ctx((c) => c.webhooks.forEach((w) => (w.clientConfig.caBundle = 'TkVX')))), [], 'a new bundle on every entry (what publishBundle patches)')
  const withBundle = base()
  withBundle.webhooks.forEach((w) => (w.clientConfig.caBundle = 'T0xE'))
  t.same(validate(policy, ctx((c) => (c.webhooks[1]!.clientConfig.caBundle = 'TkVX'), { old: withBundle })), [], 'a rotation on one entry')
  t.same(validate(policy, ctx(() => undefined)), [], 'no change')
})

t.test('enlist may change nothing else of it', async (t) => {
  const ONLY = 'enlist may change only the caBundle of its webhooks'
  const refused: Array<[string, (c: Config) => void, string]> = [
    ['fail open', (c) => (c.webhooks[0]!.failurePolicy = 'Ignore'), ONLY],
    ['exempt every namespace', (c) => (c.webhooks[0]!.namespaceSelector = { matchLabels: { never: 'x' } }), ONLY],
    ['narrow the rules', (c) => (c.webhooks[1]!.rules = []), ONLY],
    ['call elsewhere (url)', (c) => (c.webhooks[0]!.clientConfig = { url: 'https://evil.example.com/mutate', caBundle: 'TkVX' }), ONLY],
    ['call another service', (c) => (c.webhooks[0]!.clientConfig.service = { ...c.webhooks[0]!.clientConfig.service, name: 'evil' }), ONLY],
    ['rename an entry', (c) => (c.webhooks[2]!.name = 'other.inject.enlist.io'), ONLY],
    ['drop an entry', (c) => c.webhooks.pop(), ONLY],
    ['add an entry', (c) => c.webhooks.push({ ...structuredClone(c.webhooks[0]!), name: 'extra.inject.enlist.io' }), ONLY],
    ['add a match condition', (c) => (c.webhooks[0]!.matchConditions = [{ name: 'skip', expression: 'false' }]), ONLY],
    ['shorten the timeout', (c) => (c.webhooks[0]!.timeoutSeconds = 1), ONLY],
    ['add a label', (c) => (c.metadata.labels = { ...c.metadata.labels, owner: 'me' }), 'enlist may not change the labels, annotations, owners or finalizers of its webhook configuration'],
  ]
  for (const [what, change, message] of refused) t.same(validate(policy, ctx(change)), [message], what)
  const conditioned = base()
  conditioned.webhooks[2]!.matchConditions = [{ name: 'annotated', expression: 'true' }]
  t.same(validate(policy, ctx((c) => delete c.webhooks[2]!.matchConditions, { old: conditioned })), [ONLY], 'drop a match condition')
  t.same(validate(policy, ctx((c) => (c.webhooks[2]!.clientConfig.caBundle = 'TkVX'), { old: conditioned })), [], 'with match conditions, the caBundle still may change')
  t.same(validate(policy, ctx((c) => ((c.webhooks[0]!.failurePolicy = 'Ignore'), (c.webhooks[0]!.clientConfig.caBundle = 'TkVX')))), [ONLY], 'not even along with a caBundle')
})

t.test('nor any other webhook configuration, nor create or delete one', async (t) => {
  const OWN = 'enlist may only update its own MutatingWebhookConfiguration enlist'
  const other = base()
  other.metadata.name = 'istio-sidecar-injector'
  t.match(validate(policy, ctx((c) => (c.webhooks[0]!.clientConfig.caBundle = 'TkVX'), { old: other })), [OWN], "another product's configuration")
  t.match(validate(policy, ctx(() => undefined, { resource: 'validatingwebhookconfigurations' })), [OWN], 'a validating webhook configuration')
  t.match(validate(policy, ctx(() => undefined, { operation: 'DELETE' })), [OWN], 'delete its own')
  t.match(validate(policy, ctx(() => undefined, { operation: 'CREATE' })), [OWN], 'create one')
  t.equal(validate(policy, ctx((c) => (c.webhooks[0]!.failurePolicy = 'Ignore'), { username: 'kubernetes-admin' })), undefined, 'admins are not in scope: they install and upgrade it')
})
