// Registration on a real control plane: the registrar as a process with the env and bound
// token a kubelet would give it, both backends (the http one a real server), the
// condition, the readiness gate holding the pod out of endpoints, and identity checks.
import t from 'tap'
import type { V1Endpoints, V1Pod } from '@kubernetes/client-node'
import { decodeRecord } from '../../src/registry/record.js'
import { watchPeers, type PeerEvent } from '../../src/discovery/index.js'
import { podPath } from '../../src/kube/pod-ref.js'
import { PatchType } from '../../src/kube/client.js'
import { cmdbFor } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { createDeployment, deployment, getPod, podManifest, refOf, registeredCondition } from '../harness/k8s.js'
import { boundToken, runRegistrar, startPod, syncReady } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'
import { request } from '../helpers/https.js'

const cp = await controlPlaneFor(t)
const cmdb = await cmdbFor(t)
cmdb.requireAuthorization = 'Bearer cmdb-secret-token'
await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'enlist-system' } })
await cp.client.create('/api/v1/namespaces/enlist-system/secrets', {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'enlist-registry-credentials' },
  stringData: { Authorization: 'Bearer cmdb-secret-token' },
})
const enlist = await enlistFor(t, cp, {
  policy: (p) => {
    p.registry = {
      backends: [
        { name: 'kubernetes', type: 'kubernetes' },
        { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, headersFromSecret: 'enlist-registry-credentials', retry: { initialDelayMs: 100, maxDelayMs: 1000 } },
      ],
      reconcileIntervalSeconds: 5,
    }
  },
  optIn: ['shop'],
  // a small TokenReview budget, so a flood queues (the fairness case); pods may mint many tokens
  args: ['--token-reviews-per-second=5', '--token-reviews-per-pod=100'],
})

const get = (p: V1Pod) => getPod(cp, p)
const condition = registeredCondition
const registrationUrl = `${enlist.url}/v1/registrations`
const api = (method: string, token: string | undefined, query = '') =>
  request(`${registrationUrl}${query}`, { method, ca: enlist.pki.ca.cert, headers: token ? { authorization: `Bearer ${token}` } : {} })

// On the kubelet stand-in no app starts: that registration comes before the app's start is shown
// on the real node, from containerd's events (node.test.ts)
t.test("a pod's registrar registers it into both backends, and it becomes Ready", async (t) => {
  // A Service selecting it, to watch the readiness gate keep it out of endpoints.
  await cp.client.create('/api/v1/namespaces/shop/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'orders' },
    spec: { selector: { app: 'orders' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  })
  const [created] = await createDeployment(
    cp,
    'shop',
    deployment('orders', {
      annotations: { 'enlist.io/metadata': '{"interface":"com.acme.Orders","group":"g1"}' },
      containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 9090, protocol: 'TCP' }] }],
    }),
  )
  const pod = await startPod(cp, created!)
  await syncReady(cp, pod)
  const endpointsBefore = await waitFor('endpoints with the pod not ready', async () => {
    const ep = await cp.client.get<V1Endpoints>('/api/v1/namespaces/shop/endpoints/orders')
    return ep.subsets?.[0]?.notReadyAddresses?.length ? ep : undefined
  })
  t.equal(endpointsBefore.subsets?.[0]?.addresses, undefined, 'held out of the Service until registered')
  t.equal((await get(pod)).status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False')

  const run = await runRegistrar(cp, pod)
  t.equal(run.code, 0, run.stdout + run.stderr)
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines.at(-1), { level: 'info', msg: 'registered', attempt: 1, service: 'orders', component: 'enlist-registrar', pod: `shop/${pod.metadata!.name}` })

  const after = await get(pod)
  t.match(condition(after), { status: 'True', reason: 'Registered' })
  const record = decodeRecord(after.metadata!.annotations!['app.io/annotation']!)
  t.same(record, {
    uid: pod.metadata!.uid,
    namespace: 'shop',
    pod: pod.metadata!.name,
    service: 'orders',
    ip: pod.status!.podIP,
    ips: [pod.status!.podIP],
    hostIP: '127.0.0.1',
    node: 'node-1',
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'admin', port: 9090, protocol: 'TCP' },
    ],
    metadata: { interface: 'com.acme.Orders', group: 'g1' },
    registeredAt: record.registeredAt,
    advertised: {
      mode: 'podIP',
      address: pod.status!.podIP,
      ports: [
        { name: 'http', port: 8080, containerPort: 8080, protocol: 'TCP' },
        { name: 'admin', port: 9090, containerPort: 9090, protocol: 'TCP' },
      ],
    },
  })
  t.equal(after.metadata!.labels!['app.io/label'], 'app.io-value')
  const kubeSystem = await cp.client.get<{ metadata: { uid: string } }>('/api/v1/namespaces/kube-system')
  t.same(
    cmdb.records.get(pod.metadata!.uid!),
    { ...record, cluster: 'e2e', clusterUID: kubeSystem.metadata.uid },
    'the CMDB holds the same record, with the cluster that wrote it and its kube-system UID (the pod\'s own copy needs neither)',
  )
  t.ok(cmdb.requests.every((r) => r.authorization === 'Bearer cmdb-secret-token'), 'headers from the Secret')

  await syncReady(cp, pod)
  t.equal((await get(pod)).status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True')
  await waitFor('the pod in Service endpoints', async () => {
    const ep = await cp.client.get<V1Endpoints>('/api/v1/namespaces/shop/endpoints/orders')
    return ep.subsets?.[0]?.addresses?.some((a) => a.ip === pod.status!.podIP)
  })

  const events = await cp.kubectl(['get', 'events', '-n', 'shop', '--field-selector', `involvedObject.name=${pod.metadata!.name}`, '-o', 'jsonpath={.items[*].reason}'])
  t.match(events.stdout, /Registered/)

  // registering again: a no-op success that keeps the first time
  const again = await runRegistrar(cp, pod)
  t.equal(again.code, 0)
  t.equal(decodeRecord((await get(pod)).metadata!.annotations!['app.io/annotation']!).registeredAt, record.registeredAt)
  t.match(await enlist.metrics(), /enlist_registrations_total\{op="register",result="registered",code="200"\} 2/)
})

