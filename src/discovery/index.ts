// enlist/discovery: the consumer side of the kubernetes backend. LIST+WATCH pods by the
// discovery label in the given namespaces and yield decoded records as peers come and go.
//
//   import { watchPeers } from 'enlist/discovery'
//   for await (const ev of watchPeers({ namespaces: ['shop'] })) console.log(ev.type, ev.peer.ip)
//
// A pod is a peer while it carries a record enlist wrote and is not terminating or
// finished. A tenant can write any annotation and label on its own pods, so a record is
// believed only when what a tenant cannot forge agrees with it: the pod carries enlist's
// managed label and the condition enlist.io/registered=True (set through pods/status,
// which tenants cannot write), and the record describes this very pod (uid, name, IP,
// node). Everything else is dropped and counted. enlist itself restores a record that
// was edited after registration (the controller), and the optional
// ValidatingAdmissionPolicy forbids the edit on clusters that run it.

import type { KubeConfig, V1Pod } from '@kubernetes/client-node'
import { KubeClient } from '../kube/client.js'
import { type Credentials, fromKubeConfig, loadCredentials } from '../kube/credentials.js'
import { POD_LIST_PAGE_SIZE, podsPath } from '../kube/pod-ref.js'
import { Reflector } from '../kube/reflector.js'
import { silentLogger, type Logger } from '../log.js'
import { MANAGED_LABEL, REGISTERED_CONDITION } from '../names.js'
import { decodeRecord, type RegistryRecord } from '../registry/record.js'

export { decodeRecord, encodeRecord, RecordDecodeError, type RegistryRecord, type RecordPort } from '../registry/record.js'

export const DEFAULT_LABEL = { key: 'app.io/label', value: 'app.io-value' }
export const DEFAULT_ANNOTATION = 'app.io/annotation'

export interface PeerEvent {
  type: 'added' | 'updated' | 'removed'
  peer: RegistryRecord
}

export interface WatchPeersOptions {
  namespaces: readonly string[]
  /** A client-node KubeConfig, a kubeconfig path, or nothing for $KUBECONFIG / in-cluster. */
  kubeconfig?: KubeConfig | string
  /** The policy's discovery label and annotation (defaults: enlist's defaults). */
  label?: { key: string; value: string }
  annotation?: string
  log?: Logger
  /** Called for each pod whose record is not believed, with why. */
  onDrop?: (pod: V1Pod, reason: DropReason) => void
}

/** Why a pod carrying a record is not taken as a peer. */
export type DropReason = 'not-managed' | 'not-registered' | 'unreadable' | 'not-its-own'

export type PeerCheck = { peer: RegistryRecord } | { dropped: DropReason } | { none: true }

/** Whether a pod is a peer: its record, why its record is not believed, or no record. */
export function checkPeer(pod: V1Pod, annotation = DEFAULT_ANNOTATION): PeerCheck {
  const m = pod.metadata
  const value = m?.annotations?.[annotation]
  if (value === undefined || m?.deletionTimestamp) return { none: true }
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return { none: true }
  if (m?.labels?.[MANAGED_LABEL] !== 'true') return { dropped: 'not-managed' }
  if (!pod.status?.conditions?.some((c) => c.type === REGISTERED_CONDITION && c.status === 'True')) return { dropped: 'not-registered' }
  let record: RegistryRecord
  try {
    record = decodeRecord(value)
  } catch {
    return { dropped: 'unreadable' }
  }
  const s = pod.status
  if (
    record.uid !== m.uid ||
    record.namespace !== m.namespace ||
    record.pod !== m.name ||
    !record.ip ||
    record.ip !== s.podIP ||
    record.hostIP !== (s.hostIP ?? '') ||
    record.node !== (pod.spec?.nodeName ?? '')
  ) {
    return { dropped: 'not-its-own' }
  }
  return { peer: record }
}

/** The fields of a pod checkPeer reads, and nothing else. */
export function slimPeer(p: V1Pod, annotation = DEFAULT_ANNOTATION): V1Pod {
  const m = p.metadata ?? {}
  const managed = m.labels?.[MANAGED_LABEL]
  const record = m.annotations?.[annotation]
  const cond = p.status?.conditions?.find((c) => c.type === REGISTERED_CONDITION)
  return {
    metadata: {
      uid: m.uid,
      namespace: m.namespace,
      name: m.name,
      resourceVersion: m.resourceVersion,
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
      ...(managed !== undefined ? { labels: { [MANAGED_LABEL]: managed } } : {}),
      ...(record !== undefined ? { annotations: { [annotation]: record } } : {}),
    },
    spec: { nodeName: p.spec?.nodeName, containers: [] },
    status: { phase: p.status?.phase, podIP: p.status?.podIP, hostIP: p.status?.hostIP, ...(cond ? { conditions: [cond] } : {}) },
  }
}

