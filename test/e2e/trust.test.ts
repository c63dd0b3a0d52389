// The trust boundary on a real apiserver, tried as a hostile tenant would: forged
// registrars, statuses and discovery records, cross-namespace copies, long-poll floods,
// bad tokens, hostile bodies, and a shutdown while requests are held. Each refusal is
// asserted, and that nothing was written.
import t, { type Test } from 'tap'
import { request as httpsRequest } from 'node:https'
import type { V1Pod } from '@kubernetes/client-node'
import { PeerWatcher } from '../../src/discovery/index.js'
import { decodeRecord, encodeRecord } from '../../src/registry/record.js'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { cmdbFor } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { createDeployment, deployment, getPod, refOf, registeredCondition, requestToken, setPolicy } from '../harness/k8s.js'
import { boundToken, runRegistrar, startPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'
import { request, type Response } from '../helpers/https.js'
import { parse, stringify } from 'yaml'

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
const enlist = await enlistFor(t, cp, {
  args: ['--max-long-polls=3', '--max-long-polls-per-pod=1', '--shutdown-delay=0s'],
  policy: (p) => {
    p.registry = {
      backends: [
        { name: 'kubernetes', type: 'kubernetes' },
        { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, retry: { initialDelayMs: 100, maxDelayMs: 500 } },
      ],
      reconcileIntervalSeconds: 5,
    }
    p.tenantOverrides = { allowed: ['podOptIn', 'dependsOn', 'metadata', 'service'] }
  },
  optIn: ['shop', 'payments'],
  plain: ['plain'],
})

const get = (p: V1Pod) => getPod(cp, p)
const api = (method: string, token: string, query = '', extra: { body?: string } = {}): Promise<Response> =>
  request(`${enlist.url}/v1/registrations${query}`, { method, ca: enlist.pki.ca.cert, headers: { authorization: `Bearer ${token}` }, ...extra })

/** Nothing of this pod in any backend, and no condition: enlist wrote nothing for it. */
async function nothingWritten(t: Test, p: V1Pod): Promise<void> {
  const now = await get(p)
  t.notOk(cmdb.records.has(p.metadata!.uid!), 'no CMDB entry')
  t.equal(now.metadata?.annotations?.['app.io/annotation'], undefined, 'no discovery record')
  t.notOk(registeredCondition(now), 'no condition')
}

async function createPod(namespace: string, pod: Record<string, unknown>): Promise<V1Pod> {
  return cp.client.create<V1Pod>(podsPath(namespace), { apiVersion: 'v1', kind: 'Pod', ...pod })
}

const forgedRegistrar = {
  name: 'enlist-registrar',
  image: 'attacker:1',
  env: [
    { name: 'ENLIST_SERVICE', value: 'payments' },
    { name: 'ENLIST_METADATA', value: '{"interface":"com.acme.Payments"}' },
  ],
}

// A pod that enlist really injected, in payments: its sealed status is what a tenant copies.
const [legit] = await createDeployment(
  cp,
  'payments',
  deployment('ledger', { annotations: { 'enlist.io/metadata': '{"interface":"com.acme.Payments"}', 'enlist.io/service': 'payments' } }),
)
const legitStatus = legit!.metadata!.annotations!['enlist.io/status']!

t.test('a forged registrar outside an opted-in namespace cannot register', async (t) => {
  const created = await createPod('plain', {
    metadata: { name: 'thief', labels: { 'enlist.io/managed': 'true' } },
    spec: { initContainers: [forgedRegistrar], containers: [{ name: 'app', image: 'x' }] },
  })
  t.equal(created.metadata?.annotations?.['enlist.io/status'], undefined, 'not injected')
  const pod = await startPod(cp, created)
  const res = await api('POST', await boundToken(cp, pod))
  t.equal(res.status, 403)
  t.match(res.json(), { code: 'ENLIST_FORBIDDEN', message: /cannot register: its enlist\.io\/status annotation is missing|has no enlist\.io\/status annotation/ })
  await nothingWritten(t, pod)
})

t.test('a forged registrar inside an opted-in namespace is refused at admission', async (t) => {
  const r = await cp.kubectl(['run', 'thief2', '-n', 'shop', '--image=x', '--restart=Never', '--overrides', JSON.stringify({ spec: { initContainers: [forgedRegistrar] } })])
  t.not(r.code, 0)
  t.match(r.stderr, /init container enlist-registrar is reserved for enlist/)
  const exists = await cp.client.get(podPath({ namespace: 'shop', pod: 'thief2' })).then(
    () => true,
    () => false,
  )
  t.notOk(exists, 'no pod was created')
})

t.test('a status copied from another namespace, or edited, does not register', async (t) => {
  // Copied into a namespace that is not opted in: enlist never sees it at admission.
  const copied = await startPod(cp, await createPod('plain', {
    metadata: { name: 'copycat', labels: { 'enlist.io/managed': 'true' }, annotations: { 'enlist.io/status': legitStatus } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  }))
  const res = await api('POST', await boundToken(cp, copied))
  t.equal(res.status, 403)
  t.match(res.json<{ message: string }>().message, /was decided for namespace payments, not plain/)
  await nothingWritten(t, copied)

  // Edited: the service changed under the seal.
  const edited = JSON.parse(legitStatus) as { decision: { namespace: string; service: string } }
  edited.decision.namespace = 'plain'
  edited.decision.service = 'checkout'
  const forged = await startPod(cp, await createPod('plain', {
    metadata: { name: 'forger', labels: { 'enlist.io/managed': 'true' }, annotations: { 'enlist.io/status': JSON.stringify(edited) } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  }))
  const res2 = await api('POST', await boundToken(cp, forged))
  t.equal(res2.status, 403)
  t.match(res2.json<{ message: string }>().message, /its seal does not match its content; only enlist writes this annotation/)
  await nothingWritten(t, forged)

  // The same sealed status on a pod of another service account in its own namespace.
  await cp.client.create('/api/v1/namespaces/payments/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'other' } })
  await waitFor('the token Secret of payments/other', async () => ((await cp.client.get<{ secrets?: unknown[] }>('/api/v1/namespaces/payments/serviceaccounts/other')).secrets?.length ?? 0) > 0)
  const other = await startPod(cp, await createPod('payments', {
    metadata: { name: 'impostor', labels: { 'enlist.io/managed': 'true', 'enlist.io/inject': 'false' }, annotations: { 'enlist.io/status': legitStatus } },
    spec: { serviceAccountName: 'other', containers: [{ name: 'app', image: 'x' }] },
  }))
  t.equal((await get(other)).metadata?.annotations?.['enlist.io/status'], legitStatus, 'opted out: enlist did not see it at admission')
  const res3 = await api('POST', await boundToken(cp, other))
  t.equal(res3.status, 403)
  t.match(res3.json<{ message: string }>().message, /decided its registration for service account default, but the token is for other/)
  await nothingWritten(t, other)
  t.match(await enlist.metrics(), /enlist_trust_rejections_total\{where="registration",reason="bad-seal"\} 1/)
})

t.test('a status copied into an opted-in namespace is replaced: the pod registers as itself', async (t) => {
  const created = await createPod('shop', {
    metadata: { name: 'borrower', labels: { app: 'borrower' }, annotations: { 'enlist.io/status': legitStatus } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  })
  const status = JSON.parse(created.metadata!.annotations!['enlist.io/status']!) as { decision: { namespace: string; service: string } }
  t.same([status.decision.namespace, status.decision.service], ['shop', 'borrower'])
  const pod = await startPod(cp, created)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  t.equal(decodeRecord((await get(pod)).metadata!.annotations!['app.io/annotation']!).service, 'borrower', 'not payments')
})

t.test('a forged discovery record is removed at admission, ignored by discovery, and restored when edited', async (t) => {
  const fake = encodeRecord({
    uid: 'x', namespace: 'shop', pod: 'fake', service: 'payments', ip: '203.0.113.7', ips: ['203.0.113.7'], hostIP: '', node: '',
    ports: [], metadata: {}, registeredAt: '2026-01-01T00:00:00Z', advertised: { mode: 'podIP', address: '203.0.113.7', ports: [] },
  })
  const created = await createPod('shop', {
    metadata: { name: 'fakepeer', labels: { 'app.io/label': 'app.io-value' }, annotations: { 'app.io/annotation': fake } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  })
  t.equal(created.metadata?.annotations?.['app.io/annotation'], undefined, 'removed at admission')

  // Written afterwards onto a pod enlist never registered: discovery does not believe it.
  const watcher = new PeerWatcher({ namespaces: ['plain'], kubeconfig: cp.kubeconfig })
  await watcher.start()
  t.teardown(() => watcher.stop())
  const lone = await startPod(cp, await createPod('plain', {
    metadata: { name: 'lone', labels: { 'enlist.io/managed': 'true', 'app.io/label': 'app.io-value' } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  }))
  await cp.client.patch(podPath(refOf(lone)), { metadata: { annotations: { 'app.io/annotation': fake } } }, 'application/merge-patch+json')
  await waitFor('the forged record dropped', async () => watcher.dropped()['not-registered'] > 0)
  t.same(watcher.peers(), [], 'no peer')

  // Edited on a registered pod: enlist writes its own record back.
  const [reg] = await createDeployment(cp, 'shop', deployment('honest'))
  const pod = await startPod(cp, reg!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  const original = (await get(pod)).metadata!.annotations!['app.io/annotation']!
  const tampered = encodeRecord({ ...decodeRecord(original), service: 'payments' })
  await cp.client.patch(podPath(refOf(pod)), { metadata: { annotations: { 'app.io/annotation': tampered } } }, 'application/merge-patch+json')
  await waitFor('the record restored', async () => (await get(pod)).metadata!.annotations!['app.io/annotation'] === original, 15_000)
  const events = await cp.kubectl(['get', 'events', '-n', 'shop', '--field-selector', `involvedObject.name=${pod.metadata!.name}`, '-o', 'jsonpath={.items[*].reason}'])
  t.match(events.stdout, /RecordRestored/)
})

t.test('long-polls are capped in all and per pod: 429 with Retry-After', async (t) => {
  const pods = await createDeployment(cp, 'shop', deployment('waiter', { replicas: 4, annotations: { 'enlist.io/depends-on': 'never-there' } }))
  const started = await Promise.all(pods.map((p) => startPod(cp, p)))
  const tokens = await Promise.all(started.map((p) => boundToken(cp, p)))
  const held = tokens.slice(0, 3).map((tok) => api('POST', tok, '?wait=20s'))
  await waitFor('three requests held', async () => /enlist_registrations_in_flight 3/.test(await enlist.metrics()))
  const sameAgain = await api('POST', tokens[0]!, '?wait=20s')
  t.equal(sameAgain.status, 429, 'one waiting request per pod')
  t.ok(Number(sameAgain.headers['retry-after']) > 0)
  const fourth = await api('POST', tokens[3]!, '?wait=20s')
  t.equal(fourth.status, 429, 'no more than --max-long-polls in all')
  t.match(fourth.json(), { code: 'ENLIST_TOO_MANY_REQUESTS' })
  const quick = await api('POST', tokens[3]!)
  t.equal(quick.status, 503, 'a request that does not wait is still answered (dependencies not ready)')
  // Let the held ones go: the dependency appears.
  await cp.client.create('/api/v1/namespaces/shop/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'never-there' }, spec: { type: 'ExternalName', externalName: 'example.com' } })
  const answers = await Promise.all(held)
  t.same(answers.map((a) => a.status), [200, 200, 200])
})

t.test('bad tokens: refused without a TokenReview, and a sender of many is slowed down', async (t) => {
  const before = await enlist.metrics()
  const reviews = (m: string) => Number(/enlist_token_reviews_total\{result="rejected"\} (\d+)/.exec(m)?.[1] ?? 0)
  const garbage = await api('POST', 'not-a-jwt')
  t.equal(garbage.status, 401)
  t.match(garbage.json(), { message: /not a JWT/ })
  const wrongAudience = await requestToken(cp, 'plain', 'default', { audiences: ['https://kubernetes.default.svc'] })
  const res = await api('POST', wrongAudience)
  t.equal(res.status, 401)
  t.match(res.json(), { message: /not for audience enlist/ })
  const statuses: number[] = []
  for (let i = 0; i < 15; i++) statuses.push((await api('POST', `x.${Buffer.from(JSON.stringify({ aud: ['enlist'], n: i })).toString('base64url')}.y`)).status)
  t.ok(statuses.includes(429), `after a burst of bad tokens: ${statuses.join(' ')}`)
  const reviewed = reviews(await enlist.metrics()) - reviews(before)
  // their signatures do not verify against the issuer keys (/openid/v1/jwks): none costs a review
  t.equal(reviewed, 0, `${reviewed} of 17 bad tokens reached the apiserver (the rest were refused before a TokenReview)`)
  t.match(await enlist.metrics(), /enlist_token_reviews_total\{result="signature-rejected"\} [1-9]/)
  t.match(await enlist.metrics(), /enlist_token_reviews_total\{result="prechecked"\} [1-9]/)
  t.match(await enlist.metrics(), /enlist_token_reviews_total\{result="throttled"\} [1-9]/)
  // The address recovers by itself (one rejected token a second), and a good token is served again.
  const good = await boundToken(cp, await get({ metadata: { namespace: 'plain', name: 'lone' } } as V1Pod))
  const back = await waitFor('the address served again', async () => {
    const r = await api('POST', good)
    return r.status !== 429 ? r : undefined
  }, 30_000, 500)
  t.equal(back.status, 403, 'a valid token is reviewed again (and this pod, never injected, refused)')
})

t.test('hostile bodies are refused fast while real reviews are answered', async (t) => {
  const deep = '{"kind":"AdmissionReview","x":' + '['.repeat(1_400_000) + ']'.repeat(1_400_000) + '}'
  const huge = '{"kind":"AdmissionReview","x":[' + '0,'.repeat(1_400_000) + '0]}'
  const tooBig = 'x'.repeat(4 * 1024 * 1024)
  const post = (body: string) => request(`${enlist.url}/mutate`, { method: 'POST', body, ca: enlist.pki.ca.cert, timeoutMs: 30_000 })
  // The body over the limit: its headers first, and the body only once the answer is in. The
  // server closes the connection after a 413 while the client may still be sending, so a reset
  // can follow the answer; one before it (no status) fails the test.
  const overLimit = () =>
    new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`${enlist.url}/mutate`, { method: 'POST', ca: enlist.pki.ca.cert, headers: { 'content-type': 'application/json', 'content-length': String(tooBig.length) } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
        req.end(tooBig)
      })
      req.on('error', reject) // after the answer the promise is settled and this is a no-op
      req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')))
      req.flushHeaders()
    })
  // each hostile request's [start, end], to show they overlapped the real creations
  const spans: Array<[number, number, number]> = []
  let stop = false
  const attack = (async () => {
    while (!stop) {
      for (const send of [() => post(deep).then((r) => r.status), () => post(huge).then((r) => r.status), overLimit]) {
        const began = Date.now()
        const status = await send()
        spans.push([began, Date.now(), status])
      }
    }
  })()
  const creations: Array<[number, number]> = []
  for (let i = 0; i < 8; i++) {
    const began = Date.now()
    const pod = await createPod('shop', { metadata: { name: `real-${i}` }, spec: { containers: [{ name: 'app', image: 'x' }] } })
    creations.push([began, Date.now()])
    t.ok(pod.metadata?.annotations?.['enlist.io/status'], `real-${i} injected while under attack`)
  }
  stop = true
  await attack
  const created = creations.map(([b, e]) => e - b)
  const refusals = spans.map(([b, e]) => e - b)
  t.comment(`${spans.length / 3} rounds of hostile bodies, refused in at most ${Math.max(...refusals)} ms; real pods created in ${created.join(', ')} ms`)
  const outcomes = spans.map(([, , s]) => s)
  t.same(outcomes.filter((_s, i) => i % 3 === 0).filter((s) => s !== 400), [], 'deep nesting: 400')
  t.same(outcomes.filter((_s, i) => i % 3 === 1).filter((s) => s !== 400), [], 'a huge array that is no review: 400')
  t.same(outcomes.filter((_s, i) => i % 3 === 2).filter((s) => s !== 413), [], 'over the body limit: 413')
  // fast: each hostile body answered well inside the webhook's 5 s timeout, and each real
  // review too (the apiserver would have given up on enlist after 5 s)
  t.ok(Math.max(...refusals) < 5000, `every hostile body refused in under 5 s (the slowest: ${Math.max(...refusals)} ms)`)
  t.ok(Math.max(...created) < 5000, `every real pod created in under 5 s (the slowest: ${Math.max(...created)} ms)`)
  // while: a hostile request was in flight during every creation
  const overlapped = creations.filter(([b, e]) => spans.some(([hb, he]) => hb < e && he > b)).length
  t.equal(overlapped, creations.length, 'hostile requests were in flight during every real creation')
  const withBody = await api('POST', 'x', '', { body: JSON.stringify({ data: 'x'.repeat(4096) }) })
  t.equal(withBody.status, 413, 'the registration API takes no body')
})

t.test('pods enlist cannot serve are left alone with a reason; a hostNetwork pod that can reach enlist is injected', async (t) => {
  const run = (name: string, spec: Record<string, unknown>) => cp.kubectl(['run', name, '-n', 'shop', '--image=x', '--restart=Never', '--overrides', JSON.stringify({ spec })])
  const win = await run('win', { nodeSelector: { 'kubernetes.io/os': 'windows' } })
  t.equal(win.code, 0, win.stderr)
  t.match(win.stderr, /Warning: enlist: not injected: the pod runs on windows nodes and enlist's registrar runs on linux only/, 'the tenant is told why')
  const w = await cp.client.get<V1Pod>(podPath({ namespace: 'shop', pod: 'win' }))
  t.equal(w.metadata?.annotations?.['enlist.io/status'], undefined, 'no status')
  t.notOk(w.spec?.initContainers?.some((c) => c.name === 'enlist-registrar'), 'no registrar that could never run')
  t.notOk(w.spec?.readinessGates?.length, 'no readiness gate that nothing would open')
  // the registration URL here is an address, so the node's resolver is no obstacle
  const host = await run('host', { hostNetwork: true })
  t.equal(host.code, 0, host.stderr)
  const h = await cp.client.get<V1Pod>(podPath({ namespace: 'shop', pod: 'host' }))
  t.ok(h.metadata?.annotations?.['enlist.io/status'], 'injected')
  t.ok(h.spec?.initContainers?.some((c) => c.name === 'enlist-registrar'), 'with its registrar')
})

t.test('issue 24: a sealed status copied onto a pod with a registrar of its own is denied; a faithful copy counts as injected', async (t) => {
  const held = await get(legit!)
  const copyOf = (name: string, change: (spec: NonNullable<V1Pod['spec']>) => void): Record<string, unknown> => {
    const spec = structuredClone(held.spec!)
    delete spec.nodeName
    change(spec)
    return { metadata: { name, labels: held.metadata!.labels, annotations: held.metadata!.annotations }, spec }
  }
  const refused = await createPod('payments', copyOf('copy-registrar', (s) => {
    const r = s.initContainers!.find((c) => c.name === 'enlist-registrar')!
    r.image = 'attacker:1'
    r.env = [...(r.env ?? []), ...forgedRegistrar.env]
  })).then(
    () => undefined,
    (err: Error) => err,
  )
  t.ok(refused, 'the apiserver refused the pod')
  t.match(refused?.message, /enlist\.io\/status was sealed by enlist for another pod: this pod's init container enlist-registrar, volume enlist-token.* are not what enlist injected with it/)
  const exists = await cp.client.get(podPath({ namespace: 'payments', pod: 'copy-registrar' })).then(
    () => true,
    () => false,
  )
  t.notOk(exists, 'no pod was created')

  const token = await createPod('payments', copyOf('copy-token', (s) => {
    s.volumes!.find((v) => v.name === 'enlist-token')!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds = 86400
  })).then(
    () => undefined,
    (err: Error) => err,
  )
  t.match(token?.message, /sealed by enlist for another pod/, 'a token volume of its own: refused too')

  // The pod exactly as the apiserver holds it (defaulted, the service-account mount added)
  // under another name: enlist's fields are intact, so it is enlist's injection.
  const faithful = await createPod('payments', copyOf('ledger-copy', () => undefined))
  t.equal(faithful.metadata!.annotations!['enlist.io/status'], legitStatus, 'admitted as injected: the status untouched')
  t.match(await enlist.metrics(), /reason="tampered"/, 'the denials are counted')
})

t.test('issue 24: with a kubernetes backend in layout dubbo, the dubbo.io keys a tenant wrote are removed at admission', async (t) => {
  const cm = await cp.client.get<{ data: Record<string, string> }>('/api/v1/namespaces/enlist-system/configmaps/enlist-policy')
  const good = cm.data['policy.yaml']!
  const inEffect = () => enlist.logs().filter((l) => l.msg === 'policy in effect').length
  const setAndWait = async (text: string, what: string) => {
    const before = inEffect()
    await setPolicy(cp, text)
    await enlist.waitForLog(what, () => inEffect() > before, 30_000)
  }
  const policy = parse(good) as { registry: { backends: Array<Record<string, unknown>> }; tenancy?: unknown }
  policy.registry.backends.push({ name: 'dubbo-pods', type: 'kubernetes', layout: 'dubbo' })
  policy.tenancy = { interfaces: [{ namespaces: ['shop'], interfaces: ['com.acme.Orders'] }] }
  await setAndWait(stringify(policy), 'the policy with layout dubbo')
  t.teardown(() => setAndWait(good, 'the policy as it was'))

  const manifest = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'dubbo-squatter',
      namespace: 'shop',
      labels: { app: 'orders', 'dubbo.io/label': 'dubbo.io.provider' },
      annotations: {
        'enlist.io/metadata': '{"interface":"com.acme.Orders"}',
        // a provider URL of the tenant's own, as dubbo-go consumers read it
        'dubbo.io/annotation': 'W3siayI6Ii9kdWJiby9jb20uYWNtZS5PcmRlcnMvcHJvdmlkZXJzIiwidiI6IiJ9XQ==',
      },
    },
    spec: { containers: [{ name: 'app', image: 'x', ports: [{ name: 'dubbo', containerPort: 20880 }] }] },
  }
  const r = await cp.kubectl(['create', '-f', '-'], { input: JSON.stringify(manifest) })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /removed your label dubbo\.io\/label="dubbo\.io\.provider": enlist sets it once the pod is registered/, 'the warning says so')
  t.match(r.stderr, /removed your annotation dubbo\.io\/annotation/)
  const created = await get(manifest as V1Pod)
  t.equal(created.metadata?.labels?.['dubbo.io/label'], undefined, 'no dubbo-go label: consumers do not select it')
  t.equal(created.metadata?.annotations?.['dubbo.io/annotation'], undefined, 'no dubbo-go record of the tenant\'s')
  t.ok(created.metadata?.annotations?.['enlist.io/status'], 'injected')
})

t.test('SIGTERM answers held long-polls at once and shuts down inside the grace period', async (t) => {
  const [p] = await createDeployment(cp, 'shop', deployment('late', { annotations: { 'enlist.io/depends-on': 'not-yet' } }))
  const pod = await startPod(cp, p!)
  const tok = await boundToken(cp, pod)
  const began = Date.now()
  const held = api('POST', tok, '?wait=30s')
  let early: Response | undefined
  void held.then((r) => (early = r))
  await waitFor('the request held', async () => {
    if (early) throw new Error(`answered at once: ${early.status} ${early.body}`)
    return /enlist_registrations_in_flight 1/.test(await enlist.metrics())
  })
  const exited = enlist.stop()
  const answer = await held
  const answeredMs = Date.now() - began
  t.equal(answer.status, 503)
  t.equal(answer.headers['retry-after'], '1')
  t.match(answer.json(), { code: 'ENLIST_SHUTTING_DOWN' })
  const code = await exited
  const tookMs = Date.now() - began
  t.comment(`held request answered after ${answeredMs} ms, process gone after ${tookMs} ms (wait was 30 s)`)
  if (code !== 0 || tookMs >= 15_000) t.comment(enlist.logs().slice(-25).map((l) => JSON.stringify(l)).join('\n'))
  t.equal(code, 0, 'a clean exit')
  t.ok(tookMs < 15_000, 'well inside a 30 s grace period')
  await nothingWritten(t, pod)
})
