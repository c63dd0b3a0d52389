// A real Kubernetes node for the end-to-end tests and the demo: containerd 1.6 (with runc)
// and kubelet v1.20.2 as processes this harness owns, in a network namespace of the node's
// own (node-network.ts) with a CNI bridge for pod addresses, kube-proxy for Service
// addresses, and the images built by hack/image imported into containerd. Everything lives
// in a temp dir and is removed when the node stops, and by a reaper when this process dies
// first (node-teardown.sh).

import { execFile, spawn } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { V1Node } from '@kubernetes/client-node'
import { stringify } from 'yaml'
import type { Images } from '../../hack/image/images.js'
import { archiveArgs } from '../../hack/image/oci.js'
import type { ControlPlane } from './control-plane.js'
import { NodeError } from './node-errors.js'
import { inNode, type NodeNetwork, OWNERS, TEARDOWN } from './node-network.js'
import { supervise, type Supervised, waitFor } from './processes.js'

const run = promisify(execFile)

export const NODE_NAME = 'node-1'
export const CNI_BIN = '/usr/lib/cni'

export interface NodeOptions {
  log?: (line: string) => void
  /** The images to import (hack/image); the pause image is the pod sandbox. */
  images: Images
  /** Extra KubeletConfiguration fields. */
  kubelet?: Record<string, unknown>
}

/** A containerd task event: a container (or exec) started or exited, with the runtime's own time. */
export interface TaskEvent {
  at: Date
  topic: '/tasks/create' | '/tasks/start' | '/tasks/exit' | '/tasks/exec-added' | '/tasks/exec-started' | '/tasks/delete' | string
  containerId: string
  execId?: string
  exitStatus?: number
}

export interface TestNode {
  name: string
  dir: string
  net: NodeNetwork
  kubeletVersion: string
  /** As the node reports it, e.g. containerd://1.6.20~ds1. */
  runtimeVersion: string
  /** Every task event containerd published since the node started. */
  events(): TaskEvent[]
  /** Waits for an event matching `pred`. */
  waitForEvent(what: string, pred: (e: TaskEvent) => boolean, timeoutMs?: number): Promise<TaskEvent>
  processes: { containerd: Supervised; kubelet: Supervised; kubeProxy: Supervised; events: Supervised }
  /** The kubelet dies as on a lost node (SIGKILL); its pods keep running. */
  killKubelet(): Promise<void>
  stop(): Promise<void>
}

function containerdConfig(dir: string, _net: NodeNetwork, pause: string): string {
  const q = JSON.stringify
  return `version = 2
root = ${q(join(dir, 'containerd', 'root'))}
state = ${q(join(dir, 'containerd', 'state'))}
# only what a CRI node needs
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${q(join(dir, 'containerd.sock'))}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(dir, 'containerd', 'opt'))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(pause)}
  # This VM refuses a lowered oom_score_adj (the kubelet asks -998 for sandboxes).
  restrict_oom_score_adj = true
  # the pods' network namespaces in our state dir, not /run/netns
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state in our dir: the teardown finds every container there
        Root = ${q(join(dir, 'runc'))}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(CNI_BIN)}
    conf_dir = ${q(join(dir, 'cni', 'net.d'))}
`
}

function cniConfig(dir: string, net: NodeNetwork): string {
  const gateway = net.podCIDR.replace(/\.0\/24$/, '.1')
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'enlist',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          isDefaultGateway: true,
          // no masquerade: pods talk to this machine only, by their own addresses
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: net.podCIDR, gateway }]], dataDir: join(dir, 'cni', 'ipam') },
        },
      ],
    },
    null,
    2,
  )
}

