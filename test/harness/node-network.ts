// The network of a test node. The node gets a network namespace of its own, as a real node
// has its own host network: containerd's CNI bridge, the pods' veths, kube-proxy's iptables
// rules and the node's ports all live in it, so several nodes can run at once and deleting
// the namespace takes all of it away. One veth pair joins it to this host:
//
//   host netns                        node netns enlist-node-N
//   enlistN 10.250.N.1/24  <──veth──> eth0 10.250.N.2/24  (the node's InternalIP)
//   route 10.244.N.0/24 via .2        cni0 10.244.N.1/24 ── pods 10.244.N.x
//
// The apiserver, the cluster DNS and the test CMDB listen on 10.250.N.1, which pods reach
// through the node; the apiserver reaches pods and the kubelet through the route. Nothing
// has a default route: no packet leaves the machine, and the host's own forwarding and
// firewall are untouched.

import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { NodeError } from './node-errors.js'

const run = promisify(execFile)
export const OWNERS = '/run/enlist-node'
export const TEARDOWN = new URL('./node-teardown.sh', import.meta.url).pathname

export interface NodeNetwork {
  index: number
  /** The node's network namespace, named (ip netns). */
  netns: string
  netnsPath: string
  /** The host end of the link: the apiserver, DNS and test services listen here. */
  hostIP: string
  /** The node's address (its InternalIP; the kubelet serves here). */
  nodeIP: string
  /** Pod addresses, a /24 on the node's bridge. */
  podCIDR: string
  /** The host's veth. */
  hostLink: string
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args)
  } catch (err) {
    throw new NodeError('NODE_NETWORK', `ip ${args.join(' ')}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`)
  }
}

/** Runs a command in the node's network namespace (nothing else of ours changes namespace). */
export const inNode = (net: NodeNetwork, cmd: string, args: readonly string[]): [string, string[]] => ['nsenter', [`--net=${net.netnsPath}`, '--', cmd, ...args]]

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Nodes whose process is gone (killed before its reaper could run): torn down now. */
export async function reapStaleNodes(log: (l: string) => void = () => undefined): Promise<void> {
  if (!existsSync(OWNERS)) return
  for (const netns of readdirSync(OWNERS).filter((n) => /^enlist-node-\d+$/.test(n))) {
    const [pid, dir] = readFileSync(join(OWNERS, netns), 'utf8').trim().split(' ')
    if (!pid || !dir || alive(Number(pid))) continue
    log(`removing the stale test node ${netns} (its process ${pid} is gone)`)
    await run('bash', [TEARDOWN, dir, netns]).catch((err: Error) => log(`could not remove ${netns}: ${err.message}`))
  }
}

/**
 * Creates the node's namespace and link on the first free index. The namespace's creation
 * is the claim: `ip netns add` fails if another run holds that index.
 */
export async function createNodeNetwork(dir: string, log: (l: string) => void = () => undefined): Promise<NodeNetwork> {
  await reapStaleNodes(log)
  const start = 1 + (process.pid % 200)
  for (let i = 0; i < 200; i++) {
    const index = 1 + ((start - 1 + i) % 200)
    const netns = `enlist-node-${index}`
    try {
      await run('ip', ['netns', 'add', netns])
    } catch {
      continue // taken
    }
    // (a teardown elsewhere may remove the emptied directory in between: try twice)
    for (let attempt = 0; ; attempt++) {
      try {
        mkdirSync(OWNERS, { recursive: true })
        writeFileSync(join(OWNERS, netns), `${process.pid} ${dir}\n`)
        break
      } catch (err) {
        if (attempt > 0) throw err
      }
    }
    const net: NodeNetwork = {
      index,
      netns,
      netnsPath: `/run/netns/${netns}`,
      hostIP: `10.250.${index}.1`,
      nodeIP: `10.250.${index}.2`,
      podCIDR: `10.244.${index}.0/24`,
      hostLink: `enlist${index}`,
    }
    await ip(['link', 'add', net.hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns])
    await ip(['addr', 'add', `${net.hostIP}/24`, 'dev', net.hostLink])
    await ip(['link', 'set', net.hostLink, 'up'])
    await ip(['-n', netns, 'link', 'set', 'lo', 'up'])
    await ip(['-n', netns, 'addr', 'add', `${net.nodeIP}/24`, 'dev', 'eth0'])
    await ip(['-n', netns, 'link', 'set', 'eth0', 'up'])
    await ip(['route', 'add', net.podCIDR, 'via', net.nodeIP, 'dev', net.hostLink])
    // The node routes between its pods and the link; the host's own setting is untouched.
    const [cmd, args] = inNode(net, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
    await run(cmd, args).catch((err: Error) => {
      throw new NodeError('NODE_NETWORK', `enabling forwarding in ${netns}: ${err.message}`)
    })
    return net
  }
  throw new NodeError('NODE_NETWORK', 'no free test node index: 200 network namespaces enlist-node-* exist (ip netns list)')
}
