// RegistrationService against an in-memory apiserver and backends (test/helpers/fake-*.ts),
// with the real token authenticator, key store, pod cache, backend set (and its kubernetes
// backend), event recorder and metrics: what a pod may register, what is written where,
// what is refused and with which code, and what a failing backend or apiserver costs.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { newKey } from '../../src/decision/keyring.js'
import { DependencyCache } from '../../src/registration/dependencies.js'
import { TokenAuthenticator } from '../../src/registration/auth.js'
import { overrideProblems, type RegistrationDeps, RegistrationService } from '../../src/registration/service.js'
import { StaticNamespaces } from '../../src/kube/namespaces.js'
import { makePolicy } from '../helpers/fixtures.js'
import { EnlistError } from '../../src/lib/errors.js'
import { STATUS_ANNOTATION } from '../../src/names.js'
import { decodeRecord } from '../../src/registry/record.js'
import { conditionOf, enlistedPod, eventsOf, type FakeCluster, fakeCluster, fakeToken, metricValue, sealedStatus } from '../helpers/fake-cluster.js'

async function setup(t: { teardown(fn: () => unknown): void }, more: Partial<RegistrationDeps> = {}): Promise<{ c: FakeCluster; service: RegistrationService }> {
  const c = await fakeCluster()
  const service = new RegistrationService({
    ...more,
    client: c.kube.client,
    auth: new TokenAuthenticator(c.kube.client, c.metrics, undefined, undefined, c.log),
    pods: c.pods,
    dependencies: new DependencyCache(c.kube, c.log), // never started: no dependencies are judged
    registry: c.registry,
    events: c.events,
    keys: c.keys,
    metrics: c.metrics,
    log: c.log,
    backendBudgetMs: 300,
  })
  t.teardown(() => c.stop())
  return { c, service }
}

const register = (s: RegistrationService, token: string | undefined) => s.register(token === undefined ? undefined : `Bearer ${token}`, { waitMs: 0 })

/** The EnlistError a call rejects with; throws (failing the test) if it resolves or throws anything else. */
async function refusal(p: Promise<unknown>): Promise<EnlistError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(err instanceof EnlistError)) throw new Error(`expected an EnlistError, got ${err === undefined ? 'success' : String(err)}`)
  return err
}

const noBackendCalls = (c: FakeCluster): number => c.backends.reduce((n, b) => n + b.calls.length, 0)

t.test('a pod with a sealed decision registers exactly what was decided, everywhere, and turns its condition True', async (t) => {
  const { c, service } = await setup(t)
  // what the tenant wrote on the pod itself must not matter: only the sealed decision does
  const p = enlistedPod(c, {
    decision: { service: 'orders', metadata: { interface: 'com.acme.Orders', group: 'g1' } },
    annotations: { 'enlist.io/service': 'payments', 'enlist.io/metadata': '{"interface":"com.evil.Steal"}' },
  })

  const record = await register(service, p.token)
  t.equal(record.service, 'orders', 'the decided service, not the annotation the tenant wrote')
  t.same(record.metadata, { interface: 'com.acme.Orders', group: 'g1' }, 'the decided metadata, nothing else')
  t.match(record, { uid: p.uid, namespace: 'shop', pod: p.pod.metadata!.name, ip: '10.0.0.10', ips: ['10.0.0.10'], hostIP: '192.168.0.1', node: 'node-1', ports: [{ name: 'p8080', port: 8080, protocol: 'TCP' }] }, 'the pod\'s own identity and addresses')

  for (const b of c.backends) t.same(b.records.get(p.uid), record, `backend ${b.name} holds the record returned`)
  const stored = c.kube.peek<V1Pod>(p.path)!
  t.equal(record.cluster, 'test', 'the record names the cluster that wrote it')
  const { cluster: _cluster, ...flat } = record
  t.same(decodeRecord(stored.metadata!.annotations![c.recordAnnotation]!), flat, 'the kubernetes backend wrote the same record onto the pod (its flat form has no cluster: the pod is the cluster\'s own)')
  t.equal(stored.metadata!.labels!['app.io/label'], 'app.io-value', 'and its discovery label')

  const cond = conditionOf(c, p.path)
  t.match(cond, { status: 'True', reason: 'Registered', message: 'registered with kubernetes, cmdb, etcd' }, 'the condition names every backend')
  t.equal(cond?.lastTransitionTime, record.registeredAt, 'registeredAt is the condition\'s transition time')
  await new Promise((r) => setImmediate(r))
  t.match(eventsOf(c, p.uid), [{ type: 'Normal', reason: 'Registered', message: /registered as orders at 10\.0\.0\.10 with kubernetes, cmdb, etcd/ }])
})

