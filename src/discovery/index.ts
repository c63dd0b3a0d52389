// enlist/discovery: the consumer side of the kubernetes backend. LIST+WATCH pods by the
// discovery label in the given namespaces and yield decoded records as peers come and go.
//
//   import { watchPeers } from 'enlist/discovery'
//   for await (const ev of watchPeers({ namespaces: ['shop'] })) console.log(ev.type, ev.peer.ip)
//
// A pod is a peer while it carries the record annotation and is not terminating or
// finished; enlist writes the annotation once the pod is registered and removes it when
// the pod goes.

import type { KubeConfig, V1Pod } from '@kubernetes/client-node'
import { KubeClient } from '../kube/client.js'
import { type Credentials, fromKubeConfig, loadCredentials } from '../kube/credentials.js'
import { Reflector } from '../kube/reflector.js'
import { silentLogger, type Logger } from '../log.js'
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
}

/** The record a pod publishes, or undefined when it is not (or no longer) a peer. */
export function peerOf(pod: V1Pod, annotation = DEFAULT_ANNOTATION): RegistryRecord | undefined {
  const value = pod.metadata?.annotations?.[annotation]
  if (value === undefined || pod.metadata?.deletionTimestamp) return undefined
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return undefined
  try {
    return decodeRecord(value)
  } catch {
    return undefined
  }
}

type Listener = (ev: PeerEvent) => void

export class PeerWatcher {
  private reflectors: Array<Reflector<V1Pod>> = []
  private readonly current = new Map<string, RegistryRecord>()
  private readonly listeners = new Set<Listener>()
  private client: KubeClient | undefined

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
        path: `/api/v1/namespaces/${encodeURIComponent(ns)}/pods`,
        labelSelector: `${label.key}=${label.value}`,
      })
      const seen = (pod: V1Pod): void => this.update(pod.metadata?.uid ?? '', peerOf(pod, annotation))
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
