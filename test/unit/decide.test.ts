// The decision order of docs/design.md, row by row, and the precedence between rows.
import t from 'tap'
import { decide, type DecisionInput } from '../../src/admission/decide.js'
import { makePolicy } from '../helpers/fixtures.js'

const base: DecisionInput = { namespace: 'shop', namespaceLabels: {}, podLabels: {}, podAnnotations: {} }
const NS_ON = { 'enlist.io/inject': 'enabled' }
const NS_OFF = { 'enlist.io/inject': 'disabled' }
const POD_ON = { 'enlist.io/inject': 'true' }
const POD_OFF = { 'enlist.io/inject': 'false' }

const defaultPolicy = makePolicy()
const selectors = makePolicy({
  injection: {
    excludedNamespaces: ['legacy'],
    neverInjectSelector: [{ matchLabels: { tier: 'batch' } }, { matchExpressions: [{ key: 'no-enlist', operator: 'Exists' }] }],
    alwaysInjectSelector: [{ matchExpressions: [{ key: 'team', operator: 'In', values: ['payments', 'ledger'] }] }],
  },
})
const defaultOn = makePolicy({ injection: { default: 'enabled' } })
const noPodOptIn = makePolicy({ tenantOverrides: { allowed: ['dependsOn'] } })

interface Row {
  name: string
  input: Partial<DecisionInput>
  policy?: typeof defaultPolicy
  action: 'inject' | 'skip' | 'deny'
  reason: string
}

const rows: Row[] = [
  // 1. built-in excluded namespaces: never, whatever else says inject
  { name: 'kube-system never', input: { namespace: 'kube-system', namespaceLabels: NS_ON, podAnnotations: POD_ON }, action: 'skip', reason: 'excluded-namespace' },
  { name: 'kube-public never', input: { namespace: 'kube-public', podAnnotations: POD_ON }, action: 'skip', reason: 'excluded-namespace' },
  { name: 'kube-node-lease never', input: { namespace: 'kube-node-lease', podLabels: POD_ON }, action: 'skip', reason: 'excluded-namespace' },
  { name: 'enlist-system never', input: { namespace: 'enlist-system', namespaceLabels: NS_ON }, action: 'skip', reason: 'excluded-namespace' },
  { name: 'excluded even with default on', input: { namespace: 'kube-system' }, policy: defaultOn, action: 'skip', reason: 'excluded-namespace' },
  { name: 'excluded beats a bad pod value', input: { namespace: 'kube-system', podAnnotations: { 'enlist.io/inject': 'yes' } }, action: 'skip', reason: 'excluded-namespace' },
  { name: 'policy-excluded namespace', input: { namespace: 'legacy', namespaceLabels: NS_ON, podAnnotations: POD_ON }, policy: selectors, action: 'skip', reason: 'excluded-namespace' },
  // 2. namespace disabled
  { name: 'namespace disabled beats pod true', input: { namespaceLabels: NS_OFF, podAnnotations: POD_ON }, action: 'skip', reason: 'namespace-opt-out' },
  { name: 'namespace disabled beats alwaysInject', input: { namespaceLabels: NS_OFF, podLabels: { team: 'payments' } }, policy: selectors, action: 'skip', reason: 'namespace-opt-out' },
  { name: 'namespace disabled beats default on', input: { namespaceLabels: NS_OFF }, policy: defaultOn, action: 'skip', reason: 'namespace-opt-out' },
  { name: 'namespace disabled beats a bad pod value', input: { namespaceLabels: NS_OFF, podAnnotations: { 'enlist.io/inject': 'maybe' } }, action: 'skip', reason: 'namespace-opt-out' },
  // bad pod values
  { name: 'bad annotation value denied', input: { namespaceLabels: NS_ON, podAnnotations: { 'enlist.io/inject': 'yes' } }, action: 'deny', reason: 'invalid-annotation' },
  { name: 'bad label value denied', input: { podLabels: { 'enlist.io/inject': 'enabled' } }, action: 'deny', reason: 'invalid-annotation' },
  { name: 'uppercase True denied', input: { podAnnotations: { 'enlist.io/inject': 'True' } }, action: 'deny', reason: 'invalid-annotation' },
  { name: 'empty value denied', input: { podAnnotations: { 'enlist.io/inject': '' } }, action: 'deny', reason: 'invalid-annotation' },
  // 3. pod false
  { name: 'pod annotation false in enabled namespace', input: { namespaceLabels: NS_ON, podAnnotations: POD_OFF }, action: 'skip', reason: 'pod-opt-out' },
  { name: 'pod label false in enabled namespace', input: { namespaceLabels: NS_ON, podLabels: POD_OFF }, action: 'skip', reason: 'pod-opt-out' },
  { name: 'pod false beats alwaysInject', input: { podAnnotations: POD_OFF, podLabels: { team: 'payments' } }, policy: selectors, action: 'skip', reason: 'pod-opt-out' },
  { name: 'label false beats annotation true', input: { podLabels: POD_OFF, podAnnotations: POD_ON }, action: 'skip', reason: 'pod-opt-out' },
  { name: 'annotation false beats label true', input: { podLabels: POD_ON, podAnnotations: POD_OFF }, action: 'skip', reason: 'pod-opt-out' },
  { name: 'pod false beats default on', input: { podAnnotations: POD_OFF }, policy: defaultOn, action: 'skip', reason: 'pod-opt-out' },
  // 4. neverInjectSelector
  { name: 'neverInject beats pod true', input: { podAnnotations: POD_ON, podLabels: { tier: 'batch' } }, policy: selectors, action: 'skip', reason: 'never-inject-selector' },
  { name: 'neverInject beats namespace enabled', input: { namespaceLabels: NS_ON, podLabels: { 'no-enlist': '' } }, policy: selectors, action: 'skip', reason: 'never-inject-selector' },
  { name: 'neverInject beats alwaysInject', input: { podLabels: { tier: 'batch', team: 'payments' } }, policy: selectors, action: 'skip', reason: 'never-inject-selector' },
  { name: 'neverInject needs the exact value', input: { namespaceLabels: NS_ON, podLabels: { tier: 'web' } }, policy: selectors, action: 'inject', reason: 'namespace-opt-in' },
  // 5. inject
  { name: 'pod annotation true in unlabelled namespace', input: { podAnnotations: POD_ON }, action: 'inject', reason: 'pod-opt-in' },
  { name: 'pod label true in unlabelled namespace', input: { podLabels: POD_ON }, action: 'inject', reason: 'pod-opt-in' },
  { name: 'pod true in enabled namespace says pod-opt-in', input: { namespaceLabels: NS_ON, podAnnotations: POD_ON }, action: 'inject', reason: 'pod-opt-in' },
  { name: 'namespace enabled', input: { namespaceLabels: NS_ON }, action: 'inject', reason: 'namespace-opt-in' },
  { name: 'alwaysInject selector', input: { podLabels: { team: 'ledger' } }, policy: selectors, action: 'inject', reason: 'always-inject-selector' },
  { name: 'alwaysInject In needs a listed value', input: { podLabels: { team: 'hr' } }, policy: selectors, action: 'skip', reason: 'not-opted-in' },
  // 6. policy default
  { name: 'default off', input: {}, action: 'skip', reason: 'not-opted-in' },
  { name: 'default on', input: {}, policy: defaultOn, action: 'inject', reason: 'policy-default' },
  { name: 'unknown namespace falls to default', input: { namespaceLabels: undefined }, action: 'skip', reason: 'not-opted-in' },
  { name: 'invalid namespace label is unlabelled', input: { namespaceLabels: { 'enlist.io/inject': 'true' } }, action: 'skip', reason: 'not-opted-in' },
  { name: 'invalid namespace label, pod opts in', input: { namespaceLabels: { 'enlist.io/inject': 'yes' }, podAnnotations: POD_ON }, action: 'inject', reason: 'pod-opt-in' },
  // podOptIn not allowed by the policy
  { name: 'pod opt-in ignored when not allowed', input: { podAnnotations: POD_ON }, policy: noPodOptIn, action: 'skip', reason: 'not-opted-in' },
  { name: 'pod opt-in not allowed, namespace enabled still injects', input: { namespaceLabels: NS_ON, podAnnotations: POD_ON }, policy: noPodOptIn, action: 'inject', reason: 'pod-opt-in' },
  { name: 'pod opt-out honoured even when opt-in is not allowed', input: { namespaceLabels: NS_ON, podAnnotations: POD_OFF }, policy: noPodOptIn, action: 'skip', reason: 'pod-opt-out' },
  // other labels and annotations do not matter
  { name: 'unrelated annotations ignored', input: { podAnnotations: { 'sidecar.istio.io/inject': 'true' } }, action: 'skip', reason: 'not-opted-in' },
  { name: 'namespace label on the pod is not a namespace opt-in', input: { podLabels: { 'enlist.io/inject': 'true', other: 'enabled' } }, action: 'inject', reason: 'pod-opt-in' },
]