t.test('registering again is idempotent: the same record and registeredAt, no backend write, the condition not written again', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c)
  const first = await register(service, p.token)
  const conditionPatches = c.kube.callsTo('PATCH', /\/status$/).length
  const rv = c.kube.peek<V1Pod>(p.path)!.metadata!.resourceVersion
  await new Promise((r) => setTimeout(r, 1100)) // registeredAt has second precision: a new one would differ now
  const second = await register(service, p.token)
  t.same(second, first, 'the same record, registeredAt included')
  for (const b of c.backends) {
    t.equal(b.records.size, 1, `${b.name}: one entry`)
    t.same(b.records.get(p.uid), first, `${b.name}: unchanged`)
    t.equal(b.count('register'), 1, `${b.name}: not written again: a registered pod at the same IP is answered from what it holds`)
  }
  t.equal(c.kube.callsTo('PATCH', /\/status$/).length, conditionPatches, 'the condition is not patched again')
  t.equal(c.kube.peek<V1Pod>(p.path)!.metadata!.resourceVersion, rv, 'the kubernetes backend\'s merge of the same record changes nothing')
  await new Promise((r) => setImmediate(r))
  t.equal(eventsOf(c, p.uid).filter((e) => e.reason === 'Registered').length, 1, 'one Registered event')
})

