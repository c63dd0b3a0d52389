// `enlist register`, the enlist-registrar init container: registers this pod through the
// registration API and exits 0, so the app starts only once it is registered. It waits
// while the server says dependencies are not ready (long-polling), retries transient
// failures with capped exponential backoff and jitter, and gives up at the timeout with
// exit 1 (the kubelet restarts it; a Job fails instead of hanging). A rejection that no
// retry can fix (bad token, not an enlist pod) exits 2 at once.

import { readFile } from 'node:fs/promises'
import https from 'node:https'
import { Backoff, type BackoffOptions, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'

export const EXIT_REGISTERED = 0
export const EXIT_TIMED_OUT = 1
export const EXIT_REJECTED = 2
export const EXIT_MISCONFIGURED = 3

export interface RegistrarOptions {
  url: string
  /** PEM bundle to verify the server; empty: the system's roots. */
  ca: string
  tokenFile: string
  timeoutMs: number
  /** Longest a single request waits server-side for dependencies. */
  pollMs?: number
  log: (fields: Record<string, unknown>) => void
  backoff?: BackoffOptions
}

interface Answer {
  status: number
  body: { code?: string; message?: string; missing?: Array<{ dependency: string; reason: string }>; record?: Record<string, unknown> }
  retryAfterMs?: number
}

export async function register(o: RegistrarOptions): Promise<number> {
  const started = Date.now()
  const deadline = started + o.timeoutMs
  const backoff = new Backoff(o.backoff ?? { initialMs: 500, maxMs: 10_000 })
  const agent = new https.Agent({ keepAlive: true, ...(o.ca ? { ca: o.ca } : {}) })
  let attempt = 0
  let lastReason = 'no attempt finished'
  try {
    while (Date.now() < deadline) {
      attempt++
      let token: string
      try {
        token = (await readFile(o.tokenFile, 'utf8')).trim()
      } catch (err) {
        lastReason = `cannot read the token ${o.tokenFile}: ${errorMessage(err)}`
        o.log({ level: 'warn', msg: 'attempt failed', attempt, reason: lastReason })
        await sleep(Math.min(backoff.next(), deadline - Date.now()))
        continue
      }
      const remaining = deadline - Date.now()
      const waitMs = Math.max(0, Math.min(o.pollMs ?? 30_000, remaining - 1000))
      const sent = Date.now()
      let answer: Answer
      try {
        answer = await post(o.url, token, waitMs, agent, remaining)
      } catch (err) {
        lastReason = `cannot reach ${o.url}: ${errorMessage(err)}`
        const delay = Math.min(backoff.next(), Math.max(0, deadline - Date.now()))
        o.log({ level: 'warn', msg: 'attempt failed', attempt, reason: lastReason, retryInMs: Math.round(delay) })
        await sleep(delay)
        continue
      }

      if (answer.status === 200) {
        const r = answer.body.record ?? {}
        o.log({ level: 'info', msg: 'registered', attempt, service: r.service, ip: r.ip, elapsedMs: Date.now() - started })
        return EXIT_REGISTERED
      }
      if ([400, 401, 403, 404, 409].includes(answer.status)) {
        o.log({ level: 'error', msg: 'registration rejected', attempt, status: answer.status, code: answer.body.code, reason: answer.body.message })
        return EXIT_REJECTED
      }
      if (answer.body.missing) {
        lastReason = `dependencies not ready: ${answer.body.missing.map((m) => `${m.dependency} (${m.reason})`).join(', ')}`
        // The server held the request for the whole poll: ask again at once. It answered
        // sooner (or could not be asked to wait): pause first, as it asked.
        const held = Date.now() - sent
        const waitedOut = waitMs >= 1000 && held >= waitMs - 250
        const delay = waitedOut ? 0 : Math.min(answer.retryAfterMs ?? backoff.next(), Math.max(0, deadline - Date.now()))
        o.log({ level: 'info', msg: 'waiting for dependencies', attempt, missing: answer.body.missing, heldMs: held, retryInMs: Math.round(delay) })
        if (delay > 0) await sleep(delay)
        continue
      }
      lastReason = `HTTP ${answer.status}${answer.body.message ? `: ${answer.body.message}` : ''}`
      const delay = Math.min(Math.max(answer.retryAfterMs ?? 0, backoff.next()), Math.max(0, deadline - Date.now()))
      o.log({ level: 'warn', msg: 'attempt failed', attempt, status: answer.status, reason: lastReason, retryInMs: Math.round(delay) })
      await sleep(delay)
    }
    o.log({ level: 'error', msg: `gave up after ${Math.round((Date.now() - started) / 1000)}s: ${lastReason}`, attempts: attempt })
    return EXIT_TIMED_OUT
  } finally {
    agent.destroy()
  }
}

function post(url: string, token: string, waitMs: number, agent: https.Agent, remainingMs: number): Promise<Answer> {
  const u = new URL(url)
  if (waitMs > 0) u.searchParams.set('wait', `${waitMs}ms`)
  return new Promise((resolve, reject) => {
    const req = https.request(u, { method: 'POST', agent, headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        let body: Answer['body'] = {}
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Answer['body']
        } catch {
          body = { message: Buffer.concat(chunks).toString('utf8').slice(0, 200) }
        }
        const ra = Number(res.headers['retry-after'])
        resolve({ status: res.statusCode ?? 0, body, retryAfterMs: Number.isFinite(ra) && ra > 0 ? ra * 1000 : undefined })
      })
      res.on('error', reject)
    })
    // The server may hold the request for waitMs; allow a margin, never past the deadline.
    req.setTimeout(Math.min(waitMs + 15_000, Math.max(1000, remainingMs)), () => req.destroy(new Error('no answer in time')))
    req.on('error', reject)
    req.end()
  })
}
