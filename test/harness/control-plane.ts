// A real Kubernetes control plane on loopback: etcd, kube-apiserver and
// kube-controller-manager in a temp dir, with an admin kubeconfig. Used by the
// end-to-end tests and by `make demo`.

import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createCA, issueServing, type IssuedCertificate } from '../../src/certs/x509.js'
import { KubeClient } from '../../src/kube/client.js'
import { fromKubeconfigFiles } from '../../src/kube/credentials.js'
import { freePort, type Owner, owned, supervise, type Supervised, tempDir, waitFor } from './processes.js'

const REPO = new URL('../../', import.meta.url).pathname
const KUBELET_CLIENT = 'kube-apiserver-kubelet-client'

export interface ControlPlane {
  dir: string
  assets: string
  server: string
  ca: IssuedCertificate
  /** The CA's certificate as a file (clients that take a path: the kubelet). */
  caFile: string
  adminToken: string
  kubeconfig: string
  client: KubeClient
  processes: Supervised[]
  /** Runs kubectl against this cluster; never throws: look at code. */
  kubectl(args: readonly string[], opts?: { input?: string }): Promise<{ code: number; stdout: string; stderr: string }>
  /** Creates a namespace and waits until pods can be created in it. */
  namespace(name: string, labels?: Record<string, string>): Promise<void>
  stop(): Promise<void>
}

export interface ControlPlaneOptions {
  /** Progress lines (the demo shows them). */
  log?: (line: string) => void
  keepDir?: boolean
  /** Without kube-controller-manager: no service accounts or pods from controllers (benchmarks). */
  controllerManager?: boolean
  /** Extra etcd flags (a benchmark's tens of thousands of pods outgrow the 2 GiB default quota). */
  etcdArgs?: readonly string[]
  /** For a real node (test/harness/node.ts) instead of the stand-in's fake node-1. */
  realNode?: RealNodeOptions
}

export interface RealNodeOptions {
  /**
   * The host's address on the node's link. The apiserver listens and advertises here, so
   * pods reach it through the `kubernetes` Service (127.0.0.1 is each pod's own loopback).
   */
  address: string
  /** Extra kube-apiserver flags (e.g. shorter default tolerations). */
  apiserverArgs?: readonly string[]
  /** Extra kube-controller-manager flags (e.g. a shorter node monitor grace period). */
  controllerManagerArgs?: readonly string[]
}

/** The assets directory: ENLIST_ASSETS (the script's answer, passed on), else the script,
 *  which honours KUBEBUILDER_ASSETS and completes what setup-envtest lacks. */
