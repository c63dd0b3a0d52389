// The status report's writer (leader only): after each whole sweep the controller hands it
// what it found per backend, and it writes the report (src/contract/status-report.ts) to
// ConfigMap enlist-status in enlist's namespace, where `enlist status` reads it with the
// user's kubeconfig alone. A write is bounded by the kube client's deadline and abandoned
// when leadership is lost; a failed one is logged and the next sweep writes again. Writes
// never overlap: a report that arrives during one waits, and only the newest is written.

import type { V1ConfigMap } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import { AbortedError, errorMessage } from '../lib/errors.js'
import type { Runnable } from '../manager.js'
import type { ClusterIdentity } from '../registry/ownership.js'
import { type BackendStatus, STATUS_CONFIGMAP, STATUS_KEY, type StatusReport } from '../contract/status-report.js'

export interface StatusPublisherOptions {
  client: KubeClient
  /** enlist's install namespace: where the ConfigMap lives. */
  namespace: string
  /** This replica in the lease: the report's `leader`. */
  identity: string
  cluster: () => ClusterIdentity
  sweepIntervalSeconds: () => number
  log: Logger
  now?: () => Date
}

export class StatusPublisher implements Runnable {
  readonly name = 'status-publisher'
  private abort: AbortController | undefined
  private next: StatusReport | undefined
  private writing: Promise<void> | undefined
  /** Whether the last write failed: its recovery is logged once. */
  private failed = false

  constructor(private readonly o: StatusPublisherOptions) {}

  needLeaderElection(): boolean {
    return true
  }

  start(signal?: AbortSignal): void {
    const abort = new AbortController()
    this.abort = abort
    if (signal?.aborted) abort.abort()
    else signal?.addEventListener('abort', () => abort.abort(), { once: true })
  }

  async stop(): Promise<void> {
    this.abort?.abort()
    this.abort = undefined
    this.next = undefined
    await this.writing
  }

  /** The report of one sweep; written in the background. Ignored unless started (leader). */
  publish(backends: BackendStatus[]): void {
    const abort = this.abort
    if (!abort || abort.signal.aborted) return
    const cluster = this.o.cluster()
    this.next = {
      cluster: cluster.name,
      clusterUID: cluster.uid,
      leader: this.o.identity,
      generatedAt: (this.o.now?.() ?? new Date()).toISOString(),
      sweepIntervalSeconds: this.o.sweepIntervalSeconds(),
      backends,
    }
    this.writing ??= this.drain(abort.signal).finally(() => {
      this.writing = undefined
    })
  }

  /** Resolves when nothing is being written (tests). */
  async settled(): Promise<void> {
    while (this.writing) await this.writing
  }

  private async drain(signal: AbortSignal): Promise<void> {
    while (this.next && !signal.aborted) {
      const report = this.next
      this.next = undefined
      try {
        await writeStatus(this.o.client, this.o.namespace, report, signal)
        if (this.failed) this.o.log.info({ configMap: `${this.o.namespace}/${STATUS_CONFIGMAP}` }, 'registry status report written again')
        this.failed = false
      } catch (err) {
        if (signal.aborted || err instanceof AbortedError) return
        this.failed = true
        this.o.log.warn({ configMap: `${this.o.namespace}/${STATUS_CONFIGMAP}`, err: errorMessage(err) }, 'cannot write the registry status report; the next sweep writes it again')
      }
    }
  }
}

/** Writes the report: an update, else a create where the ConfigMap is absent. An update
 *  without resourceVersion: the leader is the only writer, and the newest report wins. */
export async function writeStatus(client: KubeClient, namespace: string, report: StatusReport, signal?: AbortSignal): Promise<void> {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`
  const body: V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: STATUS_CONFIGMAP, namespace, labels: { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/component': 'status' } },
    data: { [STATUS_KEY]: JSON.stringify(report, null, 1) },
  }
  try {
    await client.replace(`${base}/${STATUS_CONFIGMAP}`, body, { signal })
    return
  } catch (err) {
    if (!(err instanceof KubeApiError && err.notFound)) throw err
  }
  try {
    await client.create(base, body, undefined, { signal })
  } catch (err) {
    // created meanwhile (a previous leader's write): update it after all
    if (!(err instanceof KubeApiError && err.conflict)) throw err
    await client.replace(`${base}/${STATUS_CONFIGMAP}`, body, { signal })
  }
}
