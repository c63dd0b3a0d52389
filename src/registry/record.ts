// The registry record (docs/design.md) and its flat form for the pod annotation: base64 of a
// JSON array of {"k":..,"v":..} string pairs. Pure.

import type { Decision } from '../decision/status.js'
import type { AdvertiseMode } from '../policy/backends/advertise.js'
import { RECORD_FIELDS } from '../names.js'
import type { ErrorCode } from '../lib/errors.js'

export interface RecordPort {
  name?: string
  port: number
  protocol: string
}

/** A declared container port as the backend's consumers reach it. */
export interface AdvertisedPort {
  name?: string
  /** Where consumers connect: the containerPort, its hostPort, or a Service's nodePort. */
  port: number
  containerPort: number
  protocol: string
}

/** Where the backend's consumers reach the pod, and how that was chosen (DESIGN: the record
 *  says which). podIP: the pod's IP and ports; hostIP: the node's IP and the containers'
 *  hostPorts; nodePort: a node address and a Service's nodePorts. Ports with no such
 *  mapping are left out. */
export interface Advertised {
  mode: AdvertiseMode
  address: string
  ports: AdvertisedPort[]
}

export interface RegistryRecord {
  uid: string
  namespace: string
  pod: string
  service: string
  ip: string
  ips: string[]
  hostIP: string
  node: string
  ports: RecordPort[]
  metadata: Record<string, string>
  registeredAt: string
  advertised: Advertised
  /** The cluster that wrote the record (policy cluster.name): the mark that tells a shared
   *  backend's entries apart (src/registry/ownership.ts). Absent where the policy names no
   *  cluster, and in the flat form (the kubernetes backend's record is the pod itself), so
   *  a metadata key "cluster" keeps its meaning there. */
  cluster?: string
  /** The writing cluster's kube-system UID, beside its name: where a backend has no store to
   *  hold a claim on the name (http), a record of this name with another UID tells that two
   *  clusters share a name. Absent until the UID is known, and in the flat form. */
  clusterUID?: string
}

/** What the record takes from admission's sealed decision (src/decision/status.ts). */
export type RecordDecision = Pick<Decision, 'service' | 'metadata'>

/** What a record is built from: a pod as the apiserver sends it, or as the cache keeps it
 *  (src/kube/pod-view.ts). */
export interface RecordSource {
  metadata?: { uid?: string; namespace?: string; name?: string }
  spec?: { nodeName?: string; containers?: ReadonlyArray<{ ports?: ReadonlyArray<{ name?: string; containerPort: number; protocol?: string }> }> }
  status?: { podIP?: string; podIPs?: ReadonlyArray<{ ip?: string }>; hostIP?: string }
}

export function buildRecord(pod: RecordSource, reg: RecordDecision, registeredAt: string): RegistryRecord {
  const ports: RecordPort[] = []
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      const port: RecordPort = { port: p.containerPort, protocol: p.protocol ?? 'TCP' }
      if (p.name) port.name = p.name
      ports.push(port)
    }
  }
  const ip = pod.status?.podIP ?? ''
  const ips = (pod.status?.podIPs ?? []).map((x) => x.ip).filter((x): x is string => !!x)
  return {
    uid: pod.metadata?.uid ?? '',
    namespace: pod.metadata?.namespace ?? '',
    pod: pod.metadata?.name ?? '',
    service: reg.service,
    ip,
    ips: ips.length > 0 ? ips : ip ? [ip] : [],
    hostIP: pod.status?.hostIP ?? '',
    node: pod.spec?.nodeName ?? '',
    ports,
    metadata: { ...reg.metadata },
    registeredAt,
    advertised: podIPAdvertised(ip, ports),
  }
}

export function podIPAdvertised(ip: string, ports: readonly RecordPort[]): Advertised {
  return { mode: 'podIP', address: ip, ports: ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, containerPort: p.port, protocol: p.protocol })) }
}

// --- the flat k/v form ------------------------------------------------------

export interface Pair {
  k: string
  v: string
}

const RESERVED = new Set<string>(RECORD_FIELDS)

export function toPairs(r: RegistryRecord): Pair[] {
  const pairs: Pair[] = [
    { k: 'uid', v: r.uid },
    { k: 'namespace', v: r.namespace },
    { k: 'pod', v: r.pod },
    { k: 'service', v: r.service },
    { k: 'ip', v: r.ip },
    { k: 'ips', v: r.ips.join(',') },
    { k: 'hostIP', v: r.hostIP },
    { k: 'node', v: r.node },
    { k: 'ports', v: JSON.stringify(r.ports) },
    { k: 'registeredAt', v: r.registeredAt },
    { k: 'advertised', v: JSON.stringify(r.advertised) },
  ]
  // Metadata keys go flat, as RPC registries read them; they cannot shadow record fields.
  for (const [k, v] of Object.entries(r.metadata)) if (!RESERVED.has(k)) pairs.push({ k, v })
  return pairs
}

export function fromPairs(pairs: readonly Pair[]): RegistryRecord {
  const f = new Map<string, string>()
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>
  for (const { k, v } of pairs) {
    if (RESERVED.has(k)) f.set(k, v)
    else metadata[k] = v
  }
  let ports: RecordPort[] = []
  try {
    ports = JSON.parse(f.get('ports') ?? '[]') as RecordPort[]
  } catch {
    ports = []
  }
  const ips = f.get('ips')
  let advertised: Advertised | undefined
  try {
    advertised = JSON.parse(f.get('advertised') ?? '') as Advertised
  } catch {
    advertised = undefined
  }
  return {
    uid: f.get('uid') ?? '',
    namespace: f.get('namespace') ?? '',
    pod: f.get('pod') ?? '',
    service: f.get('service') ?? '',
    ip: f.get('ip') ?? '',
    ips: ips ? ips.split(',') : [],
    hostIP: f.get('hostIP') ?? '',
    node: f.get('node') ?? '',
    ports,
    metadata: { ...metadata },
    registeredAt: f.get('registeredAt') ?? '',
    // records written before the field existed were podIP
    advertised: advertised ?? podIPAdvertised(f.get('ip') ?? '', ports),
  }
}

export function encodeRecord(r: RegistryRecord): string {
  return Buffer.from(JSON.stringify(toPairs(r))).toString('base64')
}

export class RecordDecodeError extends Error {
  readonly code = 'ENLIST_RECORD_INVALID' satisfies ErrorCode
}

export function decodeRecord(value: string): RegistryRecord {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64').toString('utf8'))
  } catch (err) {
    throw new RecordDecodeError(`not base64 of JSON: ${(err as Error).message}`)
  }
  if (!Array.isArray(parsed)) throw new RecordDecodeError('not a JSON array of {"k","v"} pairs')
  const pairs: Pair[] = []
  for (const p of parsed) {
    if (p === null || typeof p !== 'object' || typeof (p as Pair).k !== 'string' || typeof (p as Pair).v !== 'string') {
      throw new RecordDecodeError('every element must be {"k": string, "v": string}')
    }
    pairs.push(p as Pair)
  }
  return fromPairs(pairs)
}