for (const row of rows) {
  t.test(row.name, async (t) => {
    const d = decide({ ...base, ...row.input }, row.policy ?? defaultPolicy)
    t.equal(d.action, row.action, 'action')
    t.equal(d.reason, row.reason, 'reason')
  })
}

t.test('a pod opt-out carries a warning that names the annotation', async (t) => {
  const d = decide({ ...base, namespaceLabels: NS_ON, podAnnotations: POD_OFF }, defaultPolicy)
  t.equal(d.action, 'skip')
  if (d.action === 'skip') t.match(d.warnings, [/enlist\.io\/inject: "false"/])
})

t.test('a denied value names the annotation, the value and the accepted form', async (t) => {
  const d = decide({ ...base, podAnnotations: { 'enlist.io/inject': 'yes' } }, defaultPolicy)
  t.equal(d.action, 'deny')
  if (d.action === 'deny') {
    t.equal(d.error.message, 'annotation enlist.io/inject: "yes" is invalid: not a recognised opt-in value; accepted: "true" or "false"')
  }
})

t.test('a denied label says label', async (t) => {
  const d = decide({ ...base, podLabels: { 'enlist.io/inject': 'on' } }, defaultPolicy)
  if (d.action !== 'deny') throw new Error('expected deny')
  t.match(d.error.message, /^label enlist\.io\/inject: "on" is invalid/)
})

t.test('an invalid namespace label gives a warning', async (t) => {
  const d = decide({ ...base, namespaceLabels: { 'enlist.io/inject': 'on' } }, defaultPolicy)
  if (d.action === 'deny') throw new Error('unexpected deny')
  t.match(d.warnings, [/namespace shop label enlist\.io\/inject="on" is not "enabled" or "disabled"/])
})

t.test('pod opt-in not allowed gives a warning', async (t) => {
  const d = decide({ ...base, podAnnotations: POD_ON }, noPodOptIn)
  if (d.action === 'deny') throw new Error('unexpected deny')
  t.match(d.warnings, [/does not let pods opt in/])
})

t.test('undefined pod labels and annotations are handled', async (t) => {
  const d = decide({ namespace: 'x', namespaceLabels: undefined, podLabels: undefined, podAnnotations: undefined }, defaultOn)
  t.equal(d.action, 'inject')
})
