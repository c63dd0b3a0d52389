// Patch building: every injected item, user values kept, escaping, size, idempotence.
// Patches are applied with fast-json-patch, as the apiserver would, and the result compared.
import t from 'tap'
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { admit } from '../../src/admission/review.js'
import type { AdmissionFacts } from '../../src/admission/review.js'
import { type Decision, injectionDigest, type InjectionStatus, openStatus, overridesOf, statusText } from '../../src/decision/status.js'
import type { CompiledPolicy } from '../../src/policy/policy.js'
import { applyOps, decodePatch, FACTS_ENABLED, makePod, makePolicy, makeRequest, TEST_KEYS } from '../helpers/fixtures.js'

const policy = makePolicy()

function inject(pod: V1Pod, p: CompiledPolicy = policy, f: AdmissionFacts = FACTS_ENABLED) {
  const out = admit(makeRequest(pod), p, f)
  if (out.verdict !== 'injected') throw new Error(`expected injection, got ${out.verdict}/${out.reason}: ${out.response.status?.message}`)
  const ops = decodePatch(out.response.patch)
  return { out, ops, pod: applyOps(pod, ops), warnings: out.response.warnings ?? [] }
}

const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } })
const DOWNWARD = [
  fieldEnv('POD_NAME', 'metadata.name'),
  fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
  fieldEnv('POD_UID', 'metadata.uid'),
  fieldEnv('POD_IP', 'status.podIP'),
  fieldEnv('POD_IPS', 'status.podIPs'),
  fieldEnv('HOST_IP', 'status.hostIP'),
  fieldEnv('NODE_NAME', 'spec.nodeName'),
  fieldEnv('POD_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
]
const names = (env: Array<{ name: string }> | undefined) => (env ?? []).map((e) => e.name)
const registrarOf = (pod: V1Pod): V1Container => {
  const c = pod.spec?.initContainers?.find((x) => x.name === 'enlist-registrar')
  if (!c) throw new Error('no registrar')
  return c
}
const envOf = (c: V1Container, name: string) => c.env?.find((e) => e.name === name)?.value
/** What admission decided, from the sealed status it wrote. */
const decisionOf = (pod: V1Pod) => (JSON.parse(pod.metadata!.annotations!['enlist.io/status']!) as { decision: Decision }).decision

t.test('a bare pod gets exactly every item', async (t) => {
  const pod = makePod({ metadata: { generateName: 'web-5d8f7c9b6-', namespace: 'shop' } })
  delete pod.metadata!.name
  const { pod: got, out, warnings } = inject(pod)
  const status = JSON.parse(got.metadata!.annotations!['enlist.io/status']!)
  t.same(warnings, [])
  t.same(got, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-5d8f7c9b6-',
      namespace: 'shop',
      labels: { 'enlist.io/managed': 'true', 'app.io/label': 'app.io-value' },
      annotations: { 'enlist.io/status': got.metadata!.annotations!['enlist.io/status'] },
    },
    spec: {
      initContainers: [
        {
          name: 'enlist-registrar',
          image: 'enlist:0.1.0',
          imagePullPolicy: 'IfNotPresent',
          args: ['register'],
          env: [
            ...DOWNWARD,
            { name: 'ENLIST_REGISTRATION_URL', value: 'https://enlist.enlist-system.svc:443/v1/registrations' },
            { name: 'ENLIST_TOKEN_FILE', value: '/var/run/secrets/enlist.io/token/token' },
            { name: 'ENLIST_TIMEOUT_SECONDS', value: '300' },
          ],
          resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
          securityContext: {
            runAsNonRoot: true,
            privileged: false,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [{ name: 'enlist-token', mountPath: '/var/run/secrets/enlist.io/token', readOnly: true }],
          terminationMessagePolicy: 'FallbackToLogsOnError',
        },
      ],
      containers: [
        {
          name: 'app',
          image: 'nginx:1.27',
          env: DOWNWARD,
          lifecycle: { preStop: { exec: { command: ['/bin/sh', '-c', 'sleep 5'] } } },
        },
      ],
      volumes: [
        {
          name: 'enlist-token',
          projected: {
            defaultMode: 0o444,
            sources: [{ serviceAccountToken: { audience: 'enlist', expirationSeconds: 3600, path: 'token' } }],
          },
        },
      ],
      readinessGates: [{ conditionType: 'enlist.io/registered' }],
    },
  })
  t.match(status.seal, { key: TEST_KEYS.signing.id, mac: /^[A-Za-z0-9_-]{43}$/ })
  delete status.seal
  t.equal(status.digest, injectionDigest(got, status.injected), 'the digest is of the pod as the patch leaves it')
  t.same(status, {
    version: 3,
    policy: policy.hash,
    decision: { namespace: 'shop', serviceAccount: 'default', service: 'web-5d8f7c9b6', metadata: {}, dependsOn: [] },
    injected: {
      initContainers: ['enlist-registrar'],
      volumes: ['enlist-token'],
      env: { app: DOWNWARD.map((e) => e.name) },
      preStop: ['app'],
      readinessGates: ['enlist.io/registered'],
      labels: ['enlist.io/managed', 'app.io/label'],
    },
    kept: [],
    digest: status.digest,
  })
  t.equal(out.reason, 'namespace-opt-in')
  t.same(out.workload, { kind: 'Pod', name: 'web-5d8f7c9b6' })
})

