// The floor for any fastify server here: the baseline's work (parse the AdmissionReview,
// answer a one-operation patch) inside a fastify app built with enlist's own options and
// body parser, the answer sent as text. The distance from the baseline to this is what
// the framework costs; from this to enlist, what enlist's own work does.
//   node bench/fastify-floor.mjs CERT KEY PORT      (after make build)

import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import { fastifyOptions } from '../dist/server/app.js'
import { parseJsonBody } from '../dist/server/routes/mutate.js'

const [cert, key, port] = process.argv.slice(2)
const patch = Buffer.from(JSON.stringify([{ op: 'add', path: '/metadata/labels/enlist.io~1managed', value: 'true' }])).toString('base64')

const app = Fastify(fastifyOptions({ cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') }, 8 << 20))
app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJsonBody)
app.post('/mutate', (req, reply) => {
  const review = req.body
  const body = JSON.stringify({ apiVersion: review.apiVersion, kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true, patchType: 'JSONPatch', patch } })
  return reply.header('content-type', 'application/json; charset=utf-8').send(body)
})
await app.listen({ host: '127.0.0.1', port: Number(port) })
console.log('listening')
process.on('SIGTERM', () => app.close().then(() => process.exit(0)))
