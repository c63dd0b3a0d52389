// The physical limit for this stack: a bare node:https server that parses the
// AdmissionReview and answers a one-operation patch. Nothing else: no routing, no
// validation, no policy, no logging, no metrics.
//   node bench/baseline.mjs CERT KEY PORT

import https from 'node:https'
import { readFileSync } from 'node:fs'

const [cert, key, port] = process.argv.slice(2)
const patch = Buffer.from(JSON.stringify([{ op: 'add', path: '/metadata/labels/enlist.io~1managed', value: 'true' }])).toString('base64')

const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key), keepAliveTimeout: 120_000 }, (req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const review = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    const body = JSON.stringify({
      apiVersion: review.apiVersion,
      kind: 'AdmissionReview',
      response: { uid: review.request.uid, allowed: true, patchType: 'JSONPatch', patch },
    })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
})
server.listen(Number(port), '127.0.0.1', () => console.log('listening'))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