t.test('a pod may register only itself', async (t) => {
  const pods = await createDeployment(cp, 'shop', deployment('twins', { replicas: 2 }))
  const [a, b] = [await startPod(cp, pods[0]!), await startPod(cp, pods[1]!)]
  // B's token, whatever the request says, registers B and nothing else
  const tokenB = await boundToken(cp, b)
  const res = await api('POST', tokenB)
  t.equal(res.status, 200)
  t.equal(res.json<{ record: { pod: string; uid: string } }>().record.uid, b.metadata!.uid)
  t.equal(condition(await get(a)), undefined, 'A is untouched')
  const viaRegistrar = await runRegistrar(cp, a, { token: tokenB })
  t.equal(viaRegistrar.code, 0)
  t.equal(condition(await get(a)), undefined, "A's registrar with B's token registered B, not A")

  const noToken = await api('POST', undefined)
  t.equal(noToken.status, 401)
  t.match(noToken.json(), { code: 'ENLIST_UNAUTHENTICATED', message: /missing bearer token/ })
  t.equal(noToken.headers['www-authenticate'], 'Bearer realm="enlist"')
  t.equal((await api('POST', 'not-a-token')).status, 401)

  const wrongAudience = await boundToken(cp, a, 'https://kubernetes.default.svc')
  t.match((await api('POST', wrongAudience)).json(), { code: 'ENLIST_UNAUTHENTICATED' })

  // a pod enlist did not inject (opted out) cannot register
  const plain = (await cp.kubectl(['create', '-n', 'shop', '-o', 'json', '-f', '-'], {
    input: JSON.stringify(podManifest('outsider', { annotations: { 'enlist.io/inject': 'false' }, containers: [{ name: 'a', image: 'b' }] })),
  })).stdout
  const outsider = JSON.parse(plain) as V1Pod
  const forbidden = await api('POST', await boundToken(cp, outsider))
  t.equal(forbidden.status, 403)
  t.match(forbidden.json(), { message: /not managed by enlist/ })

  const registrar = await runRegistrar(cp, a, { token: await boundToken(cp, outsider), timeoutMs: 20_000 })
  t.equal(registrar.code, 2, 'a rejection exits 2 at once')
})

