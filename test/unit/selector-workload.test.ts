// Label selectors and workload naming: small pure helpers the decision depends on.
import t from 'tap'
import { workloadOf } from '../../src/admission/workload.js'
import { compileAny, compileSelector, formatSelector } from '../../src/lib/selector.js'
import { isDns1035Label, isLabelValue, isPortName, isQualifiedName } from '../../src/lib/validation.js'

t.test('label selectors', async (t) => {
  const s = compileSelector({
    matchLabels: { app: 'web' },
    matchExpressions: [
      { key: 'tier', operator: 'In', values: ['front', 'edge'] },
      { key: 'env', operator: 'NotIn', values: ['dev'] },
      { key: 'team', operator: 'Exists' },
      { key: 'legacy', operator: 'DoesNotExist' },
    ],
  })
  t.ok(s({ app: 'web', tier: 'front', team: 'a' }))
  t.ok(s({ app: 'web', tier: 'edge', team: 'a', env: 'prod' }))
  t.notOk(s({ app: 'web', tier: 'front', team: 'a', env: 'dev' }), 'NotIn')
  t.notOk(s({ app: 'web', tier: 'back', team: 'a' }), 'In')
  t.notOk(s({ app: 'web', team: 'a' }), 'In needs the key')
  t.notOk(s({ app: 'web', tier: 'front' }), 'Exists')
  t.notOk(s({ app: 'web', tier: 'front', team: 'a', legacy: '' }), 'DoesNotExist')
  t.notOk(s({ app: 'api', tier: 'front', team: 'a' }), 'matchLabels')
  t.notOk(s(undefined))
  t.ok(compileSelector({})(undefined), 'empty selector matches everything')
  t.ok(compileSelector({})({ a: 'b' }))
  t.notOk(compileAny([])({ a: 'b' }), 'an empty list matches nothing')
  t.ok(compileAny([{ matchLabels: { a: 'x' } }, { matchLabels: { b: 'y' } }])({ b: 'y' }))
  // only a pod's own labels are labels: nothing inherited from Object.prototype
  const inherited = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']
  for (const key of inherited) {
    t.ok(compileSelector({ matchExpressions: [{ key, operator: 'DoesNotExist' }] })({ app: 'x' }), `DoesNotExist ${key}`)
    t.notOk(compileSelector({ matchExpressions: [{ key, operator: 'Exists' }] })({ app: 'x' }), `Exists ${key}`)
    t.ok(compileSelector({ matchExpressions: [{ key, operator: 'NotIn', values: ['a'] }] })({ app: 'x' }), `NotIn ${key}`)
  }
  t.ok(compileSelector({ matchExpressions: [{ key: 'constructor', operator: 'In', values: ['a'] }] })(JSON.parse('{"constructor": "a"}') as Record<string, string>), 'a real label of that name counts')
  t.notOk(compileSelector({ matchLabels: { toString: 'x' } })({}), 'matchLabels too')
  t.equal(formatSelector({ matchLabels: { a: 'b' }, matchExpressions: [{ key: 'c', operator: 'In', values: ['d', 'e'] }, { key: 'f', operator: 'DoesNotExist' }, { key: 'g', operator: 'Exists' }, { key: 'h', operator: 'NotIn', values: ['i'] }] }), 'a=b,c in (d,e),!f,g,h notin (i)')
})

t.test('workload names', async (t) => {
  const rs = (name: string, hash?: string) => ({
    generateName: `${name}-`,
    labels: (hash ? { 'pod-template-hash': hash } : {}) as Record<string, string>,
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name, uid: 'u', controller: true }],
  })
  t.same(workloadOf(rs('checkout-7d9c5b6f4', '7d9c5b6f4')), { kind: 'Deployment', name: 'checkout' })
  t.same(workloadOf(rs('checkout-7d9c5b6f4')), { kind: 'ReplicaSet', name: 'checkout-7d9c5b6f4' }, 'a bare ReplicaSet')
  t.same(workloadOf(rs('checkout-abc', 'zzz')), { kind: 'ReplicaSet', name: 'checkout-abc' }, 'hash does not match the name')
  const job = (name: string) => ({ ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: 'u', controller: true }] })
  t.same(workloadOf(job('nightly-28345120')), { kind: 'CronJob', name: 'nightly' })
  t.same(workloadOf(job('migrate')), { kind: 'Job', name: 'migrate' })
  // OpenShift: a DeploymentConfig's pods belong to its ReplicationController <dc>-<version>
  const rc = (name: string, dc?: string) => ({
    generateName: `${name}-`,
    annotations: (dc ? { 'openshift.io/deployment-config.name': dc } : {}) as Record<string, string>,
    ownerReferences: [{ apiVersion: 'v1', kind: 'ReplicationController', name, uid: 'u', controller: true }],
  })
  t.same(workloadOf(rc('frontend-3', 'frontend')), { kind: 'DeploymentConfig', name: 'frontend' })
  t.same(workloadOf(rc('frontend-3')), { kind: 'ReplicationController', name: 'frontend-3' }, 'a bare ReplicationController')
  t.same(workloadOf(rc('other-3', 'frontend')), { kind: 'ReplicationController', name: 'other-3' }, 'the annotation names another')
  t.same(workloadOf(job('migrate-2')), { kind: 'Job', name: 'migrate-2' })
  t.same(workloadOf({ ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: 'u', controller: true }] }), { kind: 'StatefulSet', name: 'db' })
  t.same(
    workloadOf({
      ownerReferences: [
        { apiVersion: 'v1', kind: 'Other', name: 'not-controller', uid: 'a' },
        { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'agent', uid: 'b', controller: true },
      ],
    }),
    { kind: 'DaemonSet', name: 'agent' },
    'the controller owner wins',
  )
  t.same(workloadOf({ ownerReferences: [{ apiVersion: 'x/v1', kind: 'Thing', name: 't', uid: 'a' }] }), { kind: 'Thing', name: 't' })
  t.same(workloadOf({ name: 'solo' }), { kind: 'Pod', name: 'solo' })
  t.same(workloadOf({ generateName: 'gen-' }), { kind: 'Pod', name: 'gen' })
  t.same(workloadOf(undefined), { kind: 'Pod', name: '' })
})

t.test('name syntax', async (t) => {
  t.ok(isQualifiedName('app.io/label'))
  t.ok(isQualifiedName('a'))
  t.ok(isQualifiedName('example.com/A_b.c-d'))
  for (const bad of ['', '/a', 'a/', 'a/b/c', 'UPPER.io/x', '-a', 'a-', 'x'.repeat(64), 'a b']) t.notOk(isQualifiedName(bad), bad)
  t.ok(isLabelValue(''))
  t.ok(isLabelValue('app.io-value'))
  t.notOk(isLabelValue('-x'))
  t.notOk(isLabelValue('x'.repeat(64)))
  t.ok(isDns1035Label('mysql'))
  t.notOk(isDns1035Label('3mysql'))
  t.ok(isPortName('http'))
  t.ok(isPortName('grpc-web'))
  t.notOk(isPortName('8080'), 'at least one letter')
  t.notOk(isPortName('a--b'))
  t.notOk(isPortName('sixteen-chars-xx'))
})
