// Issue 24, findings 1, 4 and 5 (metadata size): what one tenant may claim. Each test names
// what it closes; every "denied" below was admitted by the code before issue 24.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { admit } from '../../src/admission/review.js'
import { resolveSettings } from '../../src/admission/settings.js'
import { normaliseServiceName, registrationFindings, registrationProblems } from '../../src/admission/tenancy.js'
import { derivedServiceName, workloadOf } from '../../src/admission/workload.js'
import { PolicyError } from '../../src/lib/errors.js'
import { dubboProvider, toFullString } from '../../src/registry/dubbo.js'
import { FACTS_ENABLED, makePod, makePolicy, makeRequest } from '../helpers/fixtures.js'

const ZK = { name: 'zk', type: 'zookeeper', connect: 'zk:2181', allowInsecure: true, layout: 'dubbo' }
const dubboPolicy = (tenancy: Record<string, unknown> = {}) =>
  makePolicy({ cluster: { name: 'test' }, registry: { backends: [ZK] }, tenancy, tenantOverrides: { allowed: ['metadata', 'service'] } })

const OWNED = dubboPolicy({
  interfaces: [
    { namespaces: ['shop', 'shop-*'], interfaces: ['com.acme.Orders', 'com.acme.orders.*'] },
    { namespaces: ['*'], interfaces: ['*'] },
    { namespaces: ['billing'], interfaces: ['com.acme.billing.*'] },
  ],
})

const dubboPod = (metadata: Record<string, string>, over: { labels?: Record<string, string>; ns?: string } = {}): V1Pod =>
  makePod({
    metadata: { name: 'p-1', namespace: over.ns ?? 'shop', labels: over.labels ?? { app: 'orders' }, annotations: { 'enlist.io/metadata': JSON.stringify(metadata) } },
    spec: { containers: [{ name: 'app', image: 'x', ports: [{ name: 'dubbo', containerPort: 20880 }] }] },
  })

const settle = (pod: V1Pod, policy = OWNED, ns = pod.metadata?.namespace ?? 'shop') => resolveSettings(pod, ns, workloadOf(pod.metadata), policy, undefined)
const denial = (r: ReturnType<typeof settle>): string => (r.ok ? `admitted: ${JSON.stringify(r.settings.service)}` : r.error.message)

t.test('finding 1: a namespace provides only the interfaces the policy assigns it', async (t) => {
  t.equal(settle(dubboPod({ interface: 'com.acme.Orders' })).ok, true, 'shop owns com.acme.Orders')
  t.equal(settle(dubboPod({ interface: 'com.acme.orders.Refunds' }, { ns: 'shop-eu' }), OWNED, 'shop-eu').ok, true, 'a namespace glob, a package prefix')
  t.equal(settle(dubboPod({ interface: 'com.acme.orders.v2.Refunds' })).ok, true, 'deeper below the package')
  t.equal(settle(dubboPod({ interface: 'com.acme.Stock' }, { ns: 'evil' }), OWNED, 'evil').ok, true, 'what no rule keeps is everyone\'s ("*")')

  const evil = settle(dubboPod({ interface: 'com.acme.Orders' }, { ns: 'evil' }), OWNED, 'evil')
  t.equal(evil.ok, false, 'another namespace claims an owned interface')
  if (!evil.ok) t.equal(evil.reason, 'interface-not-owned')
  t.match(denial(evil), /the Dubbo interface "com\.acme\.Orders" is not assigned to namespace evil \(policy field tenancy\.interfaces\)/)
  t.match(denial(settle(dubboPod({ interface: 'com.acme.billing.Invoices' }))), /"com\.acme\.billing\.Invoices" is not assigned to namespace shop/, 'the more specific rule decides')
  t.match(denial(settle(dubboPod({ interface: 'com.acme.orders.Refunds' }, { ns: 'shopping' }), OWNED, 'shopping')), /not assigned to namespace shopping/, '"shop-*" is not "shop*"')

  // a package pattern is below the package: the package name itself is not in it
  const pkgOnly = dubboPolicy({ interfaces: [{ namespaces: ['shop'], interfaces: ['com.acme.orders.*'] }] })
  t.match(denial(settle(dubboPod({ interface: 'com.acme.orders' }), pkgOnly)), /not assigned to namespace shop/)
  t.match(denial(settle(dubboPod({ interface: 'com.acme.ordersX' }), pkgOnly)), /not assigned/, 'a prefix is a package, not a string prefix')
})

