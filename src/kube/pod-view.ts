// What enlist keeps of a managed pod: a few hundred bytes the controller, the kubernetes
// backend and the key rotator read, instead of the kilobytes the apiserver sends. The type
// is the contract: code given a PodView cannot read a field the cache did not keep (the
// compiler says so), and test/unit/pod-view.test.ts checks every kept field survives.
//
// Bounded by a constant whatever the pod carries, since anyone who can create a pod can put
// the managed label on it (issue 24, finding 2): identity (uid, namespace, name,
// resourceVersion, all length-checked by the apiserver), whether it is terminating, its
// phase, node, IPs, the condition enlist.io/registered (its reason cut short), only the
// labels enlist reads (by name: the kubernetes backends' discovery labels), a digest of
// each record annotation enlist's backends write, and of enlist.io/status only what its
// seal says: the opened decision (whose size admission bounds), or, for a seal under a key
// this replica lacks, that key's id (at most 63 characters) so the pod can be read again
// once the key arrives. Never the status text, never all the labels. Declared ports are
// kept only for a pod whose seal opened (only such a pod is registered), at most
// MAX_VIEW_PORTS of them. Labels, ports and decisions are shared between the pods that have
// equal ones (the replicas of a workload), and held only while a view holds them.

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
    /** Only the labels enlist reads (ViewOptions.recordLabels). */
    labels: Readonly<Record<string, string>>
  }
  spec: {
    nodeName?: string
    /** The containers that declare ports, with their ports; only for a pod whose seal opened. */
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
    /** A seal under a key this replica does not hold: only the key's id, so that the pod is
     *  read again from the apiserver once the key arrives (the text is not kept). */
    pending?: { key: string }
    /** Digests of the record annotations enlist's backends write, by annotation key. */
    records: Readonly<Record<string, string>>
  }
}

export interface ViewOptions {
  ring: KeyRing | undefined
  /** The annotations whose digests are kept (each backend's record annotation). */
  recordAnnotations: readonly string[]
  /** The labels kept (each kubernetes backend's discovery label); DEFAULT_RECORD_LABELS if absent. */
  recordLabels?: readonly string[]
}

/** The discovery labels of the default policy and of the dubbo layout, kept until the policy
 *  names its own (ManagedPods.setRecordLabels). */
export const DEFAULT_RECORD_LABELS: readonly string[] = ['app.io/label', 'dubbo.io/label']

/** Ports kept per view: more than any real workload declares, few enough to bound a view. */
export const MAX_VIEW_PORTS = 100
// A condition's reason is a CamelCase word; anything longer is not one of enlist's.
const MAX_REASON = 128
const MAX_PHASE = 32
const MAX_TIME = 64
// Key ids are at most 63 characters (the seal's own syntax); longer is no key of enlist's.
const MAX_KEY_ID = 63

/** A digest of a record annotation: equality of text, at the cost of 22 characters. A
 *  cryptographic one, so that no tenant can craft an edit that looks unchanged. */