t.test('missing arrays and maps are created whole, present ones appended to', async (t) => {
  const bare = inject(makePod()).ops.map((o) => o.path)
  t.same(bare, [
    '/metadata/labels',
    '/spec/initContainers',
    '/spec/volumes',
    '/spec/containers/0/env',
    '/spec/containers/0/lifecycle',
    '/spec/readinessGates',
    '/metadata/annotations',
  ])
  const full = makePod({
    metadata: { name: 'p', namespace: 'shop', labels: { a: 'b' }, annotations: { c: 'd' } },
    spec: {
      initContainers: [{ name: 'migrate', image: 'm' }],
      containers: [{ name: 'app', image: 'x', env: [{ name: 'A', value: '1' }], lifecycle: { postStart: { exec: { command: ['true'] } } } }],
      volumes: [{ name: 'data', emptyDir: {} }],
      readinessGates: [{ conditionType: 'example.com/ready' }],
    },
  })
  const { ops, pod } = inject(full)
  t.same(
    ops.map((o) => o.path),
    [
      '/metadata/labels/enlist.io~1managed',
      '/metadata/labels/app.io~1label',
      '/spec/initContainers/0',
      '/spec/volumes/-',
      ...Array.from({ length: 8 }, (_, i) => `/spec/containers/0/env/${i}`),
      '/spec/containers/0/lifecycle/preStop',
      '/spec/readinessGates/-',
      '/metadata/annotations/enlist.io~1status',
    ],
  )
  t.same(pod.metadata?.labels, { a: 'b', 'enlist.io/managed': 'true', 'app.io/label': 'app.io-value' })
  t.equal(pod.metadata?.annotations?.c, 'd')
  t.same(pod.spec?.initContainers?.map((c) => c.name), ['enlist-registrar', 'migrate'])
  t.same(pod.spec?.volumes?.map((v) => v.name), ['data', 'enlist-token'])
  t.same(names(pod.spec?.containers[0]?.env), [...DOWNWARD.map((e) => e.name), 'A'])
  t.same(pod.spec?.containers[0]?.lifecycle?.postStart, { exec: { command: ['true'] } }, 'postStart kept')
  t.ok(pod.spec?.containers[0]?.lifecycle?.preStop?.exec)
  t.same(pod.spec?.readinessGates, [{ conditionType: 'example.com/ready' }, { conditionType: 'enlist.io/registered' }])
})

t.test('nothing the user wrote is overwritten but enlist\'s own keys, and the warnings say what was kept and replaced', async (t) => {
  const userPreStop = { exec: { command: ['nginx', '-s', 'quit'] } }
  const pod = makePod({
    metadata: { name: 'p', namespace: 'shop', labels: { 'app.io/label': 'custom', 'enlist.io/managed': 'true' } },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'x',
          env: [
            { name: 'POD_IP', value: 'mine' },
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
          ],
          lifecycle: { preStop: userPreStop },
        },
        { name: 'side', image: 'y', lifecycle: { preStop: { httpGet: { port: 8080, path: '/drain' } } } },
      ],
      readinessGates: [{ conditionType: 'enlist.io/registered' }],
    },
  })
  const { pod: got, warnings, ops } = inject(pod)
  const app = got.spec!.containers[0]!
  t.same(app.env?.find((e) => e.name === 'POD_IP'), { name: 'POD_IP', value: 'mine' })
  t.equal(app.env?.filter((e) => e.name === 'POD_IP').length, 1, 'no duplicate env name')
  t.equal(app.env?.length, 8)
  t.same(app.lifecycle?.preStop, userPreStop)
  t.same(got.spec!.containers[1]!.lifecycle?.preStop, { httpGet: { port: 8080, path: '/drain' } })
  t.equal(got.metadata?.labels?.['app.io/label'], 'app.io-value', 'the discovery label is enlist\'s')
  t.ok(ops.some((o) => o.op === 'replace' && o.path === '/metadata/labels/app.io~1label'))
  t.equal(got.spec?.readinessGates?.length, 1, 'readiness gate not duplicated')
  t.notOk(ops.some((o) => o.path.startsWith('/spec/readinessGates')))
  t.same(warnings, [
    'enlist: replaced your label app.io/label="custom" with "app.io-value": only enlist sets it',
    'enlist: kept your env POD_IP, NODE_NAME in container app',
    "enlist: kept your preStop hook in containers app, side; enlist's 5s drain was not added",
  ])
  const status = JSON.parse(got.metadata!.annotations!['enlist.io/status']!)
  t.same(status.kept, ['env app/POD_IP', 'env app/NODE_NAME', 'preStop app', 'preStop side'])
  t.same(status.injected.labels, ['app.io/label'], 'managed label already right; the discovery label replaced')
})

