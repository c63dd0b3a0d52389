// A whole cluster on one real node: the control plane listening on the node's link, the
// node (containerd, kubelet, kube-proxy) in its own network namespace, and the cluster DNS.
// One per test file: it takes some 20 s to start, most of it the kubelet registering.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import type { Images } from '../../hack/image/images.js'
import { type ControlPlane, startControlPlane } from './control-plane.js'
import { type ClusterDns, startClusterDns } from './dns.js'
import { nodeImages } from './images.js'
import { createNodeNetwork, type NodeNetwork, TEARDOWN } from './node-network.js'
import { startNode, startRuntime, type TestNode } from './node.js'

const run = promisify(execFile)

export interface NodeClusterOptions {
  log?: (line: string) => void
  images?: Images
  /** Extra kube-apiserver and kube-controller-manager flags. */
  apiserverArgs?: readonly string[]
  controllerManagerArgs?: readonly string[]
  /** Extra KubeletConfiguration fields. */
  kubelet?: Record<string, unknown>
}

export interface NodeCluster {
  cp: ControlPlane
  node: TestNode
  net: NodeNetwork
  dns: ClusterDns
  images: Images
  stop(): Promise<void>
}

/** When this process is gone, the reaper tears the node down (a crash, Ctrl-C, SIGKILL). */
function startReaper(dir: string, netns: string): ChildProcess {
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; exec bash ${TEARDOWN} ${dir} ${netns}`
  const child = spawn('bash', ['-c', script], { detached: true, stdio: 'ignore' })
  child.unref()
  return child
}

export async function startNodeCluster(opts: NodeClusterOptions = {}): Promise<NodeCluster> {
  const log = opts.log ?? (() => undefined)
  const images = opts.images ?? (await nodeImages(log))
  const dir = (await run('mktemp', ['-d', '/tmp/enlist-node-XXXXXX'])).stdout.trim()
  // The node's files on a tmpfs: unpacking the images and removing them again is then a
  // matter of memory (about 500 MB), not of this disk, whose online discard makes every
  // delete slow.
  await run('mount', ['-t', 'tmpfs', '-o', 'size=4g,mode=0700', 'enlist-node', dir])
  let net: NodeNetwork | undefined
  let reaper: ChildProcess | undefined
  let cp: ControlPlane | undefined
  let dns: ClusterDns | undefined
  let node: TestNode | undefined
  const stop = async (): Promise<void> => {
    await node?.stop().catch((err: Error) => log(`stopping the node: ${err.message}`))
    await dns?.close().catch(() => undefined)
    await cp?.stop().catch(() => undefined)
    // whatever the node's own stop did not reach (or a start that failed half way)
    await run('bash', [TEARDOWN, dir, net?.netns ?? 'enlist-node-none']).catch((err: { stderr?: string }) => log(`teardown: ${err.stderr ?? String(err)}`))
    if (reaper?.pid) {
      try {
        process.kill(-reaper.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
  try {
    net = await createNodeNetwork(dir, log)
    reaper = startReaper(dir, net.netns)
    log(`node network ${net.netns}: host ${net.hostIP}, node ${net.nodeIP}, pods ${net.podCIDR}`)
    // containerd and the image import need no apiserver: both start at once
    const starting = startRuntime(net, dir, images, log)
    starting.catch(() => undefined) // awaited below; a failure must not go unhandled meanwhile
    cp = await startControlPlane({
      log,
      realNode: { address: net.hostIP, apiserverArgs: opts.apiserverArgs, controllerManagerArgs: opts.controllerManagerArgs },
    }).catch(async (err: unknown) => {
      await starting.catch(() => undefined)
      throw err
    })
    dns = await startClusterDns(cp.client, net.hostIP)
    node = await startNode(cp, net, dir, await starting, { log, images, kubelet: opts.kubelet })
    return { cp, node, net, dns, images, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