function kubeletConfig(dir: string, net: NodeNetwork, cp: ControlPlane, extra: Record<string, unknown>): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: net.nodeIP,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    // what kubelet v1.20 needs on this kind of VM: cgroup v1 through cgroupfs, no QoS hierarchy, no swap check
    cgroupDriver: 'cgroupfs',
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    oomScoreAdj: 0,
    clusterDNS: [net.hostIP],
    clusterDomain: 'cluster.local',
    resolvConf: join(dir, 'resolv.conf'),
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: cp.caFile } },
    authorization: { mode: 'Webhook' },
    // a lost node is noticed in seconds (with the controller manager's grace period)
    nodeStatusUpdateFrequency: '2s',
    nodeStatusReportFrequency: '10s',
    nodeLeaseDurationSeconds: 8,
    // never collect the imported images (there is no registry to pull them back from)
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
    // its socket would sit in a fixed /var/lib/kubelet path shared by every node on the machine
    featureGates: { DevicePlugins: false },
    serializeImagePulls: false,
    ...extra,
  })
}

function kubeProxyConfig(net: NodeNetwork, kubeconfig: string): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig },
    hostnameOverride: NODE_NAME,
    bindAddress: net.nodeIP,
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    mode: 'iptables',
    clusterCIDR: net.podCIDR,
    oomScoreAdj: 0,
    // leave the machine-wide conntrack table alone
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    iptables: { masqueradeAll: false, syncPeriod: '10s', minSyncPeriod: '0s' },
  })
}

const TASK_LINE = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ([+-]\d{4}) \S+ (\S+) (\/tasks\/\S+) (\{.*\})$/

/** A line of `ctr events`: "2026-11-23 16:50:01.123456789 +0000 UTC k8s.io /tasks/start {...}". */
export function parseTaskEvent(line: string): TaskEvent | undefined {
  const m = TASK_LINE.exec(line)
  if (!m) return undefined
  const [, time, zone, , topic, json] = m as unknown as [string, string, string, string, string, string]
  const body = JSON.parse(json) as { container_id?: string; id?: string; exec_id?: string; exit_status?: number; exited_at?: string }
  const [date, clock] = time.split(' ') as [string, string]
  const [hms, frac = ''] = clock.split('.')
  const at = new Date(`${date}T${hms}.${(frac + '000').slice(0, 3)}${zone.slice(0, 3)}:${zone.slice(3)}`)
  // An exec's exit names the exec in `id`; the container's own names the container.
  const execId = body.exec_id ?? (topic === '/tasks/exit' && body.id && body.id !== body.container_id ? body.id : undefined)
  return {
    at: body.exited_at ? new Date(body.exited_at) : at,
    topic,
    containerId: body.container_id ?? '',
    ...(execId ? { execId } : {}),
    ...(body.exit_status !== undefined ? { exitStatus: body.exit_status } : topic === '/tasks/exit' ? { exitStatus: 0 } : {}),
  }
}

/** Streams an OCI layout into containerd's k8s.io namespace (the kubelet's), as an archive would be. */
async function importLayout(sock: string, layout: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const tar = spawn('tar', archiveArgs(layout), { stdio: ['ignore', 'pipe', 'pipe'] })
    const ctr = spawn('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'import', '-'], { stdio: ['pipe', 'pipe', 'pipe'] })
    tar.stdout.pipe(ctr.stdin)
    // a ctr that exits early closes its stdin under tar: its exit code says why, not an EPIPE
    ctr.stdin.on('error', (e: Error) => (err += `${e.message}\n`))
    let err = ''
    tar.stderr.on('data', (d: Buffer) => (err += d.toString()))
    ctr.stderr.on('data', (d: Buffer) => (err += d.toString()))
    ctr.stdout.resume()
    ctr.on('error', reject)
    ctr.on('close', (code) => (code === 0 ? resolve() : reject(new NodeError('NODE_IMAGE', `importing ${layout}: ctr exited ${code}: ${err.trim()}`))))
  })
}

/**
 * Notes the uid of every pod bound to the node in OWNERS/NETNS.pods: the kubelet writes their
 * logs under /var/log/pods (a fixed path in v1.20), and the teardown removes exactly those,
 * even when this process is gone and the pods long deleted.
 */