t.test('a pod without a decision of enlist\'s cannot register: ENLIST_FORBIDDEN, counted by reason, nothing written', async (t) => {
  const { c, service } = await setup(t)
  const good = enlistedPod(c)
  const sealed = good.pod.metadata!.annotations![STATUS_ANNOTATION]!
  const foreignKey = newKey(Date.now() - 1000, Date.now() - 1000)
  const cases: Array<{ what: string; status: string | null; reason: string; message: RegExp }> = [
    { what: 'no status annotation', status: null, reason: 'unsealed', message: /no enlist\.io\/status annotation: enlist did not inject it/ },
    { what: 'a status with no seal', status: sealedStatus(good.decision, undefined), reason: 'unsealed', message: /it has no seal/ },
    { what: 'not JSON', status: 'registered, trust me', reason: 'malformed', message: /it is not JSON; only enlist writes this annotation/ },
    { what: 'forged: sealed with a key enlist does not hold', status: sealedStatus(good.decision, foreignKey), reason: 'unknown-key', message: /which enlist does not hold; the key was retired or revoked: recreate the pod/ },
    { what: 'tampered: the service changed after sealing', status: sealed.replace('"service":"orders"', '"service":"payments"'), reason: 'bad-seal', message: /its seal does not match its content; only enlist writes this annotation/ },
    { what: 'tampered: a forged MAC', status: sealed.replace(/"mac":"[^"]+"/, `"mac":"${'A'.repeat(43)}"`), reason: 'bad-seal', message: /seal does not match/ },
  ]
  for (const k of cases) {
    const p = enlistedPod(c, { status: k.status })
    const before = await metricValue(c.metrics.trustRejections, { where: 'registration', reason: k.reason })
    const err = await refusal(register(service, p.token))
    t.equal(err.code, 'ENLIST_FORBIDDEN', `${k.what}: ENLIST_FORBIDDEN`)
    t.equal(err.statusCode, 403, `${k.what}: 403`)
    t.match(err.message, k.message, `${k.what}: says why`)
    t.equal(await metricValue(c.metrics.trustRejections, { where: 'registration', reason: k.reason }), before + 1, `${k.what}: counted as ${k.reason}`)
    t.equal(conditionOf(c, p.path), undefined, `${k.what}: no condition`)
  }
  t.equal(noBackendCalls(c), 0, 'no backend was called for any of them')
  t.equal(c.kube.callsTo('PATCH').length, 0, 'nothing was patched')
  t.equal(c.kube.callsTo('GET', /\/secrets\/enlist-decision-keys$/).length, 1, 'an unknown key made the Secret be read once more, in case it was new')
})

t.test('a token may register only the pod it is bound to, with the service account decided for it', async (t) => {
  const { c, service } = await setup(t)

  await t.test('no token, and a token the apiserver rejects: 401', async (t) => {
    const p = enlistedPod(c)
    t.match(await refusal(register(service, undefined)), { code: 'ENLIST_UNAUTHENTICATED', statusCode: 401, message: /missing bearer token/ })
    t.match(await refusal(register(service, fakeToken('nobody'))), { code: 'ENLIST_UNAUTHENTICATED', statusCode: 401, message: /rejected by the apiserver/ })
    t.equal(conditionOf(c, p.path), undefined)
  })

  await t.test('another service account than the decision\'s', async (t) => {
    const p = enlistedPod(c, { serviceAccount: 'orders' })
    c.kube.tokens.set(p.token, { namespace: 'shop', serviceAccount: 'default', pod: p.pod.metadata!.name!, uid: p.uid })
    const err = await refusal(register(service, p.token))
    t.match(err, { code: 'ENLIST_FORBIDDEN', statusCode: 403, message: /decided its registration for service account orders, but the token is for default/ })
    t.equal(await metricValue(c.metrics.trustRejections, { where: 'registration', reason: 'wrong-service-account' }), 1, 'counted as wrong-service-account')
  })

  await t.test('a token bound to a pod of the same name but another uid (a namesake that replaced it)', async (t) => {
    const p = enlistedPod(c)
    c.kube.tokens.set(p.token, { namespace: 'shop', serviceAccount: 'orders', pod: p.pod.metadata!.name!, uid: 'uid-of-the-old-pod' })
    t.match(await refusal(register(service, p.token)), { code: 'ENLIST_FORBIDDEN', message: /token is bound to pod uid uid-of-the-old-pod, but shop\/orders-\d+ is uid-\d+/ })
  })

  await t.test('a decision copied onto a pod in another namespace', async (t) => {
    const original = enlistedPod(c, { namespace: 'shop' })
    const copy = enlistedPod(c, { namespace: 'other', status: original.pod.metadata!.annotations![STATUS_ANNOTATION]! })
    const err = await refusal(register(service, copy.token))
    t.match(err, { code: 'ENLIST_FORBIDDEN', message: /it was decided for namespace shop, not other/ })
    t.equal(await metricValue(c.metrics.trustRejections, { where: 'registration', reason: 'wrong-namespace' }), 1, 'counted as wrong-namespace')
  })

  await t.test('a pod enlist does not manage', async (t) => {
    const p = enlistedPod(c, { managed: false })
    t.match(await refusal(register(service, p.token)), { code: 'ENLIST_FORBIDDEN', message: /not managed by enlist \(no enlist\.io\/managed=true label\)/ })
  })

  t.equal(noBackendCalls(c), 0, 'none of them reached a backend')

  await t.test("B's token registers B, never A", async (t) => {
    const a = enlistedPod(c)
    const b = enlistedPod(c)
    const record = await register(service, b.token)
    t.equal(record.uid, b.uid)
    for (const be of c.backends) t.same([...be.records.keys()], [b.uid], `${be.name} holds B only`)
    t.equal(conditionOf(c, a.path), undefined, 'A is untouched')
  })
})

t.test('the pod itself: gone, terminating, unreadable', async (t) => {
  const { c, service } = await setup(t)

  const gone = enlistedPod(c)
  c.kube.remove(gone.path)
  t.match(await refusal(register(service, gone.token)), { code: 'ENLIST_FORBIDDEN', statusCode: 403, message: /^pod shop\/orders-\d+ does not exist$/ }, 'a pod that is gone (404): a clear error, not a 503 to retry')

  const terminating = enlistedPod(c)
  c.kube.edit<V1Pod>(terminating.path, (p) => (p.metadata!.deletionTimestamp = new Date()))
  t.match(await refusal(register(service, terminating.token)), { code: 'ENLIST_CONFLICT', statusCode: 409, message: /is being deleted/ }, 'a terminating pod: 409')

  const p = enlistedPod(c)
  c.kube.fail({ verb: 'GET', path: p.path }, 500)
  const err = await refusal(register(service, p.token))
  t.match(err, { code: 'ENLIST_UNAVAILABLE', statusCode: 503, message: /^cannot read pod shop\/orders-\d+ from the apiserver \(enlist log ref [0-9a-f]{8}\)$/ }, 'the apiserver failing: 503, the registrar retries')
  const ref = /log ref ([0-9a-f]{8})/.exec(err.message)![1]
  t.match(c.logs.find((l) => l.ref === ref), { err: /500 InternalError: injected failure/ }, 'the apiserver\'s answer is in enlist\'s log under the reference, not in the tenant\'s')
  t.equal(noBackendCalls(c), 0, 'none reached a backend')
  t.same((await register(service, p.token)).uid, p.uid, 'the retry succeeds once the apiserver answers')
})

t.test('a backend that fails briefly is retried within the request; nothing is lost', async (t) => {
  const { c, service } = await setup(t)
  const [cmdb, etcd] = c.backends as [(typeof c.backends)[0], (typeof c.backends)[0]]
  const p = enlistedPod(c)
  cmdb.fail('register', 2)
  const record = await register(service, p.token)
  t.equal(cmdb.count('register'), 3, 'cmdb: two failures, then the write that succeeded')
  t.same(cmdb.records.get(p.uid), record, 'cmdb holds the record')
  t.same(etcd.records.get(p.uid), record, 'etcd holds the record')
  t.match(conditionOf(c, p.path), { status: 'True' })
  t.ok(c.logs.some((l) => l.msg === 'backend call failed; retrying' && l.backend === 'cmdb'), 'the retries are logged')
})

t.test('a backend that stays down: 503 with a log reference, no condition; the registrar\'s retry completes it', async (t) => {
  const { c, service } = await setup(t)
  const [cmdb, etcd] = c.backends as [(typeof c.backends)[0], (typeof c.backends)[0]]
  const p = enlistedPod(c)
  cmdb.fail('register', Infinity, { message: 'connect ECONNREFUSED 10.9.9.9:443 (secret-token-in-url)' })
  const err = await refusal(register(service, p.token))
  t.match(err, { code: 'ENLIST_BACKEND_FAILED', statusCode: 503, message: /^the registry could not be written \(backend cmdb\) \(enlist log ref [0-9a-f]{8}\)$/ })
  t.notMatch(err.message, /ECONNREFUSED|secret-token/, 'what the backend said does not reach the tenant')
  const ref = /log ref ([0-9a-f]{8})/.exec(err.message)![1]
  t.match(c.logs.find((l) => l.ref === ref), { err: /secret-token-in-url/ }, 'it is in enlist\'s log under the reference')
  t.ok(cmdb.count('register') >= 2, `retried within the request's budget (${cmdb.count('register')} attempts)`)
  t.equal(conditionOf(c, p.path), undefined, 'no condition: the pod is not registered')
  await new Promise((r) => setImmediate(r))
  t.match(eventsOf(c, p.uid), [{ type: 'Warning', reason: 'RegistrationFailed', message: /backend cmdb.*the registrar retries/ }])

  // a second failure within the event window records no second event
  await refusal(register(service, p.token))
  await new Promise((r) => setImmediate(r))
  t.equal(eventsOf(c, p.uid).filter((e) => e.reason === 'RegistrationFailed').length, 1, 'one RegistrationFailed event, however many retries')

  cmdb.heal()
  const record = await register(service, p.token)
  t.same(cmdb.records.get(p.uid), record, 'cmdb has it once back')
  t.same(etcd.records.get(p.uid), record, 'etcd has it')
  t.match(conditionOf(c, p.path), { status: 'True', reason: 'Registered' })
})

t.test('the condition cannot be set: 503, and the retry sets it', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c)
  c.kube.fail({ verb: 'PATCH', path: `${p.path}/status` }, 500)
  t.match(await refusal(register(service, p.token)), { code: 'ENLIST_UNAVAILABLE', statusCode: 503, message: /^registered, but the pod condition could not be set \(enlist log ref/ })
  t.equal(conditionOf(c, p.path), undefined)
  const record = await register(service, p.token)
  t.match(conditionOf(c, p.path), { status: 'True', lastTransitionTime: record.registeredAt })
})

