import type { FastifyPluginAsync } from 'fastify'
import type { Registry } from 'prom-client'

export interface MetricsOptions {
  registry: Registry
}

export const metricsRoutes: FastifyPluginAsync<MetricsOptions> = async (app, { registry }) => {
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()))
}
