// Every Prometheus metric enlist exports, in one place. Instances are injected, not
// global, so tests and several servers in one process do not share counters.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

// Admission latency is sub-millisecond when healthy; the low buckets show it.
const ADMISSION_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry()
  // Read at scrape time, so the gauge counts down between certificate changes.
  const tls = { notAfter: undefined as Date | undefined }
  const probes = { namespaces: (): number | undefined => undefined }
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  const m = {
    registry,
    admissions: new Counter({
      name: 'enlist_admission_requests_total',
      help: 'Admission requests by verdict (injected, skipped, denied, ignored, error) and reason.',
      labelNames: ['verdict', 'reason'] as const,
      registers: [registry],
    }),
    admissionDuration: new Histogram({
      name: 'enlist_admission_duration_seconds',
      help: 'Time from request body parsed to response ready, by verdict.',
      labelNames: ['verdict'] as const,
      buckets: ADMISSION_BUCKETS,
      registers: [registry],
    }),
    badRequests: new Counter({
      name: 'enlist_http_bad_requests_total',
      help: 'Requests answered with a 4xx status, by route and status code.',
      labelNames: ['route', 'code'] as const,
      registers: [registry],
    }),
    policyGeneration: new Gauge({
      name: 'enlist_policy_generation',
      help: 'Increments each time a new valid policy takes effect.',
      registers: [registry],
    }),
    policyInfo: new Gauge({
      name: 'enlist_policy_info',
      help: 'The policy in effect: 1 for its hash and source.',
      labelNames: ['hash', 'source'] as const,
      registers: [registry],
    }),
    policyRejected: new Counter({
      name: 'enlist_policy_rejected_total',
      help: 'Policy updates rejected as invalid; the last good policy kept serving.',
      registers: [registry],
    }),
    policyLastApplied: new Gauge({
      name: 'enlist_policy_last_applied_timestamp_seconds',
      help: 'When the policy in effect was applied.',
      registers: [registry],
    }),
    probes,
    namespaceCacheSize: new Gauge({
      name: 'enlist_namespace_cache_namespaces',
      help: 'Namespaces in the watch cache.',
      registers: [registry],
      collect() {
        const n = probes.namespaces()
        if (n !== undefined) this.set(n)
      },
    }),
    tlsReloads: new Counter({
      name: 'enlist_tls_reloads_total',
      help: 'Serving certificate reloads from disk or Secret, by result (ok, invalid).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    tls,
    certificateExpiry: new Gauge({
      name: 'enlist_tls_certificate_expiry_seconds',
      help: 'Seconds until the serving certificate in use expires.',
      registers: [registry],
      collect() {
        if (tls.notAfter) this.set((tls.notAfter.getTime() - Date.now()) / 1000)
      },
    }),
  }
  return m
}

export type Metrics = ReturnType<typeof createMetrics>
