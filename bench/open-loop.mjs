// An open-loop load generator: requests are scheduled at a fixed rate and sent over N
// keep-alive connections without pipelining (how the apiserver calls webhooks). Latency is
// measured from when a request was *scheduled*, not when a free connection sent it, so a
// slow server cannot hide its queueing (wrk2's correction for coordinated omission).
//   node bench/open-loop.mjs URL BODY_FILE RATE SECONDS CONNECTIONS CA_FILE [distinct|same]  -> JSON on stdout

import tls from 'node:tls'
import { readFileSync } from 'node:fs'

const [url, bodyFile, rateArg, secondsArg, connArg, caFile, mode = 'distinct'] = process.argv.slice(2)
const u = new URL(url)
const rate = Number(rateArg)
const seconds = Number(secondsArg)
const conns = Number(connArg)
const body = Buffer.from(JSON.stringify(JSON.parse(readFileSync(bodyFile, 'utf8'))))
const head = Buffer.from(`POST ${u.pathname}?timeout=10s HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nAccept: application/json, */*\r\nContent-Length: ${body.length}\r\n\r\n`)
// 'distinct': each request another pod, its managedFields second another (same length);
// 'same': one review over and over, as a ReplicaSet's burst
const TIME = Buffer.from('"time":"')
const at = body.indexOf(TIME) + TIME.length
if (mode !== 'same' && at < TIME.length) throw new Error(`${bodyFile}: no managedFields "time" to make each request another pod`)
let n = (Date.now() % 100_000) * 100_000
function nextRequest() {
  if (mode === 'same') return Buffer.concat([head, body])
  const stamp = new Date((1_000_000_000 + ++n) * 1000).toISOString().replace(/\.000Z$/, 'Z')
  return Buffer.concat([head, body.subarray(0, at), Buffer.from(stamp), body.subarray(at + stamp.length)])
}

const total = Math.round(rate * seconds)
const latencies = new Float64Array(total)
let completed = 0
let sent = 0
let errors = 0
let maxLag = 0
const backlog = [] // scheduled times not yet sent
const idle = []

function connect() {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: u.hostname, port: Number(u.port), ca: readFileSync(caFile) }, () => resolve(sock))
    sock.on('error', reject)
    sock.setNoDelay(true)
    let buf = Buffer.alloc(0)
    let want = -1
    sock.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d // responses usually arrive whole
      for (;;) {
        if (want < 0) {
          const end = buf.indexOf('\r\n\r\n')
          if (end < 0) return
          const head = buf.subarray(0, end).toString('latin1')
          if (!head.startsWith('HTTP/1.1 200')) errors++
          const m = /content-length: *(\d+)/i.exec(head)
          want = end + 4 + (m ? Number(m[1]) : 0)
        }
        if (buf.length < want) return
        buf = buf.subarray(want)
        want = -1
        latencies[completed++] = performance.now() - sock.scheduled
        sock.busy = false
        next(sock)
      }
    })
  })
}

function next(sock) {
  const t = backlog.shift()
  if (t === undefined) {
    idle.push(sock)
    return
  }
  send(sock, t)
}

function send(sock, scheduled) {
  sock.busy = true
  sock.scheduled = scheduled
  sent++
  sock.write(nextRequest())
}

const sockets = await Promise.all(Array.from({ length: conns }, connect))
idle.push(...sockets)
const start = performance.now() + 50
let scheduledCount = 0
await new Promise((resolve) => {
  const tick = () => {
    const now = performance.now()
    while (scheduledCount < total && start + (scheduledCount * 1000) / rate <= now) {
      const t = start + (scheduledCount * 1000) / rate
      // how late the generator itself is: if this grows, it, not the server, is the limit
      maxLag = Math.max(maxLag, now - t)
      scheduledCount++
      const s = idle.shift()
      if (s) send(s, t)
      else backlog.push(t)
    }
    if (scheduledCount >= total) return resolve()
    // setTimeout clamps to 1 ms: spin on setImmediate when the next send is closer
    const wait = start + (scheduledCount * 1000) / rate - performance.now()
    if (wait > 2) setTimeout(tick, wait - 1)
    else setImmediate(tick)
  }
  tick()
})
// let the last ones finish
const deadline = performance.now() + 10_000
while (completed + errors < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
for (const s of sockets) s.destroy()

const done = latencies.subarray(0, completed).sort()
const q = (p) => done[Math.min(done.length - 1, Math.floor(p * done.length))] ?? NaN
console.log(
  JSON.stringify({
    rate,
    seconds,
    connections: conns,
    sent,
    completed,
    errors,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    p999: q(0.999),
    max: done.at(-1),
    maxGeneratorLagMs: maxLag,
  }),
)