t.test('a pod deleted while its record was written is deregistered again: 409', async (t) => {
  const { c, service } = await setup(t)
  const [cmdb] = c.backends as [(typeof c.backends)[0]]
  const p = enlistedPod(c)
  // the pod starts terminating while cmdb's write is in flight
  cmdb.before = (op) => {
    if (op === 'register') c.kube.edit<V1Pod>(p.path, (x) => (x.metadata!.deletionTimestamp = new Date()))
  }
  const done = register(service, p.token)
  const err = await refusal(done)
  t.match(err, { code: 'ENLIST_CONFLICT', statusCode: 409, message: /is being deleted/ })
  for (const b of c.backends) t.equal(b.count('register', p.uid), 1, `${b.name}: it was written (the check came after the write)`)
  for (const b of c.backends) t.notOk(b.records.has(p.uid), `${b.name}: no entry left`)
  t.equal(c.kube.peek<V1Pod>(p.path)!.metadata!.annotations![c.recordAnnotation], undefined, 'no record left on the pod')
  t.equal(conditionOf(c, p.path), undefined, 'never marked registered')
})

t.test('decided dependencies cannot be judged before the caches sync: 503', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c, { decision: { dependsOn: ['shop/db'] } })
  t.match(await refusal(register(service, p.token)), { code: 'ENLIST_UNAVAILABLE', statusCode: 503, message: /cannot judge dependencies yet/ })
  t.equal(noBackendCalls(c), 0)
})

