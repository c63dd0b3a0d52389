// Captures realistic AdmissionReviews, exactly as a v1.20 kube-apiserver sends them, into
// bench/fixtures/: a recording webhook is registered, and Deployments of each shape are
// created in a labelled namespace (and one in an unlabelled one: the fast path).
//   npx tsx bench/capture.ts

import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { makePki } from '../test/helpers/https.js'
import { startControlPlane } from '../test/harness/control-plane.js'
import { waitFor } from '../test/harness/processes.js'

const OUT = new URL('./fixtures/', import.meta.url).pathname

const env = (n: number, prefix = 'VAR') => Array.from({ length: n }, (_, i) => ({ name: `${prefix}_${i}`, value: `value-${i}-${'x'.repeat(i % 7)}` }))
const probe = (path: string, port: string) => ({ httpGet: { path, port }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 })
const typicalContainers = [
  {
    name: 'app',
    image: 'registry.example.com/acme/orders:2.14.1',
    ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9090 }],
    env: [
      ...env(22, 'APP'),
      { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'orders-db', key: 'password' } } },
      { name: 'JAVA_OPTS', value: '-Xms512m -Xmx512m -XX:+UseG1GC -Dfile.encoding=UTF-8' },
    ],
    envFrom: [{ configMapRef: { name: 'orders-config' } }],
    resources: { requests: { cpu: '500m', memory: '768Mi' }, limits: { cpu: '2', memory: '1Gi' } },
    readinessProbe: probe('/actuator/health/readiness', 'http'),
    livenessProbe: probe('/actuator/health/liveness', 'http'),
    startupProbe: probe('/actuator/health', 'http'),
    volumeMounts: [
      { name: 'config', mountPath: '/etc/orders' },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'certs', mountPath: '/etc/ssl/orders', readOnly: true },
    ],
    securityContext: { runAsNonRoot: true, runAsUser: 10001, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
  },
  {
    name: 'log-shipper',
    image: 'registry.example.com/platform/fluent-bit:2.2.0',
    args: ['-c', '/fluent-bit/etc/fluent-bit.conf'],
    env: env(4, 'FLB'),
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
    volumeMounts: [{ name: 'tmp', mountPath: '/var/log/app' }, { name: 'flb', mountPath: '/fluent-bit/etc' }],
  },
]
const typicalSpec = {
  containers: typicalContainers,
  volumes: [
    { name: 'config', configMap: { name: 'orders-config' } },
    { name: 'tmp', emptyDir: { sizeLimit: '1Gi' } },
    { name: 'certs', secret: { secretName: 'orders-tls' } },
    { name: 'flb', configMap: { name: 'fluent-bit' } },
  ],
  affinity: {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app: 'orders' } } } }],
    },
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'node-role.example.com/apps', operator: 'Exists' }] }] },
    },
  },
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'apps', effect: 'NoSchedule' }],
  terminationGracePeriodSeconds: 45,
  securityContext: { fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
}
const annotations = { 'enlist.io/depends-on': 'orders-db:5432, payments/ledger', 'enlist.io/metadata': '{"interface":"com.acme.Orders","group":"g1","version":"2.14.1"}', 'prometheus.io/scrape': 'true' }

const shapes: Record<string, { ns: string; labels?: Record<string, string>; annotations?: Record<string, string>; spec: unknown }> = {
  small: { ns: 'shop', spec: { containers: [{ name: 'web', image: 'nginx:1.27', ports: [{ containerPort: 80 }] }] } },
  typical: { ns: 'shop', labels: { 'app.kubernetes.io/name': 'orders', 'app.kubernetes.io/version': '2.14.1', team: 'payments' }, annotations, spec: typicalSpec },
  large: {
    ns: 'shop',
    labels: { 'app.kubernetes.io/name': 'monolith' },
    annotations: { ...annotations, 'example.com/config': JSON.stringify(env(430, 'CFG')) },
    spec: {
      ...typicalSpec,
      containers: [
        ...typicalContainers,
        ...Array.from({ length: 4 }, (_, i) => ({ ...typicalContainers[0], name: `worker-${i}`, ports: [{ containerPort: 7000 + i }], env: env(60, `W${i}`) })),
      ],
    },
  },
  env1500: { ns: 'shop', labels: { 'app.kubernetes.io/name': 'legacy' }, spec: { containers: [{ name: 'app', image: 'legacy:1', env: env(1500) }] } },
  'not-opted-in': { ns: 'plain', labels: { 'app.kubernetes.io/name': 'orders' }, annotations: { 'prometheus.io/scrape': 'true' }, spec: typicalSpec },
}

const cp = await startControlPlane({ log: (l) => console.error(l) })
try {
  const pki = await makePki()
  const captured = new Map<string, string>()
  const server = https.createServer({ cert: pki.serving.cert, key: pki.serving.key }, (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const review = JSON.parse(body) as { request: { uid: string; object: { metadata: { labels?: Record<string, string> } } } }
      const shape = review.request.object.metadata.labels?.['bench-shape']
      if (shape && !captured.has(shape)) captured.set(shape, body)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  await cp.client.create('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'capture' },
    webhooks: [
      {
        name: 'capture.bench.enlist.io',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: 'Fail',
        clientConfig: { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/mutate`, caBundle: Buffer.from(pki.ca.cert).toString('base64') },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
      },
    ],
  })
  await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })
  await cp.namespace('plain')
  for (const [name, s] of Object.entries(shapes)) {
    const labels = { app: name, 'bench-shape': name, ...(s.labels ?? {}) }
    await cp.client.create(`/apis/apps/v1/namespaces/${s.ns}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: `bench-${name}` },
      spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels, annotations: s.annotations ?? {} }, spec: s.spec } },
    })
  }
  await waitFor('every shape', async () => captured.size === Object.keys(shapes).length, 60_000, 200)
  for (const [name, body] of captured) {
    writeFileSync(`${OUT}${name}.json`, JSON.stringify(JSON.parse(body), null, 1) + '\n')
    console.error(`${name}: ${(Buffer.byteLength(body) / 1024).toFixed(1)} KiB`)
  }
  server.close()
} finally {
  await cp.stop()
}
