// Kubernetes Events on pods: what enlist did to them, where `kubectl describe pod` shows it.

import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { errorMessage } from '../lib/errors.js'
import type { KubeClient } from './client.js'

export interface PodRef {
  namespace: string
  name: string
  uid: string
}

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    private readonly instance: string,
  ) {}

  /** Fire and forget: an event that cannot be written is logged, never fatal. */
  record(pod: PodRef, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const now = new Date().toISOString()
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${pod.name}.${randomBytes(8).toString('hex')}`, namespace: pod.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
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
      this.log.warn({ pod: `${pod.namespace}/${pod.name}`, reason, err: errorMessage(err) }, 'cannot record event')
    })
  }
}
