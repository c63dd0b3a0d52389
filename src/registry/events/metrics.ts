// Metrics of the event-stream backends (nats, amqp), registered on enlist's registry the
// first time such a backend is made, so clusters that use none export none.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface EventMetrics {
  published: Counter<'backend' | 'type'>
  acked: Counter<'backend' | 'type' | 'duplicate'>
  failed: Counter<'backend' | 'type' | 'reason'>
  publishDuration: Histogram<'backend'>
  ledgerEntries: Gauge<'backend'>
  ledgerDuration: Histogram<'backend' | 'op'>
  up: Gauge<'backend'>
}

const byRegistry = new WeakMap<Registry, EventMetrics>()

export function eventMetrics(registry: Registry): EventMetrics {
  const known = byRegistry.get(registry)
  if (known) return known
  const registers = [registry]
  const m: EventMetrics = {
    published: new Counter({
      name: 'enlist_events_published_total',
      help: 'Registration events sent to a broker, by backend and type (registered, deregistered).',
      labelNames: ['backend', 'type'] as const,
      registers,
    }),
    acked: new Counter({
      name: 'enlist_events_acked_total',
      help: 'Events the broker confirmed; duplicate="true" when JetStream recognised the id inside its duplicate window.',
      labelNames: ['backend', 'type', 'duplicate'] as const,
      registers,
    }),
    failed: new Counter({
      name: 'enlist_events_failed_total',
      help: 'Publishes that got no confirmation, by reason (timeout, nack, unroutable, not_connected, no_signing_key, error); retried.',
      labelNames: ['backend', 'type', 'reason'] as const,
      registers,
    }),
    publishDuration: new Histogram({
      name: 'enlist_event_publish_duration_seconds',
      help: 'Time from publish to the broker acknowledgement.',
      labelNames: ['backend'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    ledgerEntries: new Gauge({
      name: 'enlist_event_ledger_entries',
      help: 'Pods the backend\'s ledger records as published registered (at the last sweep).',
      labelNames: ['backend'] as const,
      registers,
    }),
    ledgerDuration: new Histogram({
      name: 'enlist_event_ledger_duration_seconds',
      help: 'Ledger operations (put, get, remove, list) by backend.',
      labelNames: ['backend', 'op'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    up: new Gauge({
      name: 'enlist_event_backend_up',
      help: '1 while the backend is connected and its stream, bucket or exchange is usable; 0 otherwise (see /readyz?verbose).',
      labelNames: ['backend'] as const,
      registers,
    }),
  }
  byRegistry.set(registry, m)
  return m
}
