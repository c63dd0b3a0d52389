// Where a backend's consumers reach a pod (registry.backends[].advertise, or the tenant's
// enlist.io/advertise when the policy allows it):
// * podIP: the pod's IP and container ports (in the record already);
// * hostIP: the node's IP (status.hostIP) and the containers' hostPorts;
// * nodePort: an address of the pod's node, of the first type in nodeAddressTypes it has, and
//   the nodePorts of the NodePort or LoadBalancer Services that select the pod, by the
//   container port each Service port targets. Consumers outside the cluster reach that.
// nodePort reads the Node and the namespace's Services at registration time: two GETs, each
// bounded by a timeout; the Node is cached briefly, as thousands of pods share a few nodes.
// A failure is a backend failure of the registration (retried, the registrar waits), never
// a silently wrong address.

import type { V1Node, V1Service } from '@kubernetes/client-node'
import type { KubeClient } from '../kube/client.js'
import { KubeApiError } from '../kube/client.js'
import { errorMessage, type ErrorCode } from '../lib/errors.js'
import type { AdvertiseMode, AdvertiseSpec } from '../policy/backends/advertise.js'
import type { Advertised, AdvertisedPort, RegistryRecord } from './record.js'

/** What the address is chosen from: a pod as the apiserver sends it, or as the cache keeps it. */
export interface AdvertiseSource {
  metadata?: { labels?: Readonly<Record<string, string>> }
  spec?: { containers?: ReadonlyArray<{ ports?: ReadonlyArray<{ name?: string; containerPort: number; protocol?: string; hostPort?: number }> }> }
}

export class AdvertiseError extends Error {
  readonly code = 'ENLIST_ADVERTISE_FAILED' satisfies ErrorCode
  constructor(
    message: string,
    /** False when only a change to the pod or the policy can help. */
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'AdvertiseError'
  }
}

export interface AdvertiserOptions {
  timeoutMs?: number
  nodeTtlMs?: number
}

export class Advertiser {
  private readonly nodes = new Map<string, { at: number; node: V1Node }>()
  private readonly timeoutMs: number
  private readonly nodeTtlMs: number

  constructor(
    private readonly client: KubeClient,
    opts: AdvertiserOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5000
    this.nodeTtlMs = opts.nodeTtlMs ?? 30_000
  }

  async resolve(pod: AdvertiseSource, record: RegistryRecord, mode: AdvertiseMode, spec: AdvertiseSpec): Promise<Advertised> {
    const who = `pod ${record.namespace}/${record.pod}`
    if (mode === 'podIP') return record.advertised
    if (mode === 'hostIP') {
      if (!record.hostIP) throw new AdvertiseError(`${who} has no hostIP yet`, true)
      const ports: AdvertisedPort[] = []
      for (const c of pod.spec?.containers ?? []) {
        for (const p of c.ports ?? []) {
          if (p.hostPort) ports.push({ ...(p.name ? { name: p.name } : {}), port: p.hostPort, containerPort: p.containerPort, protocol: p.protocol ?? 'TCP' })
        }
      }
      if (ports.length === 0) throw new AdvertiseError(`${who}: advertise mode hostIP needs container ports with a hostPort, and it declares none`, false)
      return { mode, address: record.hostIP, ports }
    }
    if (!record.node) throw new AdvertiseError(`${who} is not bound to a node yet`, true)
    const node = await this.node(record.node)
    const addresses = node.status?.addresses ?? []
    const address = spec.nodeAddressTypes.map((t) => addresses.find((a) => a.type === t)?.address).find((a) => !!a)
    if (!address) {
      throw new AdvertiseError(`node ${record.node} has no address of type ${spec.nodeAddressTypes.join(' or ')} (it has ${addresses.map((a) => a.type).join(', ') || 'none'})`, true)
    }
    const services = await this.get<{ items?: V1Service[] }>(`/api/v1/namespaces/${encodeURIComponent(record.namespace)}/services`, `Services in ${record.namespace}`)
    const labels = pod.metadata?.labels ?? {}
    const selecting = (services.items ?? [])
      .filter((s) => (s.spec?.type === 'NodePort' || s.spec?.type === 'LoadBalancer') && selects(s.spec?.selector, labels))
      .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
    const ports: AdvertisedPort[] = []
    for (const c of pod.spec?.containers ?? []) {
      for (const p of c.ports ?? []) {
        const protocol = p.protocol ?? 'TCP'
        // the first Service by name that maps this container port, for a stable answer
        const nodePort = selecting
          .flatMap((s) => s.spec?.ports ?? [])
          .find((sp) => sp.nodePort && (sp.protocol ?? 'TCP') === protocol && targets(sp.targetPort, sp.port, p.containerPort, p.name))?.nodePort
        if (nodePort) ports.push({ ...(p.name ? { name: p.name } : {}), port: nodePort, containerPort: p.containerPort, protocol })
      }
    }
    if (ports.length === 0) {
      const names = selecting.map((s) => s.metadata?.name).join(', ')
      throw new AdvertiseError(
        selecting.length === 0
          ? `${who}: advertise mode nodePort needs a NodePort or LoadBalancer Service that selects the pod, and none in ${record.namespace} does`
          : `${who}: the Services that select it (${names}) target none of its declared container ports with a nodePort`,
        true,
      )
    }
    return { mode, address, ports }
  }

  private async node(name: string): Promise<V1Node> {
    const hit = this.nodes.get(name)
    if (hit && Date.now() - hit.at < this.nodeTtlMs) return hit.node
    const node = await this.get<V1Node>(`/api/v1/nodes/${encodeURIComponent(name)}`, `node ${name}`)
    if (this.nodes.size > 5000) this.nodes.clear()
    this.nodes.set(name, { at: Date.now(), node: { status: { addresses: node.status?.addresses ?? [] } } })
    return node
  }

  private async get<T>(path: string, what: string): Promise<T> {
    try {
      return await this.client.request<T>('GET', path, { timeoutMs: this.timeoutMs })
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 403) {
        throw new AdvertiseError(`cannot read ${what}: forbidden (the enlist ClusterRole needs get on nodes and list on services)`, false, { cause: err })
      }
      throw new AdvertiseError(`cannot read ${what}: ${errorMessage(err)}`, true, { cause: err })
    }
  }
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return false
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

function targets(target: number | string | undefined, servicePort: number, containerPort: number, portName: string | undefined): boolean {
  if (target === undefined) return servicePort === containerPort
  if (typeof target === 'number' || /^[0-9]+$/.test(target)) return Number(target) === containerPort
  return portName !== undefined && target === portName
}