t.test('finding 1: "*" is never an interface, and a Dubbo layout with no owners fails closed', async (t) => {
  const star = settle(dubboPod({ interface: '*' }))
  t.match(denial(star), /"interface" "\*" is not one interface: Dubbo consumers read "\*" as every interface/)
  t.match(denial(settle(dubboPod({ interface: 'com.*' }))), /is not one interface/)
  const closed = dubboPolicy()
  t.match(denial(settle(dubboPod({ interface: 'com.acme.Orders' }), closed)), /tenancy\.interfaces is empty\), so a Dubbo layout admits none/)
  t.same(closed.notes.length, 1, 'policy validate has a note on how to allow them')
  t.match(closed.notes[0], /namespaces: \["\*"\], interfaces: \["\*"\]/)
  const single = dubboPolicy({ interfaces: [{ namespaces: ['*'], interfaces: ['*'] }] })
  t.equal(settle(dubboPod({ interface: 'com.acme.Orders' }, { ns: 'any' }), single, 'any').ok, true, 'the single-tenant choice')
  t.same(single.notes, [])
  t.same(makePolicy().notes, [], 'no Dubbo layout: no note')
})

t.test('finding 1: only provider URLs: routing keys and protocols refused at admission', async (t) => {
  for (const key of ['category', 'rule', 'force', 'runtime', 'priority', 'enabled', 'disabled', 'router', 'dubbo.tag']) {
    const r = settle(dubboPod({ interface: 'com.acme.Orders', [key]: 'x' }))
    t.match(denial(r), new RegExp(`metadata key "${key.replace('.', '\\.')}" is read by Dubbo as routing or configuration`), key)
    if (!r.ok) t.equal(r.reason, 'metadata-key')
  }
  t.match(denial(settle(dubboPod({ interface: 'com.acme.Orders', category: 'routers', force: 'true', rule: '=>host=6.6.6.6' }))), /keys "category", "force", "rule" are read by Dubbo/)
  t.match(denial(settle(dubboPod({ interface: 'com.acme.Orders', protocol: 'override' }))), /"protocol" "override" is not allowed; accepted \(tenancy\.dubbo\.protocols\): dubbo, tri/)
  t.match(denial(settle(dubboPod({ interface: 'com.acme.Orders', protocol: 'rest' }))), /"protocol" "rest" is not allowed/)
  const rest = dubboPolicy({ interfaces: [{ namespaces: ['*'], interfaces: ['*'] }], dubbo: { protocols: ['dubbo', 'rest'] } })
  t.equal(settle(dubboPod({ interface: 'com.acme.Orders', protocol: 'rest', port: 'dubbo' }), rest).ok, true, 'a protocol the policy allows')
  t.equal(settle(dubboPod({ interface: 'com.acme.Orders', category: 'x' }), makePolicy({ tenantOverrides: { allowed: ['metadata'] } })).ok, true, 'no Dubbo layout: the key is the record\'s')
})

t.test('finding 1: the URL carries provider parameters only, the record keeps the rest', async (t) => {
  const input = { uid: 'u', namespace: 'shop', pod: 'p', service: 'orders', registeredAt: '2026-11-22T03:00:00Z', host: '10.0.0.1', port: 20880 }
  const url = toFullString(dubboProvider({ ...input, metadata: { interface: 'com.acme.Orders', version: '1', category: 'routers', rule: 'x', force: 'true', owner: 'team-a', 'cost-center': '42' } }))
  t.notMatch(url, /category=|rule=|force=|owner=|cost-center=/, 'before issue 24 all of these were URL parameters')
  t.match(url, /version=1/)
  const custom = toFullString(dubboProvider({ ...input, metadata: { interface: 'com.acme.Orders', owner: 'team-a', category: 'routers' }, parameters: new Set(['owner', 'category']) }))
  t.match(custom, /owner=team-a/, 'the policy\'s list')
  t.notMatch(custom, /category=/, 'a routing key never, whatever the list says')
  t.throws(() => dubboProvider({ ...input, metadata: { interface: 'com.acme.Orders', protocol: 'override' } }), { message: /makes a Dubbo routing rule or configurator/ })
})