t.test('dependencies hold registration until the Service has ready endpoints', async (t) => {
  await cp.client.create('/api/v1/namespaces/shop/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'db' },
    spec: { ports: [{ name: 'pg', port: 5432 }] }, // no selector: endpoints are ours to write
  })
  const [created] = await createDeployment(cp, 'shop', deployment('api', { annotations: { 'enlist.io/depends-on': 'db:5432, payments/ledger' } }))
  const pod = await startPod(cp, created!)

  const first = await api('POST', await boundToken(cp, pod))
  t.equal(first.status, 503)
  t.equal(first.headers['retry-after'], '2')
  t.same(first.json(), {
    code: 'ENLIST_DEPENDENCIES_NOT_READY',
    message: 'waiting for shop/db:5432 (no ready endpoints on port 5432), payments/ledger (Service not found)',
    missing: [
      { dependency: 'shop/db:5432', reason: 'no ready endpoints on port 5432' },
      { dependency: 'payments/ledger', reason: 'Service not found' },
    ],
  })

  const registrar = runRegistrar(cp, pod)
  // first the sign the registrar's request is held (a long-poll in flight), then that it is held
  await waitFor('the registrar long-polling', async () => /enlist_registrations_in_flight [1-9]/.test(await enlist.metrics()), 15_000, 100)
  t.equal(condition(await get(pod)), undefined, 'still waiting')

  // a ready endpoint on another port does not count: written before the ledger, so once enlist
  // answers with the ledger ready it has had the db endpoints too
  await cp.client.create('/api/v1/namespaces/shop/endpoints', { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'db' }, subsets: [{ addresses: [{ ip: '10.0.9.2' }], ports: [{ name: 'other', port: 1 }] }] })
  await cp.namespace('payments')
  await cp.client.create('/api/v1/namespaces/payments/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ledger' }, spec: { ports: [{ port: 443 }] } })
  await cp.client.create('/api/v1/namespaces/payments/endpoints', { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'ledger' }, subsets: [{ addresses: [{ ip: '10.0.9.1' }], ports: [{ port: 443 }] }] })
  const token = await boundToken(cp, pod)
  const onlyDb = await waitFor('enlist to see the ledger ready', async () => {
    const r = await api('POST', token)
    return r.status === 503 && r.json<{ missing: unknown[] }>().missing.length === 1 ? r : undefined
  }, 15_000, 200)
  t.same(onlyDb.json<{ missing: unknown[] }>().missing, [{ dependency: 'shop/db:5432', reason: 'no ready endpoints on port 5432' }], 'the ledger seen ready, the db not')
  t.equal(condition(await get(pod)), undefined, 'the wrong port does not release it')

  await cp.client.replace('/api/v1/namespaces/shop/endpoints/db', {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'db' },
    subsets: [{ addresses: [{ ip: '10.0.9.2' }], ports: [{ name: 'pg', port: 5432 }] }],
  })
  const run = await registrar
  t.equal(run.code, 0, run.stdout)
  // The first attempt long-polled and was answered as soon as the endpoint was ready.
  t.match(run.stdout, /"msg":"registered","attempt":1,/)
  t.match(condition(await get(pod)), { status: 'True' })
})

t.test('the registrar gives up at its timeout with a clear message and exit 1', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('stuck', { annotations: { 'enlist.io/depends-on': 'never-there' } }))
  const pod = await startPod(cp, created!)
  const started = Date.now()
  const run = await runRegistrar(cp, pod, { env: { ENLIST_TIMEOUT_SECONDS: '3' } })
  t.equal(run.code, 1)
  t.ok(Date.now() - started < 10_000)
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines.at(-1), { level: 'error', msg: 'gave up after 3s: dependencies not ready: shop/never-there (Service not found)' })
  t.ok(lines.length <= 6, `${lines.length} attempts in 3 s: the server's long-poll and the backoff pace them`)
})

t.test('DELETE /v1/registrations deregisters the caller at once', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('leaver'))
  const pod = await startPod(cp, created!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  t.ok(cmdb.records.has(pod.metadata!.uid!))
  const res = await api('DELETE', await boundToken(cp, pod))
  t.equal(res.status, 200)
  t.same(res.json(), { deregistered: true })
  t.notOk(cmdb.records.has(pod.metadata!.uid!))
  const after = await get(pod)
  t.match(condition(after), { status: 'False', reason: 'Deregistered' })
  t.equal(after.metadata?.annotations?.['app.io/annotation'], undefined)
  t.equal((await api('DELETE', await boundToken(cp, pod))).status, 200, 'deregistering twice succeeds')
})

t.test('peers discover each other with enlist/discovery as pods register and go', async (t) => {
  const events: PeerEvent[] = []
  const it = watchPeers({ namespaces: ['shop'], kubeconfig: cp.kubeconfig })
  const reading = (async () => {
    for await (const ev of it) events.push(ev)
  })()
  const [created] = await createDeployment(cp, 'shop', deployment('peer'))
  const pod = await startPod(cp, created!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  await waitFor('added', async () => events.some((e) => e.type === 'added' && e.peer.uid === pod.metadata!.uid))
  t.match(events.find((e) => e.peer.uid === pod.metadata!.uid), { type: 'added', peer: { service: 'peer', ip: pod.status!.podIP } })
  await cp.client.delete(podPath(refOf(pod)))
  await waitFor('removed', async () => events.some((e) => e.type === 'removed' && e.peer.uid === pod.metadata!.uid))
  await it.return!()
  await reading
})

t.test('DELETE then POST: the deregistered pod is refused 409 and nothing is written again', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('comeback'))
  const pod = await startPod(cp, created!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  t.equal((await api('DELETE', await boundToken(cp, pod))).status, 200)
  t.notOk(cmdb.records.has(pod.metadata!.uid!))
  const again = await api('POST', await boundToken(cp, pod))
  t.equal(again.status, 409)
  t.match(again.json(), { code: 'ENLIST_CONFLICT', message: /was deregistered and cannot register again; recreate the pod/ })
  t.notOk(cmdb.records.has(pod.metadata!.uid!), 'no entry came back')
  t.match(condition(await get(pod)), { status: 'False', reason: 'Deregistered' })
})