function trackPods(cp: ControlPlane, net: NodeNetwork): AbortController {
  const file = join(OWNERS, `${net.netns}.pods`)
  const seen = new Set<string>()
  const note = (uid: string | undefined): void => {
    if (!uid || seen.has(uid)) return
    seen.add(uid)
    appendFileSync(file, `${uid}\n`)
  }
  const ac = new AbortController()
  const path = '/api/v1/pods'
  const query = { fieldSelector: `spec.nodeName=${NODE_NAME}` }
  const loop = async (): Promise<void> => {
    while (!ac.signal.aborted) {
      try {
        const list = await cp.client.get<{ metadata: { resourceVersion: string }; items: Array<{ metadata?: { uid?: string } }> }>(path, query)
        for (const p of list.items) note(p.metadata?.uid)
        await cp.client.watch(path, { ...query, resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 300 }, (e) => note((e as { object?: { metadata?: { uid?: string } } }).object?.metadata?.uid), ac.signal)
      } catch {
        await new Promise((r) => setTimeout(r, 500)) // the apiserver restarting or going away
      }
    }
  }
  void loop()
  return ac
}

/** containerd with the images imported: the half of a node that needs no apiserver, so it starts alongside one. */
export interface Runtime {
  sock: string
  containerd: Supervised
  events: Supervised
  /** Task events parsed so far. */
  collect(): TaskEvent[]
}

const exitedEarly = (p: Supervised): void => {
  if (p.child.exitCode !== null) throw new NodeError('NODE_START', `${p.name} exited ${p.child.exitCode}; see ${p.logFile}`)
}

const spawnInNode = (net: NodeNetwork, dir: string, name: string, cmd: string, args: string[]): Supervised => {
  const [c, a] = inNode(net, cmd, args)
  return supervise(name, c, a, { logFile: join(dir, `${name}.log`) })
}