t.test('policy: tenancy patterns and lists are checked', async (t) => {
  const bad = (tenancy: Record<string, unknown>): string => {
    try {
      dubboPolicy(tenancy)
      return 'valid'
    } catch (err) {
      t.type(err, PolicyError)
      return (err as Error).message
    }
  }
  t.match(bad({ interfaces: [{ namespaces: ['Shop'], interfaces: ['a.B'] }] }), /\/tenancy\/interfaces\/0\/namespaces\/0: "Shop" is not a namespace pattern/)
  t.match(bad({ interfaces: [{ namespaces: ['shop'], interfaces: ['com.*.Orders'] }] }), /\/tenancy\/interfaces\/0\/interfaces\/0: "com\.\*\.Orders" is not an interface pattern/)
  t.match(bad({ interfaces: [{ namespaces: ['shop'], interfaces: ['com.acme*'] }] }), /is not an interface pattern/)
  t.match(bad({ interfaces: [{ namespaces: [], interfaces: ['a.B'] }] }), /namespaces: must NOT have fewer than 1 items/)
  t.match(bad({ dubbo: { protocols: ['override'] } }), /\/tenancy\/dubbo\/protocols\/0: "override" makes Dubbo routing rules or configurators/)
  t.match(bad({ dubbo: { parameters: ['category'] } }), /\/tenancy\/dubbo\/parameters\/0: "category" is a key Dubbo reads as routing/)
  t.match(bad({ dubbo: { parameters: ['side'] } }), /"side" is set by enlist itself/)
  t.match(bad({ enforcement: 'audit' }), /\/tenancy\/enforcement: must be one of "enforce", "warn"/)
  t.match(bad({ metadata: { maxBytes: 10 } }), /\/tenancy\/metadata\/maxBytes: must be >= 256/)
})

t.test('finding 4: explicit service names must be DNS-1123 labels', async (t) => {
  const pod = (labels: Record<string, string>, annotations: Record<string, string> = {}) =>
    makePod({ metadata: { name: 'p', namespace: 'shop', labels, annotations }, spec: { containers: [{ name: 'app', image: 'x' }] } })
  const plain = makePolicy({ tenantOverrides: { allowed: ['service'] } })
  t.match(denial(settle(pod({}, { 'enlist.io/service': 'orders.v2' }), plain)), /^annotation enlist\.io\/service: "orders\.v2" is invalid: not a service name; accepted: a DNS-1123 label/)
  t.match(denial(settle(pod({ 'app.kubernetes.io/name': 'Orders_V2' }), plain)), /^label app\.kubernetes\.io\/name: "Orders_V2" is invalid/)
  t.match(denial(settle(pod({ app: 'a'.repeat(64) }), plain)), /^label app: .* is invalid: not a service name/)
  const ok = settle(pod({ app: 'Bad.Name' }, { 'enlist.io/service': 'orders' }), plain)
  t.equal(ok.ok && ok.settings.service, 'orders', 'the annotation is the name: a label it overrides is not read')
  const r = settle(pod({}, { 'enlist.io/service': 'x>y' }), plain)
  if (!r.ok) t.equal(r.reason, 'service-name')
})

t.test('finding 4: names derived from owner references are normalised, or refused when nothing is left', async (t) => {
  const owned = (name: string, labels: Record<string, string> = {}) =>
    makePod({
      metadata: { generateName: `${name}-`, namespace: 'shop', labels, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name, uid: 'u', controller: true }] },
      spec: { containers: [{ name: 'app', image: 'x' }] },
    })
  const plain = makePolicy()
  const name = (pod: V1Pod): string => {
    const r = settle(pod, plain)
    return r.ok ? r.settings.service : `denied: ${r.error.message}`
  }
  t.equal(name(owned('orders.v2-7d9c5b6f4', { 'pod-template-hash': '7d9c5b6f4' })), 'orders-v2', 'a Deployment with a dot')
  t.equal(name(owned('Orders_V2')), 'orders-v2')
  t.equal(name(owned('..x')), 'x', 'no "-" left at either end')
  const long = name(owned('a'.repeat(5000)))
  t.equal(long.length <= 63, true, `at most 63: ${long.length}`)
  t.match(long, /^a{54}-[0-9a-f]{8}$/, 'cut, with a hash of the whole')
  t.not(name(owned('a'.repeat(5000))), name(owned('a'.repeat(5001))), 'two long names stay apart')
  t.match(name(owned('***')), /^denied: the service name enlist derives from the pod's ReplicaSet "\*\*\*" is empty once normalised/)
  t.match(name(owned('\u0000')), /^denied: .*empty once normalised/)
  t.equal(derivedServiceName({ kind: 'Pod', name: 'web' }), 'web')
  t.equal(normaliseServiceName('-A.b_C-'), 'a-b-c')
  for (const n of ['x'.repeat(63), 'x'.repeat(64), 'x-'.repeat(100)]) t.ok(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(normaliseServiceName(n)) && normaliseServiceName(n).length <= 63, n.slice(0, 10))
})

