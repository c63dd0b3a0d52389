// POST /mutate: the shell around admit(). It parses, looks up the namespace in the cache,
// calls the pure core, and logs and counts the outcome. No other I/O.

import type { FastifyPluginAsync } from 'fastify'
import type { Logger } from 'pino'
import { admit, type AdmissionOutcome, parseReview, reviewResponse } from '../../admission/review.js'
import type { KubeVersion } from '../../admission/settings.js'
import type { NamespaceLookup } from '../../kube/namespaces.js'
import { errorMessage } from '../../lib/errors.js'
import type { Metrics } from '../../metrics.js'
import type { PolicyStore } from '../../policy/source.js'

export interface MutateOptions {
  policy: Pick<PolicyStore, 'current'>
  namespaces: NamespaceLookup
  serverVersion: () => KubeVersion | undefined
  caBundle: () => string
  metrics: Metrics
  log: Logger
  /** How long to wait for a namespace the cache has not seen yet. */
  namespaceWaitMs: number
}

export const mutateRoutes: FastifyPluginAsync<MutateOptions> = async (app, opts) => {
  const { metrics, log } = opts

  app.post('/mutate', async (req, reply) => {
    const started = process.hrtime.bigint()
    const review = parseReview(req.body)
    const request = review.request
    const policy = opts.policy.current
    if (!policy) {
      // Not ready: /readyz says so too. The apiserver applies the failure policy.
      metrics.admissions.inc({ verdict: 'error', reason: 'no-policy' })
      return reply.code(503).send({ code: 'ENLIST_UNAVAILABLE', message: 'no valid policy loaded yet' })
    }

    const ns = request.namespace ?? ''
    let labels = ns ? opts.namespaces.labels(ns) : undefined
    if (labels === undefined && ns) labels = await opts.namespaces.waitFor(ns, opts.namespaceWaitMs)

    let outcome: AdmissionOutcome
    try {
      outcome = admit(request, policy, { namespaceLabels: labels, serverVersion: opts.serverVersion(), caBundle: opts.caBundle() })
    } catch (err) {
      // A bug of ours must not become an HTTP 500 the apiserver reads as an outage; deny
      // this pod, with the reason, and let the error be seen.
      log.error({ uid: request.uid, namespace: ns, err: errorMessage(err), stack: (err as Error).stack }, 'admission failed')
      metrics.admissions.inc({ verdict: 'error', reason: 'internal-error' })
      return reviewResponse(review, {
        uid: request.uid,
        allowed: false,
        status: { code: 500, reason: 'InternalError', message: `enlist internal error: ${errorMessage(err)}` },
      })
    }

    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    metrics.admissions.inc({ verdict: outcome.verdict, reason: outcome.reason })
    metrics.admissionDuration.observe({ verdict: outcome.verdict }, seconds)
    if (outcome.verdict !== 'ignored') {
      const meta = (request.object as { metadata?: { name?: string; generateName?: string } } | undefined)?.metadata
      log.info(
        {
          uid: request.uid,
          namespace: ns,
          workload: outcome.workload ? `${outcome.workload.kind}/${outcome.workload.name}` : undefined,
          pod: meta?.name ?? (meta?.generateName ? `${meta.generateName}*` : undefined),
          decision: outcome.verdict,
          reason: outcome.reason,
          message: outcome.response.status?.message,
          dryRun: request.dryRun === true ? true : undefined,
          durationMs: Math.round(seconds * 1e6) / 1e3,
        },
        'admission',
      )
    }
    return reviewResponse(review, outcome.response)
  })
}