export function recordDigest(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze({})
const NO_CONTAINERS: ReadonlyArray<{ ports?: readonly PodPort[] }> = Object.freeze([])

/**
 * Interned values, by a digest of their JSON: replicas share one copy. Held weakly, so a
 * value no view holds any more is collected with its entry (the map never outgrows the
 * live views, whatever pods came and went), and the keys are fixed-size digests.
 */
class Interner<T extends object> {
  private readonly map = new Map<string, WeakRef<T>>()
  private readonly gone = new FinalizationRegistry<string>((key) => {
    if (this.map.get(key)?.deref() === undefined) this.map.delete(key)
  })
  get(json: string, make: () => T): T {
    const key = recordDigest(json)
    let v = this.map.get(key)?.deref()
    if (v === undefined) {
      v = make()
      this.map.set(key, new WeakRef(v))
      this.gone.register(v, key)
    }
    return v
  }
  get size(): number {
    return this.map.size
  }
}

const labelSets = new Interner<Readonly<Record<string, string>>>()
const containerSets = new Interner<ReadonlyArray<{ ports?: readonly PodPort[] }>>()
const decisions = new Interner<Decision>()

/** Entries the interners hold (tests: they do not outgrow the views). */
export function internedCount(): number {
  return labelSets.size + containerSets.size + decisions.size
}

export function viewOf(pod: V1Pod, o: ViewOptions): PodView {
  const m = pod.metadata ?? {}
  const s = pod.status ?? {}
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
      labels: labelsOf(m.labels, o.recordLabels ?? DEFAULT_RECORD_LABELS),
    },
    spec: {
      ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      containers: NO_CONTAINERS,
    },
    status: {
      ...(s.phase ? { phase: s.phase.slice(0, MAX_PHASE) } : {}),
      ...(s.podIP ? { podIP: s.podIP } : {}),
      // the second and later IPs only: one IP is podIP, and most pods have one (at most two:
      // one per family)
      ...(ips.length > 1 ? { podIPs: ips.slice(0, 2).map((ip) => ({ ip })) } : {}),
      ...(s.hostIP ? { hostIP: s.hostIP } : {}),
      ...(cond
        ? {
            conditions: [
              {
                type: cond.type,
                status: cond.status.slice(0, MAX_PHASE),
                ...(cond.reason ? { reason: cond.reason.slice(0, MAX_REASON) } : {}),
                ...(at !== undefined && at !== null ? { lastTransitionTime: timeOf(at).slice(0, MAX_TIME) } : {}),
              },
            ],
          }
        : {}),
    },
    enlist: { records: digests(m.annotations, o.recordAnnotations) },
  }
  const text = m.annotations?.[STATUS_ANNOTATION]
  if (text !== undefined) seal(view, text, o.ring)
  // Only a pod enlist sealed is registered: the ports of any other are never read.
  if (view.enlist.sealed) view.spec.containers = portsOf(pod)
  return view
}

/** Whether a view's seal names a key the ring now holds: the pod must be read again (its
 *  status text was not kept) for the seal to be opened. */
export function opensWith(view: PodView, ring: KeyRing): boolean {
  const p = view.enlist.pending
  return p !== undefined && ring.keys.some((k) => k.id === p.key)
}

/** Drops a decision whose key the ring no longer holds (it was revoked). */
export function revalidate(view: PodView, ring: KeyRing): void {
  const s = view.enlist.sealed
  if (s && !ring.keys.some((k) => k.id === s.key)) delete view.enlist.sealed
}

function seal(view: PodView, text: string, ring: KeyRing | undefined): void {
  const opened = openStatus(text, ring, view.metadata.namespace)
  if (opened.ok) {
    const d = opened.status.decision
    view.enlist.sealed = { key: own(opened.status.seal.key), decision: decisions.get(JSON.stringify(d), () => Object.freeze(d) as Decision) }
  } else if (opened.reason === 'unknown-key' && opened.key && opened.key.length <= MAX_KEY_ID) {
    // a key newer than this replica's ring (or one retired, or made up): its id only
    view.enlist.pending = { key: own(opened.key) }
  }
}

/** A copy of a string cut from a larger one: V8 keeps a regular expression's match as a
 *  slice that holds the whole text it was cut from (here, the status) alive. */
function own(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8')
}

function labelsOf(labels: Record<string, string> | undefined, keys: readonly string[]): Readonly<Record<string, string>> {
  if (!labels) return EMPTY
  let out: Record<string, string> | undefined
  for (const k of keys) {
    const v = labels[k]
    if (v === undefined) continue
    out ??= {}
    out[k] = v
  }
  return out ? labelSets.get(JSON.stringify(out), () => Object.freeze(out)) : EMPTY
}

/** The containers that declare ports, at most MAX_VIEW_PORTS ports in all. Containers
 *  without ports add nothing to a record, so they are not kept. */
function portsOf(pod: V1Pod): ReadonlyArray<{ ports?: readonly PodPort[] }> {
  const out: Array<{ ports: PodPort[] }> = []
  let left = MAX_VIEW_PORTS
  for (const c of pod.spec?.containers ?? []) {
    if (left <= 0) break
    if (!c.ports || c.ports.length === 0) continue
    const ports = c.ports.slice(0, left).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      containerPort: p.containerPort,
      ...(p.protocol ? { protocol: p.protocol } : {}),
      ...(p.hostPort ? { hostPort: p.hostPort } : {}),
    }))
    left -= ports.length
    out.push({ ports })
  }
  if (out.length === 0) return NO_CONTAINERS
  return containerSets.get(JSON.stringify(out), () => Object.freeze(out))
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
