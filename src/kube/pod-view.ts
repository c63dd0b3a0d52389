// What enlist keeps of a managed pod: the few hundred bytes the controller, the kubernetes
// backend and the key rotator read, instead of the ten kilobytes the apiserver sends. The
// type is the contract: code given a PodView cannot read a field the cache did not keep
// (the compiler says so), and test/unit/pod-view.test.ts checks every kept field survives.
//
// Kept: identity (uid, namespace, name, resourceVersion), whether it is terminating, its
// phase, node, IPs, labels, declared ports, the condition enlist.io/registered, and what
// enlist derived from two annotations: the decision sealed in enlist.io/status, opened
// here (the seal is checked once, when the pod is cached), and a digest of each record
// annotation enlist's backends write (enough to tell an edited record from enlist's own).
// Labels, ports and decisions are shared between the pods that have equal ones (the
// replicas of a workload), so a cluster of 50,000 pods holds a few thousand of each.

import { createHash } from 'node:crypto'
import type { V1Pod } from '@kubernetes/client-node'
import type { KeyRing } from '../decision/keyring.js'
import { type Decision, openStatus } from '../decision/status.js'
import { REGISTERED_CONDITION, STATUS_ANNOTATION } from '../names.js'

export interface PodPort {
  name?: string
  containerPort: number
  protocol?: string
  hostPort?: number
}

export interface RegisteredCondition {
  type: string
  status: string
  reason?: string
  lastTransitionTime?: string
}

export interface PodView {
  metadata: {
    uid: string
    namespace: string
    name: string
    resourceVersion?: string
    /** When it started terminating (RFC 3339), if it has. */
    deletionTimestamp?: string
    labels: Readonly<Record<string, string>>
  }
  spec: {
    nodeName?: string
    containers: ReadonlyArray<{ ports?: readonly PodPort[] }>
  }
  status: {
    phase?: string
    podIP?: string
    podIPs?: ReadonlyArray<{ ip: string }>
    hostIP?: string
    /** Only enlist.io/registered. */
    conditions?: readonly RegisteredCondition[]
  }
  enlist: {
    /** The decision enlist sealed into enlist.io/status, opened with the key ring. */
    sealed?: { key: string; decision: Decision }
    /** A seal under a key this replica does not hold yet: kept to open once it arrives. */
    pending?: { key: string; text: string }
    /** Digests of the record annotations enlist's backends write, by annotation key. */
    records: Readonly<Record<string, string>>
  }
}

export interface ViewOptions {
  ring: KeyRing | undefined
  /** The annotations whose digests are kept (each backend's record annotation). */
  recordAnnotations: readonly string[]
}

/** A digest of a record annotation: equality of text, at the cost of 22 characters. A
 *  cryptographic one, so that no tenant can craft an edit that looks unchanged. */
export function recordDigest(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze({})

/** Interned values, dropped wholesale past a bound (views keep what they hold). */
class Interner<T> {
  private map = new Map<string, T>()
  constructor(private readonly max = 20_000) {}
  get(key: string, make: () => T): T {
    let v = this.map.get(key)
    if (v === undefined) {
      if (this.map.size >= this.max) this.map = new Map()
      v = make()
      this.map.set(key, v)
    }
    return v
  }
}

const labelSets = new Interner<Readonly<Record<string, string>>>()
const containerSets = new Interner<ReadonlyArray<{ ports?: readonly PodPort[] }>>()
const decisions = new Interner<Decision>()

export function viewOf(pod: V1Pod, o: ViewOptions): PodView {
  const m = pod.metadata ?? {}
  const s = pod.status ?? {}
  const labels = m.labels && Object.keys(m.labels).length > 0 ? labelSets.get(JSON.stringify(m.labels), () => Object.freeze({ ...m.labels })) : EMPTY
  const containers = (pod.spec?.containers ?? []).map((c) => ({
    ...(c.ports && c.ports.length > 0
      ? {
          ports: c.ports.map((p) => ({
            ...(p.name ? { name: p.name } : {}),
            containerPort: p.containerPort,
            ...(p.protocol ? { protocol: p.protocol } : {}),
            ...(p.hostPort ? { hostPort: p.hostPort } : {}),
          })),
        }
      : {}),
  }))
  const cond = s.conditions?.find((c) => c.type === REGISTERED_CONDITION)
  const at = cond?.lastTransitionTime as unknown
  const ips = s.podIPs?.map((x) => x.ip).filter((x): x is string => !!x) ?? []
  const view: PodView = {
    metadata: {
      uid: m.uid ?? '',
      namespace: m.namespace ?? '',
      name: m.name ?? '',
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: timeOf(m.deletionTimestamp) } : {}),
      labels,
    },
    spec: {
      ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      containers: containerSets.get(JSON.stringify(containers), () => Object.freeze(containers)),
    },
    status: {
      ...(s.phase ? { phase: s.phase } : {}),
      ...(s.podIP ? { podIP: s.podIP } : {}),
      // the second and later IPs only: one IP is podIP, and most pods have one
      ...(ips.length > 1 ? { podIPs: ips.map((ip) => ({ ip })) } : {}),
      ...(s.hostIP ? { hostIP: s.hostIP } : {}),
      ...(cond
        ? {
            conditions: [
              {
                type: cond.type,
                status: cond.status,
                ...(cond.reason ? { reason: cond.reason } : {}),
                ...(at !== undefined && at !== null ? { lastTransitionTime: timeOf(at) } : {}),
              },
            ],
          }
        : {}),
    },
    enlist: { records: digests(m.annotations, o.recordAnnotations) },
  }
  const text = m.annotations?.[STATUS_ANNOTATION]
  if (text !== undefined) seal(view, text, o.ring)
  return view
}

/** Opens a view's pending seal once its key is held; false when the ring still lacks it. */
export function reopen(view: PodView, ring: KeyRing | undefined): boolean {
  const p = view.enlist.pending
  if (!p) return true
  seal(view, p.text, ring)
  return view.enlist.pending === undefined
}

/** Drops a decision whose key the ring no longer holds (it was revoked). */
export function revalidate(view: PodView, ring: KeyRing): void {
  const s = view.enlist.sealed
  if (s && !ring.keys.some((k) => k.id === s.key)) delete view.enlist.sealed
}

function seal(view: PodView, text: string, ring: KeyRing | undefined): void {
  const opened = openStatus(text, ring, view.metadata.namespace)
  delete view.enlist.pending
  if (opened.ok) {
    const d = opened.status.decision
    view.enlist.sealed = { key: opened.status.seal.key, decision: decisions.get(JSON.stringify(d), () => Object.freeze(d) as Decision) }
  } else if (opened.reason === 'unknown-key' && opened.key) {
    // a key newer than this replica's ring (or one retired): keep the text to open later
    view.enlist.pending = { key: opened.key, text }
  }
}

function digests(annotations: Record<string, string> | undefined, keys: readonly string[]): Readonly<Record<string, string>> {
  if (!annotations) return EMPTY
  let out: Record<string, string> | undefined
  for (const k of keys) {
    const v = annotations[k]
    if (v === undefined) continue
    out ??= {}
    out[k] = recordDigest(v)
  }
  return out ?? EMPTY
}

/** metav1.Time arrives as a string; client-node's types say Date. */
function timeOf(t: unknown): string {
  return t instanceof Date ? t.toISOString().replace(/\.\d{3}Z$/, 'Z') : String(t)
}

/** The key id a cached pod's status names (sealed or pending): which keys live pods need. */
export function sealKeyOfView(v: PodView): string | undefined {
  return v.enlist.sealed?.key ?? v.enlist.pending?.key
}