t.test('a discovery record or managed label the tenant wrote does not survive admission', async (t) => {
  const pod = makePod({
    metadata: {
      name: 'p',
      namespace: 'shop',
      labels: { 'enlist.io/managed': 'no', 'app.io/label': 'app.io-value' },
      annotations: { 'app.io/annotation': Buffer.from('[{"k":"ip","v":"203.0.113.7"}]').toString('base64'), note: 'mine' },
    },
  })
  const { pod: got, warnings, ops } = inject(pod)
  t.equal(got.metadata?.annotations?.['app.io/annotation'], undefined, 'the forged record is removed')
  t.equal(got.metadata?.annotations?.note, 'mine', 'other annotations stay')
  t.equal(got.metadata?.labels?.['enlist.io/managed'], 'true')
  t.ok(ops.some((o) => o.op === 'remove' && o.path === '/metadata/annotations/app.io~1annotation' && !('value' in o)))
  t.match(warnings, [/replaced your label enlist\.io\/managed="no"/, /removed your annotation app\.io\/annotation/])
})

t.test("user's env references to our variables resolve: ours come first", async (t) => {
  const pod = makePod({
    spec: { containers: [{ name: 'app', image: 'x', env: [{ name: 'URL', value: 'http://$(POD_IP):8080' }] }] },
  })
  const env = names(inject(pod).pod.spec?.containers[0]?.env)
  t.ok(env.indexOf('POD_IP') < env.indexOf('URL'))
  t.equal(env.at(-1), 'URL')
})

t.test('keys with "/" are escaped; pointer escaping handles "~" first', async (t) => {
  const p = makePolicy({ discovery: { label: { key: 'discovery.acme.com/svc', value: 'x' }, annotation: 'discovery.acme.com/meta' } })
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', labels: { other: '1' } } })
  const { ops, pod: got } = inject(pod, p)
  t.ok(ops.some((o) => o.path === '/metadata/labels/discovery.acme.com~1svc'))
  t.equal(got.metadata?.labels?.['discovery.acme.com/svc'], 'x')
  const { pointer, escapeToken, unescapeToken } = await import('../../src/lib/json-pointer.js')
  t.equal(escapeToken('a~1/b'), 'a~01~1b')
  t.equal(unescapeToken(escapeToken('a~1/b')), 'a~1/b')
  t.equal(escapeToken('~/'), '~0~1')
  t.equal(escapeToken('plain'), 'plain')
  t.equal(pointer('metadata', 'annotations', 'x/y~z', 3), '/metadata/annotations/x~1y~0z/3')
  t.equal(unescapeToken('~01'), '~1', '"~01" is "~1", not "/"')
})

t.test('a pod with 1500 env vars: ours prepended, theirs intact, linear ops', async (t) => {
  const env = Array.from({ length: 1500 }, (_, i) => ({ name: `VAR_${i}`, value: String(i) }))
  env[700] = { name: 'POD_NAME', value: 'user' }
  const pod = makePod({ spec: { containers: [{ name: 'app', image: 'x', env }] } })
  const { pod: got, ops } = inject(pod)
  const out = got.spec!.containers[0]!.env!
  t.equal(out.length, 1507)
  t.same(names(out.slice(0, 7)), ['POD_NAMESPACE', 'POD_UID', 'POD_IP', 'POD_IPS', 'HOST_IP', 'NODE_NAME', 'POD_SERVICE_ACCOUNT'])
  t.same(out.slice(7), env, 'user env unchanged and in order')
  t.equal(ops.length, 13, 'a fixed number of ops, whatever the env size')
})

t.test('several containers: each gets env and preStop', async (t) => {
  const pod = makePod({
    spec: {
      containers: [
        { name: 'a', image: 'x' },
        { name: 'b', image: 'y', env: [] },
        { name: 'c', image: 'z', lifecycle: {} },
      ],
    },
  })
  const { pod: got } = inject(pod)
  for (const c of got.spec!.containers) {
    t.equal(c.env?.length, 8, `${c.name} env`)
    t.ok(c.lifecycle?.preStop, `${c.name} preStop`)
  }
})

