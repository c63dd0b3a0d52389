import type { FastifyPluginAsync } from 'fastify'
import type { Readiness } from '../readiness.js'

export interface HealthOptions {
  readiness: Readiness
  /** Whether /readyz may say why (check names and reasons, which can name backend hosts and
   *  apiserver errors): only on the metrics listener, never on the one every pod can reach. */
  details: boolean
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { readiness, details }) => {
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok'))
  // ?verbose also lists what does not gate readiness (backends), as kube-apiserver lists its checks.
  app.get<{ Querystring: { verbose?: string } }>('/readyz', async (req, reply) => {
    const s = readiness.status()
    if (!details) return reply.code(s.ready ? 200 : 503).type('text/plain').send(s.ready ? 'ok' : 'not ready')
    if (req.query.verbose !== undefined) {
      return reply.code(s.ready ? 200 : 503).send({ ready: s.ready, failing: s.failing, warnings: readiness.warnings() })
    }
    if (s.ready) return reply.type('text/plain').send('ok')
    return reply.code(503).send({ ready: false, failing: s.failing })
  })
}
