// An enlist server on a loopback port with real TLS, without a cluster: namespaces are
// static and the policy comes from a PolicyStore the test drives.

import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { StaticNamespaces } from '../../src/kube/namespaces.js'
import { silentLogger } from '../../src/log.js'
import { Manager } from '../../src/manager.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { PolicyStore } from '../../src/policy/source.js'
import { buildServer, type EnlistServer } from '../../src/server/app.js'
import { Readiness } from '../../src/server/readiness.js'
import { CertificateFiles } from '../../src/certs/files.js'
import { testKeys } from './keys.js'
import { makePki, type TestPki } from './https.js'

export interface TestServer {
  url: string
  app: EnlistServer
  pki: TestPki
  metrics: Metrics
  policy: PolicyStore
  readiness: Readiness
  manager: Manager
  certificate: CertificateFiles
  agent: https.Agent
  close(): Promise<void>
}

export const NAMESPACES = new Map<string, Record<string, string>>([
  ['shop', { 'enlist.io/inject': 'enabled' }],
  ['plain', {}],
  ['off', { 'enlist.io/inject': 'disabled' }],
])

export async function startTestServer(opts: { bodyLimit?: number; shutdownDelayMs?: number; policy?: string } = {}): Promise<TestServer> {
  const pki = await makePki()
  const keys = testKeys()
  const log = silentLogger()
  const metrics = createMetrics({ defaultMetrics: false })
  const readiness = new Readiness()
  const policy = new PolicyStore(log, metrics)
  policy.apply(opts.policy ?? 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n', 'test')
  const certificate = new CertificateFiles({ certFile: pki.certFile, keyFile: pki.keyFile, log, metrics, intervalMs: 100 })
  readiness.add('policy', () => (policy.current ? undefined : 'no policy'))
  const app = await buildServer({
    bodyLimit: opts.bodyLimit ?? 8 * 1024 * 1024,
    certificate,
    log,
    metrics,
    readiness,
    admission: {
      policy,
      namespaces: new StaticNamespaces(NAMESPACES),
      serverVersion: () => ({ major: 1, minor: 20 }),
      caBundle: () => certificate.current.ca,
      keys: () => keys,
      namespaceWaitMs: 10,
    },
  })
  const manager = new Manager({ log, readiness, shutdownDelayMs: opts.shutdownDelayMs ?? 0 })
    .add(certificate)
    .add({ name: 'server', start: async () => void (await app.listen({ host: '127.0.0.1', port: 0 })), stop: () => app.close() })
  await manager.start()
  const port = (app.server.address() as AddressInfo).port
  const agent = new https.Agent({ keepAlive: true, ca: pki.ca.cert, maxSockets: 16 })
  return {
    url: `https://127.0.0.1:${port}`,
    app,
    pki,
    metrics,
    policy,
    readiness,
    manager,
    certificate,
    agent,
    async close() {
      agent.destroy()
      await manager.stop()
    },
  }
}

export function reviewBody(object: unknown, over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      dryRun: false,
      ...over,
    },
  })
}
