// Kubernetes Events on pods: what enlist did to them, where `kubectl describe pod` shows it.

import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { errorMessage } from '../lib/errors.js'
import type { KubeClient } from './client.js'
import type { PodRef } from './pod-ref.js'

// Retries repeat failures every few seconds: one event per pod and reason in this window
// is enough for `kubectl describe`, and keeps an outage from flooding etcd with Events.
const REPEAT_WINDOW_MS = 5 * 60_000
const MAX_REMEMBERED = 10_000

export class EventRecorder {
  private readonly recent = new Map<string, number>()

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    private readonly instance: string,
  ) {}

  /** Fire and forget: an event that cannot be written is logged, never fatal. */
  record(pod: PodRef, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const key = `${pod.uid}/${reason}`
    const last = this.recent.get(key)
    if (last !== undefined && Date.now() - last < REPEAT_WINDOW_MS) return
    if (this.recent.size >= MAX_REMEMBERED) {
      for (const [k, at] of this.recent) if (Date.now() - at >= REPEAT_WINDOW_MS || this.recent.size >= MAX_REMEMBERED) this.recent.delete(k)
    }
    this.recent.delete(key) // re-insert: the map stays ordered by time
    this.recent.set(key, Date.now())
    const now = new Date().toISOString()
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${pod.pod}.${randomBytes(8).toString('hex')}`, namespace: pod.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.pod, uid: pod.uid },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: 'enlist' },
      reportingComponent: 'enlist.io/enlist',
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    }
    this.client.create(`/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/events`, event).catch((err: unknown) => {
      this.log.warn({ pod: `${pod.namespace}/${pod.pod}`, reason, err: errorMessage(err) }, 'cannot record event')
    })
  }
}
