// Every Prometheus metric enlist exports, in one place. Instances are injected, not
// global, so tests and several servers in one process do not share counters.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

// Admission latency is sub-millisecond when healthy; the low buckets show it.
const ADMISSION_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry()
  // Read at scrape time, so the gauge counts down between certificate changes.
  const tls = { notAfter: undefined as Date | undefined, caNotAfter: undefined as Date | undefined }
  const probes = {
    namespaces: (): number | undefined => undefined,
    /** Each registry backend and whether it can serve now (its health()). */
    backends: (): Array<{ backend: string; healthy: boolean }> => [],
  }
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  const m = {
    registry,
    admissions: new Counter({
      name: 'enlist_admission_requests_total',
      help: 'Admission requests by verdict (injected, skipped, denied, ignored, error), reason and HTTP status code of the answer (503: not ready).',
      labelNames: ['verdict', 'reason', 'code'] as const,
      registers: [registry],
    }),
    admissionDuration: new Histogram({
      name: 'enlist_admission_duration_seconds',
      help: 'Time from request body parsed to response ready, by verdict.',
      labelNames: ['verdict'] as const,
      buckets: ADMISSION_BUCKETS,
      registers: [registry],
    }),
    admissionsInFlight: new Gauge({
      name: 'enlist_admission_requests_in_flight',
      help: 'POST /mutate requests being served (body being read included).',
      registers: [registry],
    }),
    admissionsUnparsed: new Counter({
      name: 'enlist_admission_unparsed_total',
      help: 'Admissions decided from the raw review without parsing it (pods not for enlist, skipped for their namespace); also counted in enlist_admission_requests_total.',
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
    caExpiration: new Gauge({
      name: 'enlist_ca_certificate_expiration_timestamp_seconds',
      help: 'When the self-managed CA that signs serving certificates expires (Unix time; leader only).',
      registers: [registry],
      collect() {
        if (tls.caNotAfter) this.set(tls.caNotAfter.getTime() / 1000)
      },
    }),
    caExpiry: new Gauge({
      name: 'enlist_ca_certificate_expiry_seconds',
      help: 'Seconds until the self-managed CA that signs serving certificates expires (deprecated: use enlist_ca_certificate_expiration_timestamp_seconds - time()).',
      registers: [registry],
      collect() {
        if (tls.caNotAfter) this.set((tls.caNotAfter.getTime() - Date.now()) / 1000)
      },
    }),
    tlsReloads: new Counter({
      name: 'enlist_tls_reloads_total',
      help: 'Serving certificate reloads from disk or Secret, by result (ok, invalid).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    tls,
    certificateExpiration: new Gauge({
      name: 'enlist_tls_certificate_expiration_timestamp_seconds',
      help: 'When the serving certificate in use expires (Unix time).',
      registers: [registry],
      collect() {
        if (tls.notAfter) this.set(tls.notAfter.getTime() / 1000)
      },
    }),
    certificateExpiry: new Gauge({
      name: 'enlist_tls_certificate_expiry_seconds',
      help: 'Seconds until the serving certificate in use expires (deprecated: use enlist_tls_certificate_expiration_timestamp_seconds - time()).',
      registers: [registry],
      collect() {
        if (tls.notAfter) this.set((tls.notAfter.getTime() - Date.now()) / 1000)
      },
    }),
    registrations: new Counter({
      name: 'enlist_registrations_total',
      help: 'Registration API calls by operation (register, deregister), result and HTTP status code of the answer.',
      labelNames: ['op', 'result', 'code'] as const,
      registers: [registry],
    }),
    registrationDuration: new Histogram({
      name: 'enlist_registration_duration_seconds',
      help: 'Registration API latency by operation and result, long-poll waits included.',
      labelNames: ['op', 'result'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    backendRequests: new Counter({
      name: 'enlist_backend_requests_total',
      help: 'Registry backend calls by backend, operation and result (ok, error).',
      labelNames: ['backend', 'op', 'result'] as const,
      registers: [registry],
    }),
    backendDuration: new Histogram({
      name: 'enlist_backend_request_duration_seconds',
      help: 'Registry backend call latency by backend and operation.',
      labelNames: ['backend', 'op'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    strays: new Counter({
      name: 'enlist_registry_strays_removed_total',
      help: 'Entries the reconciler removed because their pod is gone or finished.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    repaired: new Counter({
      name: 'enlist_registry_repaired_total',
      help: 'Entries the reconciler wrote again because a backend had lost them.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    reconciles: new Counter({
      name: 'enlist_reconcile_runs_total',
      help: 'Full registry reconciles by result.',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    sweepDuration: new Histogram({
      name: 'enlist_reconcile_duration_seconds',
      help: 'How long one backend\'s sweep took (paced by registry.sweepRequestsPerSecond).',
      labelNames: ['backend'] as const,
      buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    lastReconcile: new Gauge({
      name: 'enlist_reconcile_last_success_timestamp_seconds',
      help: 'When a full registry reconcile last succeeded for every backend.',
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'enlist_controller_queue_depth',
      help: 'Pods waiting in the controller work queue.',
      registers: [registry],
    }),
    queueRetries: new Counter({
      name: 'enlist_controller_retries_total',
      help: 'Pod reconciles that failed and were queued again with backoff.',
      registers: [registry],
    }),
    pendingDeregistrations: new Gauge({
      name: 'enlist_pending_deregistrations',
      help: 'Deregistrations not yet confirmed by every backend (retrying).',
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'enlist_leader',
      help: '1 while this replica holds the controller lease.',
      registers: [registry],
    }),
    tokenReviews: new Counter({
      name: 'enlist_token_reviews_total',
      help: 'Token checks by result: authenticated, rejected, cached, error (apiserver unreachable), prechecked (refused without a TokenReview: not a JWT for audience enlist, or expired), throttled (rate limits), pod-throttled (the pod\'s own token budget), signature-rejected (a signature the issuer keys do not verify: no TokenReview), unverified (no issuer keys served: reviewed in one shared queue).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    apiRequests: new Counter({
      name: 'enlist_apiserver_requests_total',
      help: 'Requests to the kube-apiserver by verb (GET, LIST, WATCH, POST, ...), resource and status code (<error>: no answer).',
      labelNames: ['verb', 'resource', 'code'] as const,
      registers: [registry],
    }),
    apiWarnings: new Counter({
      name: 'enlist_apiserver_warnings_total',
      help: 'Warning headers the kube-apiserver sent (each distinct text is logged once).',
      registers: [registry],
    }),
    reflectorBackoff: new Gauge({
      name: 'enlist_reflector_backoff_seconds',
      help: 'How long each watch cache waits before its next list/watch attempt; 0 while healthy.',
      labelNames: ['reflector'] as const,
      registers: [registry],
    }),
    reflectorFailures: new Counter({
      name: 'enlist_reflector_failures_total',
      help: 'Watch cache list/watch failures by reason (expired, throttled, refused, short_watch, error).',
      labelNames: ['reflector', 'reason'] as const,
      registers: [registry],
    }),
    reflectorLists: new Counter({
      name: 'enlist_reflector_lists_total',
      help: 'Full lists each watch cache made (its first, and relists after failures).',
      labelNames: ['reflector'] as const,
      registers: [registry],
    }),
    sweepFailures: new Counter({
      name: 'enlist_registry_sweep_failures_total',
      help: 'Sweep steps that failed and were skipped until the next sweep, by backend and operation (list, deregister, register, check).',
      labelNames: ['backend', 'op'] as const,
      registers: [registry],
    }),
    foreignEntries: new Gauge({
      name: 'enlist_registry_foreign_entries',
      help: "Entries the last sweep found in a shared backend that are not this cluster's, by backend and kind (other: another cluster's mark; unmarked: no mark). Never deleted by the sweep.",
      labelNames: ['backend', 'kind'] as const,
      registers: [registry],
    }),
    claimRefused: new Gauge({
      name: 'enlist_cluster_claim_refused',
      help: "1 while a backend refuses this cluster because another cluster holds the claim on its name (no writes or sweeps there), else 0.",
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    stagedDenials: new Counter({
      name: 'enlist_tenancy_staged_denials_total',
      help: 'What tenancy.enforcement: warn let through that enforce would deny, by where it was seen (admission, registration) and reason (interface-not-owned, dubbo-protocol, metadata-key, metadata-size, service-name).',
      labelNames: ['where', 'reason'] as const,
      registers: [registry],
    }),
    leaderRenewFailures: new Counter({
      name: 'enlist_leader_renew_failures_total',
      help: 'Lease renewals (or acquisitions) that failed or timed out.',
      registers: [registry],
    }),
    backendHealthy: new Gauge({
      name: 'enlist_backend_healthy',
      help: 'Registry backends: 1 while the backend can serve, 0 while it reports a problem (see /readyz?verbose).',
      labelNames: ['backend'] as const,
      registers: [registry],
      collect() {
        this.reset()
        for (const b of probes.backends()) this.set({ backend: b.backend }, b.healthy ? 1 : 0)
      },
    }),
    zookeeperSessionExpirations: new Counter({
      name: 'enlist_zookeeper_session_expirations_total',
      help: "ZooKeeper sessions of a backend that expired and were replaced (enlist's nodes are persistent: nothing is lost).",
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    decisionKeys: new Gauge({
      name: 'enlist_decision_keys',
      help: 'Keys in the decision key ring this replica holds (sealing and verifying enlist.io/status).',
      registers: [registry],
    }),
    decisionKeyErrors: new Counter({
      name: 'enlist_decision_key_errors_total',
      help: 'Decision key Secret contents rejected as unreadable; the last good key ring was kept.',
      registers: [registry],
    }),
    decisionKeyRotations: new Counter({
      name: 'enlist_decision_key_rotations_total',
      help: 'Writes of the decision key ring by the leader (a key added or retired).',
      registers: [registry],
    }),
    trustRejections: new Counter({
      name: 'enlist_trust_rejections_total',
      help: 'Requests or objects refused because they claimed to be enlist\'s and were not, by where and reason.',
      labelNames: ['where', 'reason'] as const,
      registers: [registry],
    }),
    registrationsInFlight: new Gauge({
      name: 'enlist_registrations_in_flight',
      help: 'Registration requests being served, long-polls for dependencies included.',
      registers: [registry],
    }),
  }
  return m
}

export type Metrics = ReturnType<typeof createMetrics>