export async function startRuntime(net: NodeNetwork, dir: string, images: Images, log: (line: string) => void = () => undefined): Promise<Runtime> {
  const sock = join(dir, 'containerd.sock')
  for (const d of ['cni/net.d', 'cni/ipam', 'kubelet', 'containerd']) mkdirSync(join(dir, d), { recursive: true })
  // the kubelet's fixed log directories: removed again at the end if this node made them
  if (!existsSync('/var/log/pods')) writeFileSync(join(dir, '.created-var-log-pods'), '')
  if (!existsSync('/var/log/containers')) writeFileSync(join(dir, '.created-var-log-containers'), '')
  writeFileSync(join(dir, 'containerd.toml'), containerdConfig(dir, net, images.pause.ref))
  writeFileSync(join(dir, 'cni', 'net.d', '10-enlist.conflist'), cniConfig(dir, net))

  log('starting containerd')
  const containerd = spawnInNode(net, dir, 'containerd', 'containerd', ['--config', join(dir, 'containerd.toml'), '--log-level', 'warn'])
  await waitFor('containerd', async () => {
    exitedEarly(containerd)
    await run('ctr', ['--address', sock, 'version'])
    return true
  }, 30_000, 100)
  const eventLines = supervise('containerd-events', 'ctr', ['--address', sock, 'events'], { logFile: join(dir, 'containerd-events.log'), keepLines: true })
  const events: TaskEvent[] = []
  const collect = (): TaskEvent[] => {
    while (eventLines.lines.length > 0) {
      const e = parseTaskEvent(eventLines.lines.shift()!)
      if (e) events.push(e)
    }
    return events
  }

  const { enlist, pause, app, appNoShell } = images
  log(`importing images: ${[enlist, pause, app, appNoShell].map((i) => i.ref).join(', ')}`)
  const t0 = Date.now()
  await importLayout(sock, images.nodeLayout)
  log(`images imported in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return { sock, containerd, events: eventLines, collect }
}

/** The kubelet and kube-proxy on a started runtime; resolves once the node is Ready and schedulable. */
export async function startNode(cp: ControlPlane, net: NodeNetwork, dir: string, runtime: Runtime, opts: NodeOptions): Promise<TestNode> {
  const log = opts.log ?? (() => undefined)
  const kubeletDir = join(dir, 'kubelet')
  writeFileSync(join(dir, 'resolv.conf'), '') // no host resolvers for pods: the cluster DNS only
  writeFileSync(join(dir, 'kubelet.yaml'), kubeletConfig(dir, net, cp, opts.kubelet ?? {}))
  log('starting kubelet')
  const kubelet = spawnInNode(net, dir, 'kubelet', join(cp.assets, 'kubelet'), [
    `--config=${join(dir, 'kubelet.yaml')}`,
    `--kubeconfig=${cp.kubeconfig}`,
    '--container-runtime=remote',
    `--container-runtime-endpoint=unix://${runtime.sock}`,
    `--pod-infra-container-image=${opts.images.pause.ref}`,
    `--root-dir=${kubeletDir}`,
    `--cert-dir=${join(kubeletDir, 'pki')}`,
    `--seccomp-profile-root=${join(kubeletDir, 'seccomp')}`,
    `--volume-plugin-dir=${join(kubeletDir, 'volume-plugins')}`,
    `--node-ip=${net.nodeIP}`,
    `--hostname-override=${NODE_NAME}`,
    // dockershim's CNI flags: unused with a remote runtime, but the kubelet would create /etc/cni
    `--cni-conf-dir=${join(dir, 'cni', 'net.d')}`,
    `--cni-bin-dir=${CNI_BIN}`,
    `--cni-cache-dir=${join(dir, 'cni', 'cache')}`,
    '--v=1',
  ])
  const podLog = trackPods(cp, net)
  writeFileSync(join(dir, 'kube-proxy.yaml'), kubeProxyConfig(net, cp.kubeconfig))
  log('starting kube-proxy')
  const kubeProxy = spawnInNode(net, dir, 'kube-proxy', join(cp.assets, 'kube-proxy'), [`--config=${join(dir, 'kube-proxy.yaml')}`, '--v=1'])
  const processes = [runtime.containerd, runtime.events, kubelet, kubeProxy]
  const ownStop = async (): Promise<void> => podLog.abort()

  const node = await waitFor(
    `node ${NODE_NAME} Ready`,
    async () => {
      exitedEarly(kubelet)
      exitedEarly(kubeProxy)
      const n = await cp.client.get<V1Node>(`/api/v1/nodes/${NODE_NAME}`)
      const ready = n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True'
      // the scheduler places nothing on a node still tainted not-ready
      return ready && !(n.spec?.taints ?? []).some((t) => t.key === 'node.kubernetes.io/not-ready') ? n : undefined
    },
    90_000,
    250,
  )
  log(`node ${NODE_NAME} Ready: kubelet ${node.status?.nodeInfo?.kubeletVersion}, ${node.status?.nodeInfo?.containerRuntimeVersion}`)

  return {
    name: NODE_NAME,
    dir,
    net,
    kubeletVersion: node.status?.nodeInfo?.kubeletVersion ?? '',
    runtimeVersion: node.status?.nodeInfo?.containerRuntimeVersion ?? '',
    events: runtime.collect,
    waitForEvent: (what, pred, timeoutMs = 60_000) => waitFor(what, async () => runtime.collect().find(pred), timeoutMs, 50),
    processes: { containerd: runtime.containerd, kubelet, kubeProxy, events: runtime.events },
    async killKubelet() {
      await kubelet.stop('SIGKILL', 5000)
    },
    async stop() {
      await ownStop()
      // the teardown stops the kubelet first, so nothing restarts what it stops next
      await run('bash', [TEARDOWN, dir, net.netns], { maxBuffer: 4 * 1024 * 1024 }).catch((err: { stderr?: string }) => log(`teardown: ${err.stderr ?? String(err)}`))
      for (const p of processes) await p.stop('SIGKILL', 1000)
    },
  }
}
