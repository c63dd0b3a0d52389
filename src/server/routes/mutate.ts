// POST /mutate: the shell around admit(). It parses, looks up the namespace in the cache,
// calls the pure core, and logs and counts the outcome. No other I/O. A review decided from
// its raw text (a pod not for enlist) or asked a moment ago (a ReplicaSet's next pod) is
// answered without being parsed.

import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { glimpse } from '../../admission/glimpse.js'
import { AdmissionMemo, type MemoFacts, type Remembered } from '../../admission/memo.js'
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
  /** Bytes of answers kept for reviews asked again (memo.ts); 0: none. */
  memoBytes: number
}

export const mutateRoutes: FastifyPluginAsync<MutateOptions> = async (app, opts) => {
  const { metrics, log } = opts

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

  const memo = opts.memoBytes > 0 ? new AdmissionMemo(opts.memoBytes) : undefined
  /** What an answer is made with now; undefined while not ready (no answer is remembered). */
  const memoFacts = (): MemoFacts | undefined => {
    const policy = opts.policy.current
    const keys = opts.keys()
    return policy && keys ? { policy, ring: keys.ring, signing: keys.signing, caBundle: opts.caBundle(), serverVersion: opts.serverVersion() } : undefined
  }

  // Encapsulated: other routes keep fastify's default parser. A review that can be decided
  // from its raw text (a pod not for enlist, skipped for its namespace), or that was asked a
  // moment ago but for its uid, is never parsed.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const policy = opts.policy.current
    if (!policy) return parseJsonBody(req, body, done)
    const started = process.hrtime.bigint()
    const text = body as string
    const g = glimpse(text)
    const skip = skipUnparsed(text, policy, (ns) => opts.namespaces.labels(ns), g)
    if (skip) return done(null, new Unparsed(skip, started))
    const labels = g?.namespace ? opts.namespaces.labels(g.namespace) : undefined
    const facts = memo && g && labels ? memoFacts() : undefined
    if (!memo || !g || !labels || !facts) return parseJsonBody(req, body, done)
    const key = AdmissionMemo.key(text, g.uidAt, g.uid.length, labels)
    const hit = memo.get(key, facts)
    if (hit) return done(null, new Recalled(hit, g.uid, started))
    parseJsonBody(req, body, (err, review) => done(err, err ? review : new ToRemember(review, key, labels, g.uid)))
  })

  // Injections and denials are news; a pod not for enlist is the common case, at debug.
  const debug = log.isLevelEnabled('debug')
  const levelOf = (verdict: string): 'info' | 'debug' | undefined => (verdict === 'injected' || verdict === 'denied' ? 'info' : verdict === 'skipped' && debug ? 'debug' : undefined)
  const logOutcome = (uid: string, r: Omit<Remembered, 'head' | 'tail'>, seconds: number, memoized?: true): void => {
    const level = levelOf(r.verdict)
    if (!level) return
    log[level](
      {
        uid,
        namespace: r.namespace,
        workload: r.workload,
        pod: r.pod,
        decision: r.verdict,
        reason: r.reason,
        message: r.message,
        dryRun: r.dryRun || undefined,
        memoized,
        durationMs: Math.round(seconds * 1e6) / 1e3,
      },
      'admission',
    )
  }

  const respondUnparsed = (reply: FastifyReply, u: Unparsed): FastifyReply => {
    const { skip } = u
    const seconds = Number(process.hrtime.bigint() - u.started) / 1e9
    count('skipped', skip.reason, seconds)
    metrics.admissionsUnparsed.inc()
    // no workload or pod name: they are in the part that was never parsed
    if (debug) log.debug({ uid: skip.uid, namespace: skip.namespace, decision: 'skipped', reason: skip.reason, parsed: false, durationMs: Math.round(seconds * 1e6) / 1e3 }, 'admission')
    return send(reply, serializeReview({ apiVersion: skip.apiVersion } as AdmissionReview, { uid: skip.uid, allowed: true }))
  }

  const respondRecalled = (reply: FastifyReply, r: Recalled): FastifyReply => {
    const seconds = Number(process.hrtime.bigint() - r.started) / 1e9
    const e = r.remembered
    count(e.verdict, e.reason, seconds)
    metrics.admissionsMemoized.inc()
    logOutcome(r.uid, e, seconds, true)
    return send(reply, `${e.head}${JSON.stringify(r.uid)}${e.tail}`)
  }

  const respond = (
    reply: FastifyReply,
    review: AdmissionReview,
    started: bigint,
    labels: Readonly<Record<string, string>> | undefined,
    remember?: ToRemember,
  ): FastifyReply => {
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
    const meta = (request.object as { metadata?: { name?: string; generateName?: string } } | undefined)?.metadata
    const told = {
      verdict: outcome.verdict,
      reason: outcome.reason,
      namespace: outcome.namespace,
      workload: outcome.workload ? `${outcome.workload.kind}/${outcome.workload.name}` : undefined,
      pod: meta?.name ?? (meta?.generateName ? `${meta.generateName}*` : undefined),
      message: outcome.response.status?.message,
      dryRun: request.dryRun === true,
    }
    logOutcome(request.uid, told, seconds)
    const answer = serializeReview(review, outcome.response)
    // Remembered only if made with the labels the key was made with (the lookup is the cache's
    // own object, replaced when the namespace changes), and for the uid the glimpse found
    // (JSON.parse keeps the last of duplicate keys; the apiserver writes none).
    if (memo && remember && labels === remember.labels && request.uid === remember.uid) {
      const at = answer.indexOf(`"uid":${JSON.stringify(request.uid)}`) + 6
      memo.set(remember.key, { policy, ring: keys.ring, signing: keys.signing, caBundle: opts.caBundle(), serverVersion: opts.serverVersion() }, {
        ...told,
        head: answer.slice(0, at),
        tail: answer.slice(at + JSON.stringify(request.uid).length),
      })
    }
    return send(reply, answer)
  }

  // Synchronous whenever the namespace is cached, which is always but for a namespace
  // created a moment ago: no promise on the hot path.
  app.post('/mutate', (req, reply) => {
    const body = req.body
    if (body instanceof Unparsed) return respondUnparsed(reply, body)
    if (body instanceof Recalled) return respondRecalled(reply, body)
    const started = process.hrtime.bigint()
    const remember = body instanceof ToRemember ? body : undefined
    const review = parseReview(remember ? remember.review : body)
    const ns = review.request.namespace ?? ''
    const labels = ns ? opts.namespaces.labels(ns) : undefined
    if (labels !== undefined || !ns || !opts.policy.current) return respond(reply, review, started, labels, remember)
    return opts.namespaces.waitFor(ns, opts.namespaceWaitMs).then((l) => respond(reply, review, started, l))
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

/** The parser's answer for a review decided from its raw text. */
class Unparsed {
  constructor(
    readonly skip: UnparsedSkip,
    readonly started: bigint,
  ) {}
}

/** The parser's answer for a review asked a moment ago: the answer, for this uid. */
class Recalled {
  constructor(
    readonly remembered: Remembered,
    readonly uid: string,
    readonly started: bigint,
  ) {}
}

/** A parsed review whose answer is to be remembered under `key`, made with `labels`. */
class ToRemember {
  constructor(
    readonly review: unknown,
    readonly key: string,
    readonly labels: Readonly<Record<string, string>>,
    readonly uid: string,
  ) {}
}

function send(reply: FastifyReply, json: string): FastifyReply {
  return reply.header('content-type', 'application/json; charset=utf-8').send(json)
}