t.test('finding 5 (metadata): size and character set at the door', async (t) => {
  const plain = makePolicy({ tenantOverrides: { allowed: ['metadata'] } })
  const pod = (md: Record<string, string>) => dubboPod(md, { labels: { app: 'orders' } })
  t.equal(settle(pod({ note: 'x'.repeat(8000) }), plain).ok, true, 'under 8 KiB')
  const big = settle(pod({ note: 'x'.repeat(9000) }), plain)
  t.match(denial(big), /the metadata is 90\d\d bytes as JSON, more than the 8192 the policy allows \(tenancy\.metadata\.maxBytes\)/)
  if (!big.ok) t.equal(big.reason, 'metadata-size')
  t.match(denial(settle(pod({ 'a/b': '1' }), plain)), /metadata key "a\/b" is invalid; accepted: letters, digits/)
  t.match(denial(settle(pod({ ['k'.repeat(64)]: '1' }), plain)), /metadata key "k+" is invalid/)
  t.match(denial(settle(pod({ note: 'a\u0007b' }), plain)), /the value of metadata key "note" has control or bidirectional characters/)
  t.match(denial(settle(pod({ note: 'evil\u202Egnp.exe' }), plain)), /control or bidirectional/)
  t.equal(settle(pod({ note: 'grüße, 東京' }), plain).ok, true, 'printable text of any script')
})

t.test('tenancy.enforcement: warn admits what would be denied, with a warning and a reason to count', async (t) => {
  const warn = dubboPolicy({ enforcement: 'warn', interfaces: [{ namespaces: ['shop'], interfaces: ['com.acme.Orders'] }] })
  const r = settle(dubboPod({ interface: 'com.acme.Orders', category: 'routers' }, { ns: 'evil', labels: { app: 'Bad.Name' } }), warn, 'evil')
  t.equal(r.ok, true)
  if (!r.ok) return
  t.same(r.staged.map((s) => s.reason).sort(), ['interface-not-owned', 'metadata-key', 'service-name'])
  t.equal(r.settings.service, 'bad-name', 'an explicit name is admitted normalised, never as written')
  t.ok(r.warnings.some((w) => /tenancy\.enforcement is warn: this pod would be denied: the Dubbo interface "com\.acme\.Orders" is not assigned to namespace evil/.test(w)))
  t.match(denial(settle(dubboPod({ interface: 'com.acme.Orders', protocol: 'override' }), warn)), /"protocol" "override" is not allowed/, 'a protocol is never staged')
  t.match(denial(settle(dubboPod({ interface: '*' }), warn)), /is not one interface/, 'nor "*"')
})

t.test('admission denies through admit(), naming the interface, the namespace and the field', async (t) => {
  const out = admit(makeRequest(dubboPod({ interface: 'com.acme.Orders' }, { ns: 'evil' })), OWNED, FACTS_ENABLED)
  t.equal(out.verdict, 'denied')
  t.match(out.response.status?.message, /annotation enlist\.io\/metadata: .* is invalid: the Dubbo interface "com\.acme\.Orders" is not assigned to namespace evil \(policy field tenancy\.interfaces\)/)
  const fine = admit(makeRequest(dubboPod({ interface: 'com.acme.Orders' })), OWNED, FACTS_ENABLED)
  t.equal(fine.verdict, 'injected')
})

t.test('registrationProblems: a sealed decision checked again under the policy of now', async (t) => {
  const d = { namespace: 'shop', service: 'orders', metadata: { interface: 'com.acme.Orders' } }
  t.equal(registrationProblems(d, OWNED), undefined)
  t.match(registrationProblems({ ...d, namespace: 'evil' }, OWNED), /not assigned to namespace evil \(policy field tenancy\.interfaces\)/)
  t.match(registrationProblems({ ...d, service: 'orders.v2' }, OWNED), /service "orders\.v2" is not a service name; accepted: a DNS-1123 label/, 'sealed before the upgrade')
  t.match(registrationProblems({ ...d, metadata: { interface: 'com.acme.Orders', note: 'x'.repeat(9000) } }, OWNED), /tenancy\.metadata\.maxBytes/)
  t.match(registrationProblems({ ...d, metadata: { interface: 'com.acme.Orders', rule: 'x' } }, OWNED), /"rule" is read by Dubbo/)
  t.equal(registrationProblems({ ...d, metadata: { rule: 'x' } }, makePolicy()), undefined, 'no Dubbo layout: routing keys are just metadata')
  const warn = dubboPolicy({ enforcement: 'warn' })
  t.equal(registrationProblems(d, warn), undefined, 'warn: staged findings do not refuse')
  t.equal(registrationFindings(d, warn)[0]?.reason, 'interface-not-owned', 'but are reported')
  t.match(registrationProblems({ ...d, service: 'Bad' }, warn), /not a service name/, 'an invalid name is refused even under warn')
})
