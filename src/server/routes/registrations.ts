// POST /v1/registrations (register the calling pod; ?wait=30s long-polls for its
// dependencies) and DELETE /v1/registrations (deregister it now). Neither takes a body:
// the caller is who its token says, and what it registers is what admission decided.

import { randomBytes } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { EnlistError, type ErrorCode, errorMessage, TooManyRequests } from '../../lib/errors.js'
import { parseDuration } from '../../lib/units.js'
import type { Metrics } from '../../metrics.js'
import { DependenciesNotReady, type RegistrationService } from '../../registration/service.js'

export interface RegistrationsOptions {
  service: RegistrationService
  metrics: Metrics
  log: Logger
  maxWaitMs?: number
}

const RETRY_AFTER_SECONDS = '2'
// The routes take no body; a client that sends one gets 413 before anything is parsed.
const BODY_LIMIT = 1024

export const registrationRoutes: FastifyPluginAsync<RegistrationsOptions> = async (app, { service, metrics, log, maxWaitMs = 60_000 }) => {
  const fail = (reply: FastifyReply, op: string, err: unknown, end: (l: { result: string }) => void): FastifyReply => {
    const result = err instanceof EnlistError ? err.code.replace(/^ENLIST_/, '').toLowerCase() : 'internal'
    const status = err instanceof EnlistError ? err.statusCode : 500
    metrics.registrations.inc({ op, result, code: String(status) })
    end({ result })
    if (err instanceof DependenciesNotReady) {
      return reply.code(503).header('Retry-After', RETRY_AFTER_SECONDS).send({ code: err.code, message: err.message, missing: err.missing })
    }
    if (err instanceof TooManyRequests) {
      return reply.code(429).header('Retry-After', String(err.retryAfterSeconds)).send({ code: err.code, message: err.message })
    }
    if (err instanceof EnlistError) {
      if (err.statusCode === 401) reply.header('WWW-Authenticate', 'Bearer realm="enlist"')
      if (err.statusCode === 503) reply.header('Retry-After', err.code === 'ENLIST_SHUTTING_DOWN' ? '1' : RETRY_AFTER_SECONDS)
      return reply.code(err.statusCode).send({ code: err.code, message: err.message })
    }
    // A bug of ours: the details go to the log, the caller gets a reference to them.
    const ref = randomBytes(4).toString('hex')
    log.error({ ref, op, err: errorMessage(err), stack: (err as Error).stack }, 'registration request failed')
    return reply.code(500).send({ code: 'ENLIST_INTERNAL' satisfies ErrorCode, message: `internal error (enlist log ref ${ref})` })
  }

  app.post<{ Querystring: { wait?: string } }>('/v1/registrations', { bodyLimit: BODY_LIMIT }, async (req, reply) => {
    const end = metrics.registrationDuration.startTimer({ op: 'register' })
    let waitMs = 0
    if (req.query.wait !== undefined) {
      const ms = parseDuration(req.query.wait)
      if (ms === undefined) throw new EnlistError('ENLIST_BAD_REQUEST', `wait=${JSON.stringify(req.query.wait)} is invalid; accepted: a duration such as 30s`, 400)
      waitMs = Math.min(ms, maxWaitMs)
    }
    // The caller hung up: stop waiting for it.
    const abort = new AbortController()
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort()
    })
    metrics.registrationsInFlight.inc()
    try {
      const record = await service.register(req.headers.authorization, { waitMs, signal: abort.signal, client: req.ip })
      metrics.registrations.inc({ op: 'register', result: 'registered', code: '200' })
      end({ result: 'registered' })
      return { registered: true, record }
    } catch (err) {
      return fail(reply, 'register', err, end)
    } finally {
      metrics.registrationsInFlight.dec()
    }
  })

  app.delete('/v1/registrations', { bodyLimit: BODY_LIMIT }, async (req, reply) => {
    const end = metrics.registrationDuration.startTimer({ op: 'deregister' })
    try {
      await service.deregister(req.headers.authorization, req.ip)
      metrics.registrations.inc({ op: 'deregister', result: 'deregistered', code: '200' })
      end({ result: 'deregistered' })
      return { deregistered: true }
    } catch (err) {
      return fail(reply, 'deregister', err, end)
    }
  })
}
