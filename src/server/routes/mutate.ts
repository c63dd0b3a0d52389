// POST /mutate: the shell around admit(). It parses, looks up the namespace in the cache,
// calls the pure core, and logs and counts the outcome. No other I/O.

import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { Counter } from 'prom-client'
import type { Logger } from 'pino'
import { admit, type AdmissionFacts, type AdmissionOutcome, type AdmissionReview, parseReview, serializeReview, skipUnparsed, type UnparsedSkip } from '../../admission/review.js'
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
  /** The decision keys; undefined until loaded (then every answer is 503, as without a policy). */
  keys: () => AdmissionFacts['keys']
  metrics: Metrics
  log: Logger
  /** How long to wait for a namespace the cache has not seen yet. */
  namespaceWaitMs: number
  /** Reviews waiting for a namespace at once; beyond it, answered at once as if the namespace
   *  were unknown (any caller can send reviews naming made-up namespaces). */
  maxNamespaceWaiters?: number
}

export const DEFAULT_MAX_NAMESPACE_WAITERS = 1000

export const mutateRoutes: FastifyPluginAsync<MutateOptions> = async (app, opts) => {
  const { metrics, log } = opts
  const maxWaiters = opts.maxNamespaceWaiters ?? DEFAULT_MAX_NAMESPACE_WAITERS
  let waiters = 0
  const waitsRefused =
    (metrics.registry.getSingleMetric(WAITS_REFUSED) as Counter | undefined) ??
    new Counter({ name: WAITS_REFUSED, help: 'Admission reviews answered without waiting for their namespace because --max-namespace-waiters were waiting already (decided as if the namespace were unknown).', registers: [metrics.registry] })

  // prom-client hashes a label object on every call; bind each combination once.
  const counted = new Map<string, { inc(): void }>()
  const timed = new Map<string, { observe(v: number): void }>()
  const count = (verdict: string, reason: string, seconds?: number, code = '200'): void => {
    const key = `${verdict}/${reason}/${code}`
    let c = counted.get(key)
    if (!c) counted.set(key, (c = metrics.admissions.labels({ verdict, reason, code })))
    c.inc()
    if (seconds === undefined) return
    let h = timed.get(verdict)
    if (!h) timed.set(verdict, (h = metrics.admissionDuration.labels({ verdict })))
    h.observe(seconds)
  }

  // Requests in flight, from the first byte to the connection's answer (or hang-up): 'close'
  // fires once either way. The hook is this plugin's only, so it counts /mutate alone.
  const inFlight = metrics.admissionsInFlight
  const done = (): void => {
    inFlight.dec()
  }
  app.addHook('onRequest', (_req, reply, next) => {
    inFlight.inc()
    reply.raw.once('close', done)
    next()
  })

  // Encapsulated: other routes keep fastify's default parser. A review that can be decided
  // from its raw text (a pod not for enlist, skipped for its namespace) is never parsed.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const policy = opts.policy.current
    if (policy) {
      const started = process.hrtime.bigint()
      const skip = skipUnparsed(body as string, policy, (ns) => opts.namespaces.labels(ns))
      if (skip) {
        done(null, new Unparsed(skip, started))
        return
      }
    }
    parseJsonBody(req, body, done)
  })

  const respondUnparsed = (reply: FastifyReply, u: Unparsed): FastifyReply => {
    const { skip } = u
    const seconds = Number(process.hrtime.bigint() - u.started) / 1e9
    count('skipped', skip.reason, seconds)
    metrics.admissionsUnparsed.inc()
    // no workload or pod name: they are in the part that was never parsed
    if (debug) log.debug({ uid: skip.uid, namespace: skip.namespace, decision: 'skipped', reason: skip.reason, parsed: false, durationMs: Math.round(seconds * 1e6) / 1e3 }, 'admission')
    return send(reply, serializeReview({ apiVersion: skip.apiVersion } as AdmissionReview, { uid: skip.uid, allowed: true }))
  }
  const debug = log.isLevelEnabled('debug')

  const respond = (reply: FastifyReply, review: AdmissionReview, started: bigint, labels: Readonly<Record<string, string>> | undefined): FastifyReply => {
    const request = review.request
    const policy = opts.policy.current
    if (!policy) {
      // Not ready: /readyz says so too. The apiserver applies the failure policy.
      count('error', 'no-policy', undefined, '503')
      return reply.code(503).send({ code: 'ENLIST_UNAVAILABLE', message: 'no valid policy loaded yet' })
    }
    const keys = opts.keys()
    if (!keys) {
      count('error', 'no-decision-key', undefined, '503')
      return reply.code(503).send({ code: 'ENLIST_UNAVAILABLE', message: 'no decision key loaded yet' })
    }
    let outcome: AdmissionOutcome
    try {
      outcome = admit(request, policy, { namespaceLabels: labels, serverVersion: opts.serverVersion(), caBundle: opts.caBundle(), keys })
    } catch (err) {
      // A bug of ours must not become an HTTP 500 the apiserver reads as an outage; deny
      // this pod, with the reason, and let the error be seen.
      log.error({ uid: request.uid, namespace: request.namespace, err: errorMessage(err), stack: (err as Error).stack }, 'admission failed')
      count('error', 'internal-error')
      return send(reply, serializeReview(review, { uid: request.uid, allowed: false, status: { code: 500, reason: 'InternalError', message: `enlist internal error: ${errorMessage(err)}` } }))
    }

    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    count(outcome.verdict, outcome.reason, seconds)
    // tenancy.enforcement warn: what enforce would deny, counted and said (the pod got a warning)
    if (outcome.staged) {
      for (const s of outcome.staged) metrics.stagedDenials.inc({ where: 'admission', reason: s.reason })
      log.warn({ uid: request.uid, namespace: outcome.namespace, staged: outcome.staged }, 'admitted under tenancy.enforcement warn: enforce would deny it')
    }
    // Injections and denials are news; a pod not for enlist is the common case, at debug.
    const level = outcome.verdict === 'injected' || outcome.verdict === 'denied' ? 'info' : outcome.verdict === 'skipped' && debug ? 'debug' : undefined
    if (level) {
      const meta = (request.object as { metadata?: { name?: string; generateName?: string } } | undefined)?.metadata
      log[level](
        {
          uid: request.uid,
          namespace: outcome.namespace,
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
    return send(reply, serializeReview(review, outcome.response))
  }

  // Synchronous whenever the namespace is cached, which is always but for a namespace
  // created a moment ago: no promise on the hot path.
  app.post('/mutate', (req, reply) => {
    if (req.body instanceof Unparsed) return respondUnparsed(reply, req.body)
    const started = process.hrtime.bigint()
    const review = parseReview(req.body)
    const ns = review.request.namespace ?? ''
    const labels = ns ? opts.namespaces.labels(ns) : undefined
    if (labels !== undefined || !ns || !opts.policy.current) return respond(reply, review, started, labels)
    if (waiters >= maxWaiters) {
      waitsRefused.inc()
      return respond(reply, review, started, undefined)
    }
    waiters++
    return opts.namespaces.waitFor(ns, opts.namespaceWaitMs).then(
      (l) => {
        waiters--
        return respond(reply, review, started, l)
      },
      (err: unknown) => {
        waiters--
        throw err
      },
    )
  })
}

/**
 * The body parser of /mutate: plain JSON.parse. fastify's default also scans every body for
 * prototype-poisoning keys, which costs a tenth of a request here, and nothing on this
 * path merges request objects into others. (bench/fastify-floor.mjs measures with it too.)
 *
 * JSON.parse blocks the event loop, and some shapes cost far more per byte than a pod: 3 MB
 * of arrays nested 64 deep, side by side, takes about 0.45 s; 3 MB of "[[[..." about 1 s. The
 * body limit bounds the first. A body over a quarter of the limit is checked for depth before
 * it is parsed, so the second never blocks longer than the first may: below that size a deep
 * body costs less than an allowed one at the limit, and the check would cost every large pod a
 * tenth of its parse (0.25 ms for a 156 KB review).
 */
export function parseJsonBody(req: { routeOptions: { bodyLimit: number } }, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const text = body as string
  if (text.length > req.routeOptions.bodyLimit / 4 && nestingExceeds(text, MAX_DEPTH)) {
    done(Object.assign(new Error(`body is nested deeper than ${MAX_DEPTH} levels; an AdmissionReview is not`), { statusCode: 400, code: 'ENLIST_BAD_REQUEST' }), undefined)
    return
  }
  try {
    done(null, JSON.parse(text))
  } catch (err) {
    done(Object.assign(new Error(`body is not JSON: ${(err as Error).message}`), { statusCode: 400, code: 'ENLIST_BAD_REQUEST' }), undefined)
  }
}

/** A pod in an AdmissionReview nests about 12 levels; CRD-like extras a few more. */
export const MAX_DEPTH = 64

/** Whether JSON text nests arrays and objects deeper than `max` (strings skipped). */
export function nestingExceeds(text: string, max: number): boolean {
  let depth = 0
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // a string: skip to its closing quote, honouring escapes
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i)
        if (d === 0x5c) i++
        else if (d === 0x22) break
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

const WAITS_REFUSED = 'enlist_admission_namespace_waits_refused_total'

/** The parser's answer for a review decided from its raw text. */
class Unparsed {
  constructor(
    readonly skip: UnparsedSkip,
    readonly started: bigint,
  ) {}
}

function send(reply: FastifyReply, json: string): FastifyReply {
  return reply.header('content-type', 'application/json; charset=utf-8').send(json)
}