t.test('policy selects containers for env and preStop', async (t) => {
  const p = makePolicy({ downwardAPI: { containers: ['b'], variables: ['POD_NAME', 'POD_IP'] }, preStop: { containers: ['a'] } })
  const pod = makePod({ spec: { containers: [{ name: 'a', image: 'x' }, { name: 'b', image: 'y' }] } })
  const { pod: got } = inject(pod, p)
  t.equal(got.spec!.containers[0]!.env, undefined)
  t.same(names(got.spec!.containers[1]!.env), ['POD_NAME', 'POD_IP'])
  t.ok(got.spec!.containers[0]!.lifecycle?.preStop)
  t.equal(got.spec!.containers[1]!.lifecycle, undefined)
  t.same(names(registrarOf(got).env).slice(0, 8), DOWNWARD.map((e) => e.name), 'the registrar always gets all eight variables')
})

t.test('no variables, no env ops', async (t) => {
  const p = makePolicy({ downwardAPI: { variables: [] } })
  const { ops } = inject(makePod(), p)
  t.notOk(ops.some((o) => o.path.includes('/env')))
})

t.test('registrar position last', async (t) => {
  const p = makePolicy({ registrar: { position: 'last' } })
  const pod = makePod({ spec: { initContainers: [{ name: 'migrate', image: 'm' }], containers: [{ name: 'app', image: 'x' }] } })
  const { pod: got, ops } = inject(pod, p)
  t.same(got.spec?.initContainers?.map((c) => c.name), ['migrate', 'enlist-registrar'])
  t.ok(ops.some((o) => o.path === '/spec/initContainers/-'))
})

t.test('a pod that brings its own enlist-registrar or enlist-token is refused where enlist injects', async (t) => {
  const cases: Array<[string, V1Pod['spec'], RegExp]> = [
    ['init container', { initContainers: [{ name: 'enlist-registrar', image: 'mine' }], containers: [{ name: 'app', image: 'x' }] }, /init container enlist-registrar is reserved for enlist/],
    ['container', { containers: [{ name: 'app', image: 'x' }, { name: 'enlist-registrar', image: 'mine' }] }, /^container enlist-registrar is reserved/],
    ['volume', { containers: [{ name: 'app', image: 'x' }], volumes: [{ name: 'enlist-token', emptyDir: {} }] }, /volume enlist-token is reserved/],
  ]
  for (const [what, spec, message] of cases) {
    const out = admit(makeRequest(makePod({ spec })), policy, FACTS_ENABLED)
    t.equal(out.verdict, 'denied', what)
    t.equal(out.reason, 'reserved-name', what)
    t.match(out.response.status?.message, message, what)
  }
  // Where enlist does not inject, nothing is refused: such a pod cannot register anyway.
  const plain = admit(makeRequest(makePod({ spec: cases[0]![1] })), policy, { ...FACTS_ENABLED, namespaceLabels: {} })
  t.equal(plain.verdict, 'skipped')
})

t.test('preStop modes', async (t) => {
  const v120 = { ...FACTS_ENABLED, serverVersion: { major: 1, minor: 20 } }
  const v130 = { ...FACTS_ENABLED, serverVersion: { major: 1, minor: 30 } }
  const v129 = { ...FACTS_ENABLED, serverVersion: { major: 1, minor: 29 } }
  const unknown = { ...FACTS_ENABLED, serverVersion: undefined }
  const preStopOf = (p: CompiledPolicy, f: AdmissionFacts) => inject(makePod(), p, f).pod.spec!.containers[0]!.lifecycle?.preStop

  t.same(preStopOf(policy, v120), { exec: { command: ['/bin/sh', '-c', 'sleep 5'] } }, 'auto on 1.20: exec')
  t.same(preStopOf(policy, v129), { exec: { command: ['/bin/sh', '-c', 'sleep 5'] } }, 'auto on 1.29: exec (sleep is alpha, off)')
  t.same(preStopOf(policy, v130), { sleep: { seconds: 5 } }, 'auto on 1.30: sleep')
  t.same(preStopOf(policy, unknown), { exec: { command: ['/bin/sh', '-c', 'sleep 5'] } }, 'auto, version unknown: exec')
  t.same(preStopOf(policy, { ...FACTS_ENABLED, serverVersion: { major: 2, minor: 0 } }), { sleep: { seconds: 5 } })

  const sleep = makePolicy({ preStop: { mode: 'sleep', drainSeconds: 12 } })
  t.same(preStopOf(sleep, v130), { sleep: { seconds: 12 } })
  t.same(preStopOf(sleep, unknown), { sleep: { seconds: 12 } }, 'sleep, version unknown: as asked')
  const fallback = inject(makePod(), sleep, v120)
  t.same(fallback.pod.spec!.containers[0]!.lifecycle?.preStop, { exec: { command: ['/bin/sh', '-c', 'sleep 12'] } })
  t.match(fallback.warnings, [/preStop mode sleep needs Kubernetes >= 1\.30; this cluster is 1\.20/])

  const exec = makePolicy({ preStop: { mode: 'exec', exec: { command: ['/drain', '--wait'] } } })
  t.same(preStopOf(exec, v130), { exec: { command: ['/drain', '--wait'] } }, 'custom exec command')

  const none = makePolicy({ preStop: { mode: 'none' } })
  t.equal(inject(makePod(), none).pod.spec!.containers[0]!.lifecycle, undefined)
})