t.test('deregistering: the condition first, then every backend; twice is harmless', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c)
  const keep = enlistedPod(c)
  await register(service, p.token)
  await register(service, keep.token)
  await service.deregister(`Bearer ${p.token}`)
  t.match(conditionOf(c, p.path), { status: 'False', reason: 'Deregistered', message: 'deregistered at the pod\'s request' })
  for (const b of c.backends) {
    t.notOk(b.records.has(p.uid), `${b.name}: removed`)
    t.ok(b.records.has(keep.uid), `${b.name}: the other pod's entry stays`)
  }
  t.equal(c.kube.peek<V1Pod>(p.path)!.metadata!.annotations![c.recordAnnotation], undefined, 'the record annotation is removed')
  const statusPatches = c.kube.callsTo('PATCH', `${p.path}/status`).length
  await service.deregister(`Bearer ${p.token}`)
  t.equal(c.kube.callsTo('PATCH', `${p.path}/status`).length, statusPatches, 'the second time does not patch the condition again')
  await new Promise((r) => setImmediate(r))
  t.equal(eventsOf(c, p.uid).filter((e) => e.reason === 'Deregistered').length, 1, 'one Deregistered event')

  const [cmdb] = c.backends as [(typeof c.backends)[0]]
  cmdb.fail('deregister', Infinity)
  t.match(await refusal(service.deregister(`Bearer ${keep.token}`)), { code: 'ENLIST_BACKEND_FAILED', statusCode: 503, message: /the controller retries until it is/ })
  t.match(conditionOf(c, keep.path), { status: 'False', reason: 'Deregistered' }, 'the condition went first, so the controller and sweep know the entry is unwanted')
})

t.test('after deregistration a pod cannot register again: 409 with a message, nothing written', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c)
  await register(service, p.token)
  await service.deregister(`Bearer ${p.token}`)
  const calls = noBackendCalls(c)
  const err = await refusal(register(service, p.token))
  t.match(err, { code: 'ENLIST_CONFLICT', statusCode: 409, message: /was deregistered and cannot register again; recreate the pod/ })
  t.equal(noBackendCalls(c), calls, 'no backend was written')
  t.match(conditionOf(c, p.path), { status: 'False', reason: 'Deregistered' }, 'the condition stays False')
  for (const b of c.backends) t.notOk(b.records.has(p.uid), `${b.name}: no entry came back`)

  // the controller's deregistration (a pod going) leaves the same condition: the same answer
  const q = enlistedPod(c)
  c.kube.put(`${q.path}`, { ...c.kube.peek<V1Pod>(q.path)!, status: { ...c.kube.peek<V1Pod>(q.path)!.status, conditions: [{ type: 'enlist.io/registered', status: 'False', reason: 'Deregistered', message: 'deregistered: the pod is terminating' }] } })
  t.match(await refusal(register(service, q.token)), { statusCode: 409 })
})

t.test('registration re-checks the policy of now: namespace still opted in, overrides still allowed', async (t) => {
  let policy = makePolicy({ tenantOverrides: { allowed: ['metadata'] } })
  const labels = new Map<string, Record<string, string>>([['shop', { 'enlist.io/inject': 'enabled' }]])
  const { c, service } = await setup(t, { policy: () => policy, namespaces: new StaticNamespaces(labels) })
  const ok = enlistedPod(c)
  t.equal((await register(service, ok.token)).service, 'orders', 'opted in, metadata allowed: registers')

  labels.set('shop', { 'enlist.io/inject': 'disabled' })
  const out = enlistedPod(c)
  t.match(await refusal(register(service, out.token)), { code: 'ENLIST_FORBIDDEN', statusCode: 403, message: /cannot register under the current policy: enlist would no longer inject it \(namespace-opt-out\)/ })
  labels.set('shop', { 'enlist.io/inject': 'enabled' })

  policy = makePolicy({ tenantOverrides: { allowed: [] } })
  const meta = enlistedPod(c)
  t.match(await refusal(register(service, meta.token)), { statusCode: 403, message: /the policy no longer lets tenants set metadata \(tenantOverrides\)/ })
  for (const b of c.backends) {
    t.notOk(b.records.has(out.uid), `${b.name}: nothing for the opted-out namespace`)
    t.notOk(b.records.has(meta.uid), `${b.name}: nothing for the disallowed override`)
  }
  t.equal(await metricValue(c.metrics.trustRejections, { where: 'registration', reason: 'policy-changed' }), 2, 'counted')
})

