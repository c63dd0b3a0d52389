// The HTTPS server: fastify with one plugin per concern, TLS that rotates in place,
// and timeouts chosen for the apiserver as a client.

import type { Server as HttpsServer } from 'node:https'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { ErrorCode } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import type { Readiness } from './readiness.js'
import { healthRoutes } from './routes/health.js'
import { metricsRoutes } from './routes/metrics.js'
import { mutateRoutes, type MutateOptions } from './routes/mutate.js'
import { type RegistrationsOptions, registrationRoutes } from './routes/registrations.js'
import type { CertificateProvider } from '../certs/provider.js'

export interface ServerOptions {
  bodyLimit: number
  certificate: CertificateProvider
  log: Logger
  metrics: Metrics
  readiness: Readiness
  /** POST /mutate */
  admission: Omit<MutateOptions, 'metrics' | 'log'>
  /** POST and DELETE /v1/registrations; absent: not served. */
  registration?: Omit<RegistrationsOptions, 'metrics' | 'log'>
}

// Above the apiserver's 90 s idle timeout, so it is always the client that closes
// an idle connection and never finds one reset under it.
export const KEEP_ALIVE_TIMEOUT_MS = 120_000

/** fastify's options for enlist's server (bench/fastify-floor.mjs measures with them too). */
export function fastifyOptions(tls: { cert: string; key: string }, bodyLimit: number) {
  return {
    https: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' as const },
    // No loggerInstance: fastify would make a child logger per request. enlist logs what
    // it decides itself, and buildServer's error handler logs failures.
    logger: false,
    bodyLimit,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: 60_000,
    forceCloseConnections: 'idle' as const,
    return503OnClosing: true,
  }
}

export async function buildServer(opts: ServerOptions) {
  const { certificate, log, metrics } = opts
  const app = Fastify(fastifyOptions(certificate.current, opts.bodyLimit))

  certificate.onChange((c) => {
    ;(app.server as unknown as HttpsServer).setSecureContext({ cert: c.cert, key: c.key, minVersion: 'TLSv1.2' })
  })

  // Once shutting down, every answer closes its connection: a request in flight when the
  // server started closing (a long-poll answered by the drain) must not leave a keep-alive
  // socket that holds the process until the client's idle timeout.
  // A callback, not an async hook: it runs for every answer and has nothing to wait for.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (opts.readiness.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
    const route = req.routeOptions.url ?? 'unknown'
    if (status < 500) {
      metrics.badRequests.inc({ route, code: String(status) })
      log.warn({ route, status, code: err.code, err: err.message }, 'bad request')
    } else {
      log.error({ route, status, code: err.code, err: err.message, stack: err.stack }, 'request failed')
    }
    return reply.code(status).send({ code: err.code ?? ('ENLIST_INTERNAL' satisfies ErrorCode), message: err.message })
  })
  app.setNotFoundHandler((req, reply) => {
    metrics.badRequests.inc({ route: 'not-found', code: '404' })
    return reply.code(404).send({ code: 'ENLIST_NOT_FOUND' satisfies ErrorCode, message: `no route ${req.method} ${req.url.split('?')[0]}` })
  })

  // Every pod can reach this listener: /readyz says ready or not, never why.
  await app.register(healthRoutes, { readiness: opts.readiness, details: false })
  await app.register(metricsRoutes, { registry: metrics.registry })
  await app.register(mutateRoutes, { ...opts.admission, metrics, log })
  if (opts.registration) await app.register(registrationRoutes, { ...opts.registration, metrics, log })
  return app
}

export type EnlistServer = Awaited<ReturnType<typeof buildServer>>

/**
 * The optional plain-HTTP listener (serve --metrics-bind-address): GET /metrics, /healthz and
 * /readyz only, for Prometheus setups and probes that do not speak TLS to enlist. The same
 * metrics and readiness as the HTTPS server, and the only place /readyz says why (?verbose);
 * no admission, no registration API.
 */
export async function buildMetricsServer(opts: Pick<ServerOptions, 'metrics' | 'readiness'>): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, requestTimeout: 30_000, forceCloseConnections: true })
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'ENLIST_NOT_FOUND' satisfies ErrorCode, message: `no route ${req.method} ${req.url.split('?')[0]} (this listener serves /metrics, /healthz and /readyz)` }))
  await app.register(healthRoutes, { readiness: opts.readiness, details: true })
  await app.register(metricsRoutes, { registry: opts.metrics.registry })
  return app
}

/** "host:port" or ":port" (all addresses) -> its parts; throws on anything else. */
export function parseBindAddress(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(value)
  const port = m ? Number(m[3]) : 0
  if (!m || port < 1 || port > 65535) throw new Error(`${JSON.stringify(value)} is invalid; accepted: HOST:PORT or :PORT, e.g. :8080 or 0.0.0.0:8080 ([::]:8080 for IPv6)`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}

/**
 * Stops the server the way the apiserver and registrars expect: no new requests, those in
 * flight finish, and connections are closed as soon as they are idle. Node closes the
 * connections that are idle when closing starts; one that goes idle later (a long-poll
 * answered by the drain) would otherwise stay open until the client drops it, holding the
 * process past its grace period. Whatever is still open after `maxMs` is cut.
 */
export async function closeGracefully(app: EnlistServer, maxMs = 10_000): Promise<void> {
  const server = app.server
  const sweep = setInterval(() => server.closeIdleConnections(), 250)
  const cut = setTimeout(() => server.closeAllConnections(), maxMs)
  try {
    await app.close()
  } finally {
    clearInterval(sweep)
    clearTimeout(cut)
  }
}