t.test('a drain not shorter than the grace period is warned about', async (t) => {
  const p = makePolicy({ preStop: { drainSeconds: 30 } })
  t.match(inject(makePod(), p).warnings, [/30s preStop drain is not shorter than terminationGracePeriodSeconds \(30\)/])
  const pod = makePod({ spec: { terminationGracePeriodSeconds: 60, containers: [{ name: 'app', image: 'x' }] } })
  t.same(inject(pod, p).warnings, [])
})

t.test('readiness gate off by policy or, where allowed, by annotation', async (t) => {
  const off = makePolicy({ readinessGate: { enabled: false } })
  t.equal(inject(makePod(), off).pod.spec?.readinessGates, undefined)
  const allow = makePolicy({ tenantOverrides: { allowed: ['readinessGate'] } })
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/readiness-gate': 'false' } } })
  t.equal(inject(pod, allow).pod.spec?.readinessGates, undefined)
  const ignored = inject(pod, policy)
  t.same(ignored.pod.spec?.readinessGates, [{ conditionType: 'enlist.io/registered' }], 'not allowed: ignored')
  t.match(ignored.warnings, [/annotation enlist\.io\/readiness-gate ignored: the policy does not let tenants set readinessGate/])
})

t.test('tenant overrides that are allowed take effect', async (t) => {
  const all = makePolicy({
    tenantOverrides: {
      allowed: ['dependsOn', 'metadata', 'service', 'drainSeconds', 'preStopMode', 'registrarTimeout', 'envContainers'],
    },
  })
  const pod = makePod({
    metadata: {
      name: 'p',
      namespace: 'shop',
      annotations: {
        'enlist.io/depends-on': 'mysql:3306, payments/ledger',
        'enlist.io/metadata': '{"interface":"com.acme.Orders","group":"g1"}',
        'enlist.io/service': 'orders',
        'enlist.io/drain-seconds': '9',
        'enlist.io/registrar-timeout': '2m',
        'enlist.io/env-containers': 'side',
      },
    },
    spec: { containers: [{ name: 'app', image: 'x' }, { name: 'side', image: 'y' }] },
  })
  const { pod: got, warnings } = inject(pod, all)
  const r = registrarOf(got)
  t.same(decisionOf(got), {
    namespace: 'shop',
    serviceAccount: 'default',
    service: 'orders',
    metadata: { interface: 'com.acme.Orders', group: 'g1' },
    dependsOn: ['shop/mysql:3306', 'payments/ledger'],
  })
  t.equal(envOf(r, 'ENLIST_SERVICE'), undefined, 'registration parameters are not in the pod spec')
  t.equal(envOf(r, 'ENLIST_TIMEOUT_SECONDS'), '120')
  t.same(got.spec!.containers[0]!.lifecycle?.preStop, { exec: { command: ['/bin/sh', '-c', 'sleep 9'] } })
  t.equal(got.spec!.containers[0]!.env, undefined)
  t.equal(got.spec!.containers[1]!.env?.length, 8)
  t.same(warnings, [])

  const none = inject(makePod({ ...pod }), makePolicy({ tenantOverrides: { allowed: [] } }))
  t.same(decisionOf(none.pod), { namespace: 'shop', serviceAccount: 'default', service: 'p', metadata: {}, dependsOn: [] })
  t.equal(none.warnings.length, 6, 'each ignored annotation is named')
})

t.test('prestop mode annotation', async (t) => {
  const p = makePolicy({ tenantOverrides: { allowed: ['preStopMode'] } })
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/prestop': 'none' } } })
  t.equal(inject(pod, p).pod.spec!.containers[0]!.lifecycle, undefined)
})

t.test('env-containers naming an absent container warns', async (t) => {
  const p = makePolicy({ tenantOverrides: { allowed: ['envContainers'] } })
  const pod = makePod({ metadata: { name: 'p', namespace: 'shop', annotations: { 'enlist.io/env-containers': 'app,ghost' } } })
  t.match(inject(pod, p).warnings, [/names containers the pod does not have: ghost/])
})