export async function controlPlaneAssets(log?: (line: string) => void): Promise<string> {
  const known = process.env.ENLIST_ASSETS
  if (known) return known
  log?.('locating the control plane binaries (the first run builds them: several minutes)')
  // Progress arrives on stderr while it builds; pass it on as it comes.
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO, 'hack/control-plane-assets.sh'), { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
      let nl: number
      while ((nl = err.indexOf('\n')) !== -1) {
        log?.(err.slice(0, nl))
        err = err.slice(nl + 1)
      }
    })
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out.trim().split('\n').pop()!) : reject(new Error(`hack/control-plane-assets.sh exited ${code}`))))
  })
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => undefined)
  const node = opts.realNode
  const assets = await controlPlaneAssets(log)
  const dir = tempDir('enlist-cp-')
  const processes: Supervised[] = []
  const stop = async (): Promise<void> => {
    for (const p of [...processes].reverse()) await p.stop('SIGTERM', 5000)
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true })
  }
  try {
    // --- PKI ------------------------------------------------------------------
    const ca = await createCA({ commonName: 'enlist-e2e-ca', validityMs: 24 * 3600_000 })
    const serving = await issueServing({
      ca,
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
      ipAddresses: ['127.0.0.1', '10.0.0.1', ...(node ? [node.address] : [])],
      validityMs: 24 * 3600_000,
    })
    const sa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    const pki = join(dir, 'pki')
    mkdirSync(pki)
    const f = (name: string, data: string): string => {
      const p = join(pki, name)
      writeFileSync(p, data, { mode: 0o600 })
      return p
    }
    const caFile = f('ca.crt', ca.cert)
    const certFile = f('apiserver.crt', serving.cert)
    const keyFile = f('apiserver.key', serving.key)
    const saKey = f('sa.key', sa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    const saPub = f('sa.pub', sa.publicKey.export({ type: 'spki', format: 'pem' }).toString())
    // The apiserver's client certificate for kubelets (logs, exec), as kubeadm makes it.
    const kubeletClient = node && (await issueServing({ ca, commonName: KUBELET_CLIENT, dnsNames: [KUBELET_CLIENT], validityMs: 24 * 3600_000, clientAuth: true }))
    const adminToken = `admin-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`
    const tokens = f('tokens.csv', `${adminToken},admin,admin-uid,"system:masters"\n`)

    // --- etcd -----------------------------------------------------------------
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()]
    log('starting etcd')
    const etcd = supervise('etcd', join(assets, 'etcd'), [
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
      '--name=default',
      '--log-level=warn',
      '--logger=zap',
      ...(opts.etcdArgs ?? []),
    ], { logFile: join(dir, 'etcd.log') })
    processes.push(etcd)
    await waitFor('etcd', async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok, 30_000)

    // --- kube-apiserver -------------------------------------------------------
    log('starting kube-apiserver')
    const address = node?.address ?? '127.0.0.1'
    const apiserver = supervise('kube-apiserver', join(assets, 'kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver')}`,
      `--tls-cert-file=${certFile}`,
      `--tls-private-key-file=${keyFile}`,
      `--client-ca-file=${caFile}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--api-audiences=https://kubernetes.default.svc',
      `--token-auth-file=${tokens}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      ...(node && kubeletClient
        ? [
            // the kubelet by its node's InternalIP (node names do not resolve here), as this client
            '--kubelet-preferred-address-types=InternalIP',
            `--kubelet-client-certificate=${f('kubelet-client.crt', kubeletClient.cert)}`,
            `--kubelet-client-key=${f('kubelet-client.key', kubeletClient.key)}`,
            // webhooks by their Service's endpoints: this host has no kube-proxy, the node has
            '--enable-aggregator-routing=true',
            ...(node.apiserverArgs ?? []),
          ]
        : []),
      '--v=1',
    ], { logFile: join(dir, 'kube-apiserver.log') })
    processes.push(apiserver)

    const server = `https://${address}:${apiPort}`
    const kubeconfig = join(dir, 'kubeconfig')
    writeFileSync(kubeconfig, kubeconfigYaml(server, ca.cert, adminToken), { mode: 0o600 })
    const client = new KubeClient(await fromKubeconfigFiles([kubeconfig]))
    await waitFor('kube-apiserver /readyz', async () => {
      if (apiserver.child.exitCode !== null) throw new Error(`kube-apiserver exited; see ${apiserver.logFile}`)
      return (await client.requestText('GET', '/readyz')) === 'ok'
    }, 60_000, 200)

    // --- kube-controller-manager -------------------------------------------------
    const withKcm = opts.controllerManager !== false
    if (withKcm) log('starting kube-controller-manager')
    const kcm = withKcm && supervise('kube-controller-manager', join(assets, 'kube-controller-manager'), [
      `--kubeconfig=${kubeconfig}`,
      `--service-account-private-key-file=${saKey}`,
      `--root-ca-file=${caFile}`,
      '--leader-elect=false',
      // a real node has a lifecycle: marked lost, its pods evicted
      node ? '--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service' : '--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service',
      '--secure-port=0',
      '--port=0',
      ...(node?.controllerManagerArgs ?? []),
      '--v=1',
    ], { logFile: join(dir, 'kube-controller-manager.log') })
    if (kcm) processes.push(kcm)

    // --- kube-scheduler (a real node takes pods; the stand-in binds them itself) ------
    if (node) {
      log('starting kube-scheduler')
      processes.push(supervise('kube-scheduler', join(assets, 'kube-scheduler'), [
        `--kubeconfig=${kubeconfig}`,
        '--leader-elect=false',
        '--secure-port=0',
        '--port=0',
        '--v=1',
      ], { logFile: join(dir, 'kube-scheduler.log') }))
    }

    const cp: ControlPlane = {
      dir,
      assets,
      server,
      ca,
      caFile,
      adminToken,
      kubeconfig,
      client,
      processes,
      async kubectl(args, o = {}) {
        return new Promise((resolve) => {
          const child = execFile(join(assets, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
          })
          // a kubectl that exits before reading its input reports that in its exit code
          child.stdin?.on('error', () => undefined)
          child.stdin?.end(o.input ?? '')
        })
      },
      async namespace(name, labels = {}) {
        await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }).catch((err: { conflict?: boolean }) => {
          if (!err.conflict) throw err
        })
        if (withKcm) await waitForServiceAccount(client, name, 'default')
      },
      stop: async () => {
        client.close()
        await stop()
      },
    }
    // The default namespace needs its service account too, and a Node lets DaemonSets make pods.
    if (withKcm) await waitForServiceAccount(client, 'default', 'default')
    if (node) {
      // what kubeadm grants the apiserver's kubelet client
      await client.create('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'kube-apiserver-kubelet-client' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kubelet-api-admin' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: KUBELET_CLIENT }],
      })
      log(`control plane ready at ${server}`)
      return cp
    }
    await client.create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'kubernetes.io/hostname': 'node-1', 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } } })
    // What a kubelet would report, so that DaemonSet pods fit on the node.
    const resources = { cpu: '16', memory: '64Gi', pods: '250', 'ephemeral-storage': '100Gi' }
    await client.patch('/api/v1/nodes/node-1/status', {
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'no kubelet: a test node', lastHeartbeatTime: new Date().toISOString(), lastTransitionTime: new Date().toISOString() }],
        addresses: [{ type: 'InternalIP', address: '127.0.0.1' }, { type: 'Hostname', address: 'node-1' }],
      },
    }, 'application/merge-patch+json')
    // The node-lifecycle controller would lift the not-ready taint once the node is Ready.
    await client.patch('/api/v1/nodes/node-1', { spec: { taints: null } }, 'application/merge-patch+json')
    log(`control plane ready at ${server}`)
    return cp
  } catch (err) {
    await stop()
    throw err
  }
}

/** A control plane stopped when `t` ends: how an end-to-end file starts. */
export function controlPlaneFor(t: Owner, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  return owned(t, startControlPlane(opts), (cp) => cp.stop())
}

/** In 1.20 a pod can be created only once its service account has a token Secret. */
export async function waitForServiceAccount(client: KubeClient, namespace: string, name: string): Promise<void> {
  await waitFor(`service account ${namespace}/${name}`, async () => {
    const sa = await client.get<{ secrets?: Array<{ name: string }> }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}`)
    return (sa.secrets?.length ?? 0) > 0
  }, 60_000, 100)
}

export function kubeconfigYaml(server: string, caPem: string, token: string, namespace = 'default'): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: ${server}
    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}
users:
- name: user
  user:
    token: ${token}
contexts:
- name: local
  context: {cluster: local, user: user, namespace: ${namespace}}
current-context: local
`
}
