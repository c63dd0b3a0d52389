// The sealed decision in enlist.io/status: the key ring, its rotation plan, sealing and
// opening, and what admission does with a status it did not write.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { admit } from '../../src/admission/review.js'
import { formatKeyRing, newKey, parseKeyRing, planRotation, activeKey, type KeyRing } from '../../src/decision/keyring.js'
import { canonical, checkInjected, injectionDigest, openPodStatus, openStatus, sealKeyOf, STATUS_VERSION, statusText, type InjectionStatus } from '../../src/decision/status.js'
import { applyOps, decodePatch, FACTS_ENABLED, makePod, makePolicy, makeRequest, TEST_KEYS } from '../helpers/fixtures.js'

const H = 3600_000
const DAY = 24 * H
const policy = makePolicy()

const status = (over: Partial<InjectionStatus['decision']> = {}): Omit<InjectionStatus, 'seal'> => ({
  version: STATUS_VERSION,
  policy: 'p',
  decision: { namespace: 'shop', serviceAccount: 'default', service: 'orders', metadata: { interface: 'com.acme.Orders' }, dependsOn: ['shop/db:5432'], ...over },
  injected: { initContainers: [], volumes: [], env: {}, preStop: [], readinessGates: [], labels: [] },
  kept: [],
})

t.test('the key ring: parse, format, and which key signs', async (t) => {
  const now = Date.parse('2026-11-23T12:00:00Z')
  const a = newKey(now - 40 * DAY, now - 40 * DAY)
  const b = newKey(now - 10 * DAY, now - 10 * DAY)
  const next = newKey(now, now + 120_000)
  const ring: KeyRing = { keys: [a, b, next] }
  const back = parseKeyRing(formatKeyRing(ring))
  t.same(back.keys.map((k) => [k.id, k.secret.toString('hex'), k.activeFrom]), ring.keys.map((k) => [k.id, k.secret.toString('hex'), k.activeFrom]))
  t.equal(activeKey(ring, now)?.id, b.id, 'the newest active key; the next one is not used before its time')
  t.equal(activeKey(ring, now + 120_000)?.id, next.id)
  t.match(a.id, /^k\d{14}-[0-9a-f]{6}$/)

  t.throws(() => parseKeyRing('{'), { code: 'ENLIST_KEYRING_INVALID', message: /not JSON/ })
  t.throws(() => parseKeyRing('{"keys":{}}'), /must be \{"keys": \[\.\.\.\]\}/)
  t.throws(() => parseKeyRing(JSON.stringify({ keys: [{ id: 'Bad Id', secret: 'x', createdAt: 'x', activeFrom: 'x' }] })), /id must be lowercase/)
  const short = { id: 'k1', secret: Buffer.alloc(16).toString('base64'), createdAt: new Date().toISOString(), activeFrom: new Date().toISOString() }
  t.throws(() => parseKeyRing(JSON.stringify({ keys: [short] })), /at least 32 bytes/)
  const ok = { ...short, secret: Buffer.alloc(32, 1).toString('base64') }
  t.throws(() => parseKeyRing(JSON.stringify({ keys: [ok, ok] })), /duplicate id k1/)
})

t.test('rotation: a key ahead of use, old keys kept while pods name them', async (t) => {
  const p = { rotateAfterMs: 30 * DAY, propagationMs: 120_000, retainMs: DAY }
  const now = Date.parse('2026-11-23T12:00:00Z')

  const first = planRotation(undefined, now, p, new Set())
  if (first.action !== 'write') throw new Error('expected a first key')
  t.equal(first.ring.keys.length, 1)
  t.equal(first.ring.keys[0]!.activeFrom, now, 'the very first key signs at once')

  const k1 = first.ring.keys[0]!
  t.same(planRotation({ keys: [k1] }, now + 29 * DAY, p, new Set()), { action: 'none' }, 'not due yet')

  const due = planRotation({ keys: [k1] }, now + 30 * DAY, p, new Set([k1.id]))
  if (due.action !== 'write') throw new Error('expected a rotation')
  const k2 = due.ring.keys.find((k) => k.id === due.added)!
  t.equal(k2.activeFrom, now + 30 * DAY + 120_000, 'the new key waits for every replica to hold it')
  t.equal(activeKey(due.ring, now + 30 * DAY)?.id, k1.id, 'the old key signs meanwhile')
  t.same(planRotation(due.ring, now + 30 * DAY + 60_000, p, new Set()), { action: 'none' }, 'no second key while one is pending')

  const later = now + 30 * DAY + 120_000 + DAY + 1
  t.same(planRotation(due.ring, later, p, new Set([k1.id])), { action: 'none' }, 'a key a live pod names stays')
  const retire = planRotation(due.ring, later, p, new Set([k2.id]))
  if (retire.action !== 'write') throw new Error('expected a retirement')
  t.same(retire.removed, [k1.id])
  t.same(retire.ring.keys.map((k) => k.id), [k2.id])
  t.same(planRotation(due.ring, now + 30 * DAY + 120_000 + 1000, p, new Set()), { action: 'none' }, 'kept a day after it stopped signing')
})