t.test('service name: annotation, then app.kubernetes.io/name, then app, then workload', async (t) => {
  const svc = (meta: V1Pod['metadata']) => decisionOf(inject(makePod({ metadata: meta })).pod).service
  t.equal(svc({ name: 'p', namespace: 'shop', annotations: { 'enlist.io/service': 'orders' }, labels: { app: 'a' } }), 'orders')
  t.equal(svc({ name: 'p', namespace: 'shop', labels: { 'app.kubernetes.io/name': 'k8s-name', app: 'a' } }), 'k8s-name')
  t.equal(svc({ name: 'p', namespace: 'shop', labels: { app: 'a' } }), 'a')
  t.equal(
    svc({
      generateName: 'checkout-7d9c5b6f4-',
      namespace: 'shop',
      labels: { 'pod-template-hash': '7d9c5b6f4' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'checkout-7d9c5b6f4', uid: 'u', controller: true }],
    }),
    'checkout',
  )
})

t.test('CA bundle: the policy, else the server', async (t) => {
  const ca = '-----BEGIN CERTIFICATE-----\nserver\n-----END CERTIFICATE-----\n'
  const r1 = registrarOf(inject(makePod(), policy, { ...FACTS_ENABLED, caBundle: ca }).pod)
  t.equal(envOf(r1, 'ENLIST_CA_BUNDLE'), ca)
  const r2 = registrarOf(inject(makePod(), policy).pod)
  t.equal(envOf(r2, 'ENLIST_CA_BUNDLE'), undefined, 'no CA known: none injected')
})

t.test('custom registrar command, image and resources from the policy', async (t) => {
  const p = makePolicy({
    registrar: {
      image: 'registry.bank.example/platform/enlist:1.2.3',
      imagePullPolicy: 'Always',
      command: ['/enlist'],
      args: ['register', '--verbose'],
      runAsUser: 1001,
      resources: { requests: { cpu: '5m' } },
      tokenExpirationSeconds: 600,
    },
  })
  const got = inject(makePod(), p).pod
  const r = registrarOf(got)
  t.equal(r.image, 'registry.bank.example/platform/enlist:1.2.3')
  t.equal(r.imagePullPolicy, 'Always')
  t.same(r.command, ['/enlist'])
  t.same(r.args, ['register', '--verbose'])
  t.equal(r.securityContext?.runAsUser, 1001)
  t.equal(r.securityContext?.runAsGroup, 1001)
  t.same(r.resources, { requests: { cpu: '5m' } })
  t.equal(got.spec?.volumes?.[0]?.projected?.sources?.[0]?.serviceAccountToken?.expirationSeconds, 600)
})

t.test('apply, then inject again: a no-op', async (t) => {
  const first = inject(makePod({ metadata: { name: 'p', namespace: 'shop', labels: { app: 'x' } } }))
  const again = admit(makeRequest(first.pod), policy, FACTS_ENABLED)
  t.equal(again.verdict, 'skipped')
  t.equal(again.reason, 'already-injected')
  t.equal(again.response.patch, undefined)
  t.equal(again.response.allowed, true)
})

t.test('the status annotation alone makes re-injection a no-op, whatever else changed', async (t) => {
  const first = inject(makePod())
  const changed = structuredClone(first.pod)
  changed.spec!.containers.push({ name: 'late-sidecar', image: 'z' })
  const again = admit(makeRequest(changed), policy, FACTS_ENABLED)
  t.equal(again.reason, 'already-injected')
})

// --- issue 24: a copied seal buys nothing ----------------------------------------

/** The pod as the apiserver hands it back on reinvocation: defaulted (terminationMessagePath,
 *  requests from limits), re-encoded in another key order, Go's empty fields omitted. */
function roundTrip(pod: V1Pod): V1Pod {
  const reorder = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.length === 0 ? undefined : v.map(reorder)
    if (v === null || typeof v !== 'object') return v === '' ? undefined : v
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).reverse()) {
      const x = reorder((v as Record<string, unknown>)[k])
      if (x !== undefined) out[k] = x
    }
    return out
  }
  const p = reorder(structuredClone(pod)) as V1Pod
  for (const c of [...(p.spec!.initContainers ?? []), ...p.spec!.containers]) {
    c.terminationMessagePath ??= '/dev/termination-log'
    if (c.resources?.limits) c.resources.requests = { ...c.resources.limits, ...c.resources.requests }
  }
  return p
}

