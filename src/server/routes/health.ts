import type { FastifyPluginAsync } from 'fastify'
import type { Readiness } from '../readiness.js'

export interface HealthOptions {
  readiness: Readiness
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { readiness }) => {
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok'))
  app.get('/readyz', async (_req, reply) => {
    const s = readiness.status()
    if (s.ready) return reply.type('text/plain').send('ok')
    return reply.code(503).send({ ready: false, failing: s.failing })
  })
}