t.test('sealing and opening', async (t) => {
  const k = TEST_KEYS.signing
  const text = statusText(status(), k)
  t.match(text, /,"seal":\{"key":"k\d{14}-[0-9a-f]{6}","mac":"[A-Za-z0-9_-]{43}"\}\}$/, 'the seal is the last member')
  const opened = openStatus(text, TEST_KEYS.ring, 'shop')
  t.ok(opened.ok)
  if (opened.ok) t.same(opened.status.decision, status().decision)
  t.equal(statusText(status(), undefined), JSON.stringify(status()), 'offline: no seal')

  // Any change to the sealed text breaks the seal, however small or harmless it looks.
  const edit = (f: (s: InjectionStatus) => void) => {
    const c = status()
    f(c as InjectionStatus)
    const seal = text.slice(text.lastIndexOf(',"seal":'))
    return openStatus(JSON.stringify(c).slice(0, -1) + seal, TEST_KEYS.ring, 'shop')
  }
  t.match(edit((s) => (s.decision.service = 'payments')), { ok: false, reason: 'bad-seal' }, 'another service')
  t.match(edit((s) => (s.decision.metadata.interface = 'com.acme.Payments')), { ok: false, reason: 'bad-seal' }, 'other metadata')
  t.match(edit((s) => s.decision.dependsOn.pop()), { ok: false, reason: 'bad-seal' }, 'fewer dependencies')
  t.match(edit((s) => (s.injected.labels = ['x'])), { ok: false, reason: 'bad-seal' }, 'the record of what was injected is sealed too')
  t.ok(edit(() => undefined).ok, 'the same content re-sealed by nobody: the seal still holds for the same text')
  const { kept, ...rest } = status()
  const reordered = JSON.stringify({ kept, ...rest }).slice(0, -1) + text.slice(text.lastIndexOf(',"seal":'))
  t.match(openStatus(reordered, TEST_KEYS.ring, 'shop'), { ok: false, reason: 'bad-seal' }, 'the exact text is sealed, not a canonical form')
  t.match(openStatus(text.slice(0, -1) + ',"decision":{"namespace":"shop"}}', TEST_KEYS.ring, 'shop'), { ok: false, reason: 'unsealed' }, 'nothing may follow the seal')
  t.match(openStatus(text.replace(/"key":"[^"]+"/, '"key":"k-other"'), TEST_KEYS.ring, 'shop'), { ok: false, reason: 'unknown-key', key: 'k-other' })
  t.match(openStatus(JSON.stringify(status()), TEST_KEYS.ring, 'shop'), { ok: false, reason: 'unsealed', message: 'it has no seal' })
  t.match(openStatus(text, TEST_KEYS.ring, 'other'), { ok: false, reason: 'wrong-namespace' }, 'bound to its namespace')
  t.match(openStatus(text, { keys: [newKey(Date.now(), Date.now())] }, 'shop'), { ok: false, reason: 'unknown-key' })
  const other = newKey(Date.now(), Date.now())
  const forged = statusText(status(), { ...other, id: k.id })
  t.match(openStatus(forged, TEST_KEYS.ring, 'shop'), { ok: false, reason: 'bad-seal' }, 'a seal made with another key under this key\'s name')
  t.match(openStatus('{"version":1,"policy":"p"}', TEST_KEYS.ring, 'shop'), { ok: false, reason: 'unsealed', message: /version 1 carries no seal/ })
  t.match(openStatus('nonsense', TEST_KEYS.ring, 'shop'), { ok: false, reason: 'malformed' })
  t.match(openStatus('[]', TEST_KEYS.ring, 'shop'), { ok: false, reason: 'unsealed' })

  const pod = { metadata: { namespace: 'shop', annotations: { 'enlist.io/status': text } } }
  t.ok(openPodStatus(pod, TEST_KEYS.ring).ok)
  t.match(openPodStatus({ metadata: { namespace: 'shop' } }, TEST_KEYS.ring), { ok: false, reason: 'unsealed', message: /enlist did not inject it/ })
  t.equal(sealKeyOf(pod), k.id)
  t.equal(sealKeyOf({ metadata: { annotations: { 'enlist.io/status': '{' } } }), undefined)
})

t.test('admission: a status enlist sealed means already injected; any other is the tenant\'s', async (t) => {
  const injected = admit(makeRequest(makePod()), policy, FACTS_ENABLED)
  const pod = applyOps(makePod(), decodePatch(injected.response.patch))
  const again = admit(makeRequest(pod), policy, FACTS_ENABLED)
  t.equal(again.reason, 'already-injected', 'reinvocation changes nothing')
  t.equal(again.response.patch, undefined)

  // The same status on a pod in another namespace is not enlist's decision for it.
  const moved = structuredClone(pod)
  moved.metadata!.namespace = 'other'
  moved.spec!.initContainers = []
  moved.spec!.volumes = []
  const out = admit(makeRequest(moved), policy, FACTS_ENABLED)
  t.equal(out.verdict, 'injected', 'injected afresh')
  const ops = decodePatch(out.response.patch)
  t.ok(ops.some((o) => o.op === 'replace' && o.path === '/metadata/annotations/enlist.io~1status'))
  t.ok(out.response.warnings?.some((w) => /replaced your annotation enlist\.io\/status: it was not written by enlist/.test(w)))
  const fixed = applyOps(moved, ops)
  t.equal(JSON.parse(fixed.metadata!.annotations!['enlist.io/status']!).decision.namespace, 'other')

  // A forged status where enlist does not inject: allowed, and said.
  const forged = makePod({ metadata: { name: 'f', namespace: 'plain', annotations: { 'enlist.io/status': '{"version":2,"seal":{"key":"k","mac":"x"}}' } } })
  const skipped = admit(makeRequest(forged), policy, { ...FACTS_ENABLED, namespaceLabels: {} })
  t.equal(skipped.verdict, 'skipped')
  t.equal(skipped.reason, 'not-opted-in', 'a user-written status no longer skips the decision')
  t.match(skipped.response.warnings, [/annotation enlist\.io\/status was not written by enlist .*this pod cannot register/])

  // Offline (enlist render) nothing can be verified: a status is taken as enlist's.
  const offline = admit(makeRequest(forged), policy, { ...FACTS_ENABLED, keys: undefined })
  t.equal(offline.reason, 'already-injected')
})

t.test('pods enlist cannot serve are left alone with a reason', async (t) => {
  const cases: Array<[string, V1Pod['spec'], string | undefined]> = [
    ['spec.os windows', { os: { name: 'windows' }, containers: [{ name: 'a', image: 'x' }] }, 'windows-pod'],
    ['windows node selector', { nodeSelector: { 'kubernetes.io/os': 'windows' }, containers: [{ name: 'a', image: 'x' }] }, 'windows-pod'],
    ['linux node selector', { nodeSelector: { 'kubernetes.io/os': 'linux' }, containers: [{ name: 'a', image: 'x' }] }, undefined],
    ['hostNetwork, node DNS', { hostNetwork: true, containers: [{ name: 'a', image: 'x' }] }, 'host-network-dns'],
    ['hostNetwork, cluster DNS', { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet', containers: [{ name: 'a', image: 'x' }] }, undefined],
  ]
  for (const [what, spec, reason] of cases) {
    const out = admit(makeRequest(makePod({ spec })), policy, FACTS_ENABLED)
    if (reason) {
      t.equal(out.verdict, 'skipped', what)
      t.equal(out.reason, reason, what)
      t.equal(out.response.warnings?.length, 1, `${what}: the tenant is told why`)
    } else t.equal(out.verdict, 'injected', what)
  }
  const byAddress = makePolicy({ registrar: { registrationURL: 'https://10.96.0.10/v1/registrations' } })
  const out = admit(makeRequest(makePod({ spec: { hostNetwork: true, containers: [{ name: 'a', image: 'x' }] } })), byAddress, FACTS_ENABLED)
  t.equal(out.verdict, 'injected', 'hostNetwork is fine when the URL needs no DNS')
})

t.test('the injection digest: canonical, of enlist\'s fields only', async (t) => {
  t.equal(canonical({ b: [1, '', null, {}], a: { y: false, x: 0 }, c: '', d: [], e: {} }), '{"a":{"x":0,"y":false},"b":[1,null,null,null]}', 'sorted; empties dropped (Go omits them), false and 0 kept')
  t.equal(canonical({}), undefined)
  const injected = { initContainers: ['enlist-registrar'], volumes: ['enlist-token'], env: { app: ['POD_IP'] }, preStop: ['app'], readinessGates: ['enlist.io/registered'], labels: [] }
  const pod = (): V1Pod => ({
    spec: {
      initContainers: [{ name: 'enlist-registrar', image: 'enlist:1', args: ['register'], resources: { limits: { cpu: '1' } } }],
      volumes: [{ name: 'enlist-token', projected: { sources: [] } }],
      containers: [{ name: 'app', image: 'a:1', env: [{ name: 'A', value: '1' }, { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }], lifecycle: { preStop: { sleep: { seconds: 5 } } } }],
      readinessGates: [{ conditionType: 'enlist.io/registered' }],
    },
  })
  const d = injectionDigest(pod(), injected)
  t.match(d, /^[A-Za-z0-9_-]{43}$/)
  const same: Array<[string, (p: V1Pod) => void]> = [
    ['an app image', (p) => (p.spec!.containers[0]!.image = 'b:2')],
    ['an env entry of another name', (p) => p.spec!.containers[0]!.env!.push({ name: 'B', value: '2' })],
    ["the registrar's resources (defaulted by the apiserver, set by VPA)", (p) => (p.spec!.initContainers![0]!.resources = { requests: { cpu: '1' }, limits: { cpu: '1' } })],
    ['terminationMessagePath (defaulted)', (p) => (p.spec!.initContainers![0]!.terminationMessagePath = '/dev/termination-log')],
    ["the service-account token's mount (the ServiceAccount plugin adds it)", (p) => (p.spec!.initContainers![0]!.volumeMounts = [{ name: 'default-token-x', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }])],
    ['another container, init container, volume, gate', (p) => {
      p.spec!.containers.push({ name: 'istio-proxy', image: 'i' })
      p.spec!.initContainers!.unshift({ name: 'istio-init', image: 'i' })
      p.spec!.volumes!.push({ name: 'v', emptyDir: {} })
      p.spec!.readinessGates!.push({ conditionType: 'other' })
    }],
  ]
  for (const [what, change] of same) {
    const p = pod()
    change(p)
    t.equal(injectionDigest(p, injected), d, what)
  }
  const differs: Array<[string, (p: V1Pod) => void]> = [
    ['the registrar image', (p) => (p.spec!.initContainers![0]!.image = 'evil')],
    ['the token volume', (p) => (p.spec!.volumes![0]!.projected!.defaultMode = 511)],
    ['an injected env value', (p) => (p.spec!.containers[0]!.env![1]!.valueFrom!.fieldRef!.fieldPath = 'status.hostIP')],
    ['the hook', (p) => (p.spec!.containers[0]!.lifecycle!.preStop = { sleep: { seconds: 0 } })],
    ['a second gate of the type', (p) => p.spec!.readinessGates!.push({ conditionType: 'enlist.io/registered' })],
  ]
  for (const [what, change] of differs) {
    const p = pod()
    change(p)
    t.not(injectionDigest(p, injected), d, what)
  }
})

t.test('opening reads version 2 (pods sealed before the upgrade); checkInjected proves only version 3', async (t) => {
  const v2 = statusText({ ...status(), version: 2 }, TEST_KEYS.signing)
  const opened = openStatus(v2, TEST_KEYS.ring, 'shop')
  t.match(opened, { ok: true, status: { version: 2, decision: { service: 'orders' } } })
  if (!opened.ok) return
  t.match(checkInjected({ spec: { containers: [] } }, opened.status), { ok: false, reason: 'unproven' })
  t.match(openStatus(statusText({ ...status(), version: 1 as 2 }, TEST_KEYS.signing), TEST_KEYS.ring, 'shop'), { ok: false, reason: 'malformed' })
  const pod: V1Pod = { spec: { containers: [] } }
  const v3 = openStatus(statusText({ ...status(), digest: injectionDigest(pod, status().injected) }, TEST_KEYS.signing), TEST_KEYS.ring, 'shop')
  t.ok(v3.ok && checkInjected(pod, v3.status).ok)
  t.match(v3.ok && checkInjected({ spec: { containers: [], serviceAccountName: 'x' } }, v3.status), { ok: false, reason: 'tampered', message: /service account default/ })
  const nodigest = openStatus(statusText(status(), TEST_KEYS.signing), TEST_KEYS.ring, 'shop')
  t.match(nodigest.ok && checkInjected(pod, nodigest.status), { ok: false, reason: 'unproven' })
})