t.test('reinvocation: enlist\'s own output counts as injected after other webhooks ran', async (t) => {
  const first = inject(makePod({ spec: { containers: [{ name: 'app', image: 'shop/orders:1' }] } }), makePolicy({ registrar: { args: [] } })).pod
  const later = roundTrip(first)
  // Istio: an init container, a sidecar, volumes, an annotation; Kyverno: an image rewrite;
  // Vault: an env entry of its own in the app
  later.spec!.initContainers!.unshift({ name: 'istio-init', image: 'istio/proxyv2', args: ['istio-iptables'] })
  later.spec!.containers.push({ name: 'istio-proxy', image: 'istio/proxyv2', env: [{ name: 'POD_NAME', value: 'x' }] })
  later.spec!.volumes!.push({ name: 'istio-envoy', emptyDir: {} })
  later.metadata!.annotations!['sidecar.istio.io/status'] = '{}'
  later.spec!.containers[0]!.image = 'mirror.bank.example/shop/orders:1'
  later.spec!.containers[0]!.env!.push({ name: 'VAULT_ADDR', value: 'https://vault' })
  const again = admit(makeRequest(later), makePolicy({ registrar: { args: [] } }), FACTS_ENABLED)
  t.equal(again.verdict, 'skipped')
  t.equal(again.reason, 'already-injected')
  t.equal(again.response.patch, undefined, 'nothing to add')
})

t.test('a sealed status copied onto a pod that does not carry enlist\'s injection is denied as tampered', async (t) => {
  const injected = inject(makePod({ spec: { containers: [{ name: 'app', image: 'x' }] } })).pod
  const denied = (what: string, change: (p: V1Pod) => void, namespaceLabels: Record<string, string> | undefined = FACTS_ENABLED.namespaceLabels) => {
    const copy = structuredClone(injected)
    copy.metadata!.name = 'web-2'
    change(copy)
    const out = admit(makeRequest(copy), policy, { ...FACTS_ENABLED, namespaceLabels })
    t.equal(out.verdict, 'denied', what)
    t.equal(out.reason, 'tampered', what)
    t.match(out.response.status?.message, /^enlist\.io\/status was sealed by enlist for another pod: .*Create the pod without enlist\.io\/status/, what)
    return out
  }
  const r = (p: V1Pod) => registrarOf(p)
  denied("the tenant's own registrar image", (p) => (r(p).image = 'evil/registrar:1'))
  denied("the tenant's registrar command", (p) => (r(p).command = ['/bin/sh', '-c', 'curl evil']))
  denied("the tenant's registrar env", (p) => r(p).env!.push({ name: 'HTTPS_PROXY', value: 'http://evil:3128' }))
  denied('a registration URL of its own', (p) => (r(p).env!.find((e) => e.name === 'ENLIST_REGISTRATION_URL')!.value = 'https://evil/v1'))
  denied('a privileged registrar', (p) => (r(p).securityContext!.privileged = true))
  denied('no registrar at all', (p) => (p.spec!.initContainers = []))
  denied("the tenant's token volume (another audience)", (p) => (p.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.audience = 'vault'))
  denied('a token that lives longer', (p) => (p.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds = 86400))
  denied('an env value of its own under a name enlist injected', (p) => (p.spec!.containers[0]!.env!.find((e) => e.name === 'POD_IP')!.valueFrom!.fieldRef!.fieldPath = 'status.hostIP'))
  denied('a second entry of a name enlist injected', (p) => p.spec!.containers[0]!.env!.push({ name: 'POD_IP', value: '10.9.9.9' }))
  denied('no preStop hook', (p) => delete p.spec!.containers[0]!.lifecycle)
  denied('no readiness gate', (p) => delete p.spec!.readinessGates)
  denied('another service account', (p) => (p.spec!.serviceAccountName = 'admin'))
  const out = denied('in a namespace enlist would skip: denied all the same (enlist cannot tell which entry calls it)', (p) => (r(p).image = 'evil:1'), undefined)
  t.match(out.response.status?.message, /init container enlist-registrar, volume enlist-token, env of container app, preStop hook of app, readiness gate enlist\.io\/registered/)
})

t.test("a faithful copy of an injected pod counts as injected; the records a tenant wrote are removed", async (t) => {
  const injected = inject(makePod()).pod
  const copy = roundTrip(injected)
  copy.metadata!.annotations!['app.io/annotation'] = 'eyJmb3JnZWQiOnRydWV9'
  copy.metadata!.labels!['app.io/label'] = 'other'
  copy.metadata!.labels!['dubbo.io/label'] = 'dubbo.io.provider' // not enlist's: no dubbo layout in this policy
  const out = admit(makeRequest(copy), policy, FACTS_ENABLED)
  t.equal(out.reason, 'already-injected')
  const after = applyOps(copy, decodePatch(out.response.patch))
  t.equal(after.metadata!.annotations!['app.io/annotation'], undefined)
  t.equal(after.metadata!.labels!['app.io/label'], 'app.io-value')
  t.equal(after.metadata!.labels!['dubbo.io/label'], 'dubbo.io.provider')
  t.match(out.response.warnings, [/replaced your label app\.io\/label/, /removed your annotation app\.io\/annotation/])
})