t.test('a registered pod asking again is answered from what is known: no backend write', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('twice'))
  const pod = await startPod(cp, created!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  const writes = cmdb.requests.filter((r) => r.method === 'PUT' && r.path.includes(pod.metadata!.uid!)).length
  const res = await api('POST', await boundToken(cp, pod))
  t.equal(res.status, 200)
  t.equal(cmdb.requests.filter((r) => r.method === 'PUT' && r.path.includes(pod.metadata!.uid!)).length, writes, 'the CMDB was not written again')
})

t.test('one namespace flooding the registration API does not take another\'s turns (counted in queue order)', async (t) => {
  for (const ns of ['flood', 'calm']) await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
  const plainPod = async (ns: string, name: string): Promise<V1Pod> =>
    waitFor(`pod ${ns}/${name}`, async () => cp.client.create<V1Pod>(`/api/v1/namespaces/${ns}/pods`, podManifest(name)).catch(() => undefined), 30_000)
  const flooders = await Promise.all([0, 1, 2].map((i) => plainPod('flood', `f${i}`)))
  const calm = await Promise.all([0, 1].map((i) => plainPod('calm', `c${i}`)))
  const floodTokens = (await Promise.all(flooders.map((p) => Promise.all(Array.from({ length: 20 }, () => boundToken(cp, p)))))).flat()
  const calmTokens = await Promise.all(calm.map((p) => boundToken(cp, p)))
  const order: Array<{ ns: string; status: number }> = []
  const ask = (ns: string, tk: string) => api('POST', tk).then((r) => void order.push({ ns, status: r.status }))
  const flood = floodTokens.map((tk) => ask('flood', tk))
  await new Promise((r) => setTimeout(r, 300)) // the flood is in the queue first
  await Promise.all([...flood, ...calmTokens.map((tk) => ask('calm', tk))])
  const served = order.filter((o) => o.status !== 429)
  const calmAt = served.map((o, i) => (o.ns === 'calm' ? i : -1)).filter((i) => i >= 0)
  t.same(order.filter((o) => o.ns === 'calm').map((o) => o.status), [403, 403], 'both calm pods were reviewed (403: not managed by enlist), none got 429')
  t.ok(order.filter((o) => o.ns === 'flood' && o.status === 429).length > 0, 'the flood was cut')
  const floodAfter = served.slice(calmAt[1]! + 1).filter((o) => o.ns === 'flood').length
  t.ok(floodAfter > 0, `calm's turns came at ${calmAt.join(', ')} of ${served.length} reviews, before the flood's last`)
  const metrics = (await request(`${enlist.url}/metrics`, { ca: enlist.pki.ca.cert })).body
  t.notMatch(metrics, /enlist_token_reviews_total\{result="unverified"\}/, 'every token was verified against the issuer keys (/openid/v1/jwks)')
})

t.test('a backend failure reaches the tenant\'s Events as a log reference, never the backend\'s host', async (t) => {
  const [created] = await createDeployment(cp, 'shop', deployment('quiet'))
  const pod = await startPod(cp, created!)
  t.equal((await runRegistrar(cp, pod)).code, 0)
  cmdb.down = true
  t.teardown(() => {
    cmdb.down = false
  })
  // the pod finishes: the controller deregisters it, and the CMDB refuses
  await cp.client.patch(`${podPath(refOf(pod))}/status`, { status: { phase: 'Succeeded' } }, PatchType.merge)
  const host = new URL(cmdb.url).host
  const event = await waitFor('a DeregistrationFailed event', async () => {
    const list = await cp.client.get<{ items: Array<{ reason?: string; message?: string; involvedObject?: { uid?: string } }> }>('/api/v1/namespaces/shop/events')
    return list.items.find((e) => e.reason === 'DeregistrationFailed' && e.involvedObject?.uid === pod.metadata!.uid)
  }, 60_000)
  t.match(event.message, /\(enlist log ref [0-9a-f]{8}\)/)
  t.notOk(event.message!.includes(host), `no ${host} in "${event.message}"`)
  t.notMatch(event.message, /https?:|maintenance|503/, 'no URL or answer')
  const readyz = await request(`${enlist.url}/readyz?verbose`, { ca: enlist.pki.ca.cert })
  t.notOk(readyz.body.includes(host), '/readyz?verbose on the main listener names no backend host')
})