/** The record a pod publishes, or undefined when it is not (or no longer) a believed peer. */
export function peerOf(pod: V1Pod, annotation = DEFAULT_ANNOTATION): RegistryRecord | undefined {
  const c = checkPeer(pod, annotation)
  return 'peer' in c ? c.peer : undefined
}

type Listener = (ev: PeerEvent) => void

export class PeerWatcher {
  private reflectors: Array<Reflector<V1Pod>> = []
  private readonly current = new Map<string, RegistryRecord>()
  private readonly listeners = new Set<Listener>()
  private client: KubeClient | undefined
  private readonly drops: Record<DropReason, number> = { 'not-managed': 0, 'not-registered': 0, unreadable: 0, 'not-its-own': 0 }

  constructor(private readonly opts: WatchPeersOptions) {}

  private setup(credentials: Credentials): void {
    const opts = this.opts
    this.client = new KubeClient(credentials)
    const label = opts.label ?? DEFAULT_LABEL
    const annotation = opts.annotation ?? DEFAULT_ANNOTATION
    const log = opts.log ?? silentLogger()
    this.reflectors = opts.namespaces.map((ns) => {
      const r = new Reflector<V1Pod>({
        client: this.client!,
        log,
        name: `peers in ${ns}`,
        path: podsPath(ns),
        labelSelector: `${label.key}=${label.value}`,
        pageSize: POD_LIST_PAGE_SIZE,
        // a consumer watching thousands of peers keeps only what checkPeer reads
        transform: (p) => slimPeer(p, annotation),
      })
      const seen = (pod: V1Pod): void => {
        const c = checkPeer(pod, annotation)
        if ('dropped' in c) {
          this.drops[c.dropped]++
          opts.onDrop?.(pod, c.dropped)
        }
        this.update(pod.metadata?.uid ?? '', 'peer' in c ? c.peer : undefined)
      }
      r.on({ add: seen, update: seen, delete: (pod) => this.update(pod.metadata?.uid ?? '', undefined) })
      return r
    })
  }

  on(fn: Listener): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Starts watching; resolves once every namespace has been listed. */
  async start(): Promise<void> {
    if (!this.client) {
      const k = this.opts.kubeconfig
      this.setup(typeof k === 'object' ? fromKubeConfig(k) : await loadCredentials(k))
    }
    for (const r of this.reflectors) r.start()
    await Promise.all(this.reflectors.map((r) => r.waitForSync()))
  }

  async stop(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.stop()))
    this.client?.close()
  }

  /** Records seen and not believed so far, by reason. */
  dropped(): Readonly<Record<DropReason, number>> {
    return { ...this.drops }
  }

  /** The peers known now. */
  peers(): RegistryRecord[] {
    return [...this.current.values()]
  }

  private update(uid: string, next: RegistryRecord | undefined): void {
    if (!uid) return
    const prev = this.current.get(uid)
    let ev: PeerEvent | undefined
    if (next && !prev) ev = { type: 'added', peer: next }
    else if (next && prev && JSON.stringify(next) !== JSON.stringify(prev)) ev = { type: 'updated', peer: next }
    else if (!next && prev) ev = { type: 'removed', peer: prev }
    if (next) this.current.set(uid, next)
    else this.current.delete(uid)
    if (ev) for (const l of this.listeners) l(ev)
  }
}

/** Peer events as an async iterator; breaking out of the loop stops the watch. */
export function watchPeers(opts: WatchPeersOptions): AsyncIterableIterator<PeerEvent> {
  const watcher = new PeerWatcher(opts)
  const buffered: PeerEvent[] = []
  let wake: (() => void) | undefined
  let done = false
  watcher.on((ev) => {
    buffered.push(ev)
    wake?.()
  })
  const started = watcher.start()
  const it: AsyncIterableIterator<PeerEvent> = {
    async next() {
      await started
      while (buffered.length === 0 && !done) await new Promise<void>((r) => (wake = r))
      if (done && buffered.length === 0) return { done: true, value: undefined }
      return { done: false, value: buffered.shift()! }
    },
    async return() {
      done = true
      wake?.()
      await watcher.stop()
      return { done: true, value: undefined }
    },
    [Symbol.asyncIterator]() {
      return it
    },
  }
  return it
}