t.test('a status sealed by the previous version (2) proves no injection at admission', async (t) => {
  const injected = inject(makePod()).pod
  const v3 = JSON.parse(injected.metadata!.annotations!['enlist.io/status']!) as InjectionStatus
  const { seal: _seal, digest: _digest, ...rest } = v3
  const v2 = statusText({ ...rest, version: 2 }, TEST_KEYS.signing)
  t.match(openStatus(v2, TEST_KEYS.ring, 'shop'), { ok: true, status: { version: 2 } }, 'registration still reads it')
  const copy = structuredClone(injected)
  copy.metadata!.annotations!['enlist.io/status'] = v2
  const out = admit(makeRequest(copy), policy, FACTS_ENABLED)
  t.equal(out.verdict, 'denied', 'with enlist\'s fields: they are refused as the tenant\'s')
  t.equal(out.reason, 'reserved-name')
  const bare = makePod({ metadata: { name: 'web-3', namespace: 'shop', annotations: { 'enlist.io/status': v2 } } })
  const fresh = admit(makeRequest(bare), policy, FACTS_ENABLED)
  t.equal(fresh.verdict, 'injected', 'without them: injected afresh')
  t.match(fresh.response.warnings, [/earlier enlist \(status version 2\)/])
})

t.test('the status records the tenant overrides its decision used', async (t) => {
  const p = makePolicy({ tenantOverrides: { allowed: ['service', 'metadata', 'dependsOn'] } })
  const got = inject(makePod({ metadata: { name: 'w', namespace: 'shop', annotations: { 'enlist.io/service': 'orders', 'enlist.io/drain-seconds': '3' } } }), p).pod
  const status = JSON.parse(got.metadata!.annotations!['enlist.io/status']!) as InjectionStatus
  t.same(status.overrides, ['service'], 'service only: drain-seconds shapes the injection, not the decision')
  t.same(overridesOf(status), ['service'])
  const none = JSON.parse(inject(makePod()).pod.metadata!.annotations!['enlist.io/status']!) as InjectionStatus
  t.equal(none.overrides, undefined)
  t.same(overridesOf({ version: 2, decision: { ...none.decision, metadata: { a: '1' } } }), ['metadata'], 'version 2: inferred from the decision')
})

t.test('layout dubbo: the dubbo.io record keys a tenant wrote are removed at admission', async (t) => {
  const p = makePolicy({
    registry: { backends: [{ name: 'k8s', type: 'kubernetes', layout: 'dubbo' }] },
    tenantOverrides: { allowed: ['metadata'] },
    tenancy: { interfaces: [{ namespaces: ['*'], interfaces: ['*'] }] },
  })
  const pod = makePod({
    metadata: {
      name: 'w',
      namespace: 'shop',
      labels: { 'dubbo.io/label': 'dubbo.io.provider' },
      annotations: { 'enlist.io/metadata': '{"interface":"com.acme.Orders"}', 'dubbo.io/annotation': 'W3siayI6Ii9kdWJibyIsInYiOiIifV0=' },
    },
    spec: { containers: [{ name: 'app', image: 'x', ports: [{ name: 'dubbo', containerPort: 20880 }] }] },
  })
  const { pod: got, warnings } = inject(pod, p)
  t.equal(got.metadata!.labels!['dubbo.io/label'], undefined)
  t.equal(got.metadata!.annotations!['dubbo.io/annotation'], undefined)
  t.match(warnings, [/removed your label dubbo\.io\/label="dubbo\.io\.provider": enlist sets it once the pod is registered/, /removed your annotation dubbo\.io\/annotation/])
  // and on a copy of a registered pod (which carries enlist's own records)
  const registered = structuredClone(got)
  registered.metadata!.labels!['dubbo.io/label'] = 'dubbo.io.provider'
  registered.metadata!.annotations!['dubbo.io/annotation'] = 'W10='
  const out = admit(makeRequest(registered), p, FACTS_ENABLED)
  t.equal(out.reason, 'already-injected')
  const after = applyOps(registered, decodePatch(out.response.patch))
  t.equal(after.metadata!.labels!['dubbo.io/label'], undefined)
  t.equal(after.metadata!.annotations!['dubbo.io/annotation'], undefined)
})

t.test('injection leaves the input pod untouched', async (t) => {
  const pod = makePod({ spec: { containers: [{ name: 'app', image: 'x', env: [{ name: 'A', value: '1' }] }] } })
  const before = structuredClone(pod)
  inject(pod)
  t.same(pod, before)
})

t.test('no registrar.runAsUser: no fixed UID or GID, still non-root (OpenShift restricted-v2)', async (t) => {
  const r = registrarOf(inject(makePod(), makePolicy({})).pod)
  t.equal(r.securityContext?.runAsUser, undefined)
  t.equal(r.securityContext?.runAsGroup, undefined)
  t.match(r.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
})