t.test('tenancy at registration: enforce refuses a decision the policy now denies; warn registers it and says so on the pod', async (t) => {
  // a decision sealed before the upgrade: metadata over the size limit of today's policy
  const big = { interface: 'com.acme.Orders', blob: 'x'.repeat(400) }
  let policy = makePolicy({ tenantOverrides: { allowed: ['metadata'] }, tenancy: { metadata: { maxBytes: 256 } } })
  const { c, service } = await setup(t, { policy: () => policy })
  const refused = enlistedPod(c, { decision: { metadata: big } })
  t.match(await refusal(register(service, refused.token)), { statusCode: 403, message: /cannot register under the current policy: .*metadata/ })
  for (const b of c.backends) t.notOk(b.records.has(refused.uid), `${b.name}: nothing written`)

  policy = makePolicy({ tenantOverrides: { allowed: ['metadata'] }, tenancy: { metadata: { maxBytes: 256 }, enforcement: 'warn' } })
  const staged = enlistedPod(c, { decision: { metadata: big } })
  t.equal((await register(service, staged.token)).service, 'orders', 'warn: registered')
  await new Promise((r) => setImmediate(r))
  t.match(eventsOf(c, staged.uid), [{ type: 'Warning', reason: 'TenancyWouldDeny', message: /tenancy.enforcement is warn: under enforce this pod would be refused: .*metadata/ }])
  t.equal(await metricValue(c.metrics.stagedDenials, { where: 'registration', reason: 'metadata-size' }), 1, 'counted')
})

t.test('overrides a decision used, against the policy', async (t) => {
  const d = { namespace: 'shop', serviceAccount: 'a', service: 's', metadata: { k: 'v' }, dependsOn: ['shop/db'], advertise: { cmdb: 'podIP' as const } }
  t.same(overrideProblems(d, { overrides: new Set(['metadata', 'dependsOn', 'advertise'] as const) }), [])
  t.same(overrideProblems(d, { overrides: new Set() }).length, 3)
  t.same(overrideProblems({ ...d, metadata: {}, dependsOn: [], advertise: undefined }, { overrides: new Set() }), [], 'a decision that used none needs none')
})

t.test('a backend failure and an apiserver failure reach the tenant as a log reference, never a host or error text', async (t) => {
  const { c, service } = await setup(t)
  const p = enlistedPod(c)
  const [cmdb] = c.backends as [(typeof c.backends)[0]]
  cmdb.fail('register', Infinity, { message: 'connect ECONNREFUSED https://cmdb.internal.bank:8443/v1' })
  const err = await refusal(register(service, p.token))
  t.match(err.message, /\(enlist log ref [0-9a-f]{8}\)/)
  t.notMatch(err.message, /cmdb\.internal|https?:|ECONNREFUSED/, 'no host, URL or error text in the answer')
  await new Promise((r) => setImmediate(r))
  const events = eventsOf(c, p.uid)
  t.ok(events.some((e) => e.reason === 'RegistrationFailed'), 'the tenant is told')
  for (const e of events) t.notMatch(e.message, /cmdb\.internal|https?:|ECONNREFUSED/, `${e.reason}: no host, URL or error text`)
  t.ok(c.logs.some((l) => JSON.stringify(l).includes('cmdb.internal.bank')), 'the details are in enlist\'s log')

  // the apiserver failing a TokenReview: its error stays in the log too
  const q = enlistedPod(c)
  c.kube.fail({ verb: 'POST', path: /tokenreviews/ }, () => new Error('connect ECONNREFUSED https://10.96.0.1:443/apis/authentication.k8s.io/v1/tokenreviews'))
  const review = await refusal(register(service, q.token))
  t.match(review, { statusCode: 503, message: /cannot review the token with the apiserver \(enlist log ref [0-9a-f]{8}\)/ })
  t.notMatch(review.message, /10\.96|ECONNREFUSED|https?:/, 'no apiserver address or error text')
})
