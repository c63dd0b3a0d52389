// The registrar's retry logic against a scripted HTTPS server on loopback.
import t from 'tap'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EXIT_REGISTERED, EXIT_REJECTED, EXIT_TIMED_OUT, register } from '../../src/registrar/registrar.js'
import { makePki } from '../helpers/https.js'
import { tempDir } from '../helpers/temp.js'

type Step = { status: number; body?: unknown; delayMs?: number; headers?: Record<string, string> }

async function scripted(steps: Step[]) {
  const pki = await makePki()
  const seen: Array<{ url: string; authorization?: string }> = []
  let i = 0
  const server = https.createServer({ cert: pki.serving.cert, key: pki.serving.key }, (req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization })
    const step = steps[Math.min(i++, steps.length - 1)]!
    setTimeout(() => {
      res.writeHead(step.status, { 'content-type': 'application/json', ...(step.headers ?? {}) })
      res.end(JSON.stringify(step.body ?? {}))
    }, step.delayMs ?? 0)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const dir = tempDir('enlist-reg-')
  writeFileSync(join(dir, 'token'), 'tok-1\n')
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/registrations`,
    ca: pki.ca.cert,
    tokenFile: join(dir, 'token'),
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

const missing = { code: 'ENLIST_DEPENDENCIES_NOT_READY', missing: [{ dependency: 'shop/db', reason: 'Service not found' }] }

t.test('registers, sending the token and the long-poll', async (t) => {
  const s = await scripted([{ status: 200, body: { registered: true, record: { service: 'orders', ip: '1.2.3.4' } } }])
  t.teardown(s.close)
  const logs: Array<Record<string, unknown>> = []
  const code = await register({ url: s.url, ca: s.ca, tokenFile: s.tokenFile, timeoutMs: 10_000, log: (l) => logs.push(l) })
  t.equal(code, EXIT_REGISTERED)
  t.equal(s.seen[0]?.authorization, 'Bearer tok-1', 'the token, trimmed')
  t.match(s.seen[0]?.url, /\?wait=\d+ms$/)
  t.match(logs, [{ level: 'info', msg: 'registered', attempt: 1, service: 'orders', ip: '1.2.3.4' }])
})

t.test('waits out dependencies, retries failures, then registers', async (t) => {
  const s = await scripted([
    { status: 503, body: missing, headers: { 'retry-after': '1' } },
    { status: 500, body: { message: 'boom' } },
    { status: 503, body: { code: 'ENLIST_UNAVAILABLE', message: 'apiserver down' } },
    { status: 200, body: { record: {} } },
  ])
  t.teardown(s.close)
  const logs: Array<Record<string, unknown>> = []
  const code = await register({ url: s.url, ca: s.ca, tokenFile: s.tokenFile, timeoutMs: 20_000, log: (l) => logs.push(l), backoff: { initialMs: 10, maxMs: 50 } })
  t.equal(code, EXIT_REGISTERED)
  t.same(logs.map((l) => l.msg), ['waiting for dependencies', 'attempt failed', 'attempt failed', 'registered'])
  t.match(logs[0], { missing: [{ dependency: 'shop/db', reason: 'Service not found' }], retryInMs: 1000 }, 'answered at once: honours Retry-After')
  t.match(logs[1], { status: 500, reason: 'HTTP 500: boom' })
})

t.test('rejections exit 2 at once', async (t) => {
  for (const status of [400, 401, 403, 404, 409]) {
    const s = await scripted([{ status, body: { code: 'X', message: 'no' } }])
    const logs: Array<Record<string, unknown>> = []
    t.equal(await register({ url: s.url, ca: s.ca, tokenFile: s.tokenFile, timeoutMs: 10_000, log: (l) => logs.push(l) }), EXIT_REJECTED, `HTTP ${status}`)
    t.equal(s.seen.length, 1)
    t.match(logs.at(-1), { level: 'error', msg: 'registration rejected', status })
    await s.close()
  }
})

t.test('gives up at the timeout, saying why', async (t) => {
  const s = await scripted([{ status: 503, body: missing }])
  t.teardown(s.close)
  const logs: Array<Record<string, unknown>> = []
  const started = Date.now()
  // without jitter, so the pacing is exact: 50, 100, then 200 ms between attempts
  const code = await register({ url: s.url, ca: s.ca, tokenFile: s.tokenFile, timeoutMs: 1500, log: (l) => logs.push(l), backoff: { initialMs: 50, maxMs: 200, jitter: false } })
  t.equal(code, EXIT_TIMED_OUT)
  t.ok(Date.now() - started < 4000)
  t.match(logs.at(-1), { level: 'error', msg: /^gave up after \ds: dependencies not ready: shop\/db \(Service not found\)$/ })
  t.same(logs.slice(0, 4).map((l) => l.retryInMs), [50, 100, 200, 200], 'capped exponential backoff')
  t.ok(s.seen.length >= 5 && s.seen.length <= 10, `${s.seen.length} requests in 1.5 s: paced, not a busy loop`)
})

t.test('an unreachable server and an unverifiable certificate are retried until the deadline', async (t) => {
  const s = await scripted([{ status: 200 }])
  t.teardown(s.close)
  const logs: Array<Record<string, unknown>> = []
  const other = await makePki()
  const code = await register({ url: s.url, ca: other.ca.cert, tokenFile: s.tokenFile, timeoutMs: 1000, log: (l) => logs.push(l), backoff: { initialMs: 50, maxMs: 100 } })
  t.equal(code, EXIT_TIMED_OUT)
  t.match(logs[0], { msg: 'attempt failed', reason: /cannot reach .*: .*(certificate|self.signed|issuer)/i })
  const gone = await register({ url: 'https://127.0.0.1:1/v1/registrations', ca: s.ca, tokenFile: s.tokenFile, timeoutMs: 500, log: () => undefined })
  t.equal(gone, EXIT_TIMED_OUT)
})

t.test('a missing token file is retried (the kubelet may not have written it yet)', async (t) => {
  const s = await scripted([{ status: 200, body: { record: {} } }])
  t.teardown(s.close)
  const logs: Array<Record<string, unknown>> = []
  const file = join(tempDir('enlist-tok-'), 'token')
  setTimeout(() => writeFileSync(file, 'late'), 300)
  const code = await register({ url: s.url, ca: s.ca, tokenFile: file, timeoutMs: 5000, log: (l) => logs.push(l), backoff: { initialMs: 50, maxMs: 100 } })
  t.equal(code, EXIT_REGISTERED)
  t.match(logs[0], { msg: 'attempt failed', reason: /cannot read the token/ })
  t.equal(s.seen[0]?.authorization, 'Bearer late')
})
