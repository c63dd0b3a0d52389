// make bench-scale: enlist at bank size, on a real apiserver. Fills it (through the
// apiserver) with N managed pods of a rich shape, every one registered, across M
// namespaces, then measures:
//   memory   a fresh replica's RSS and heap once synced, beside one with no managed pods:
//            the cost of a cached pod in bytes
//   startup  from start to serving admissions (/readyz), and to every cache synced
//   sweep    the http backend's sweep at N entries: time and requests per second
//   failover two replicas; the leader is killed: time until the new leader's first sweep
//   rollout  1000 pods created at once whose registrars all long-poll for one dependency
//            among 10,000 Services: registrations per second, and creation to the
//            registered condition (p50, p99)
// Prints a table, writes bench/results/scale.json.
//   npx tsx bench/scale.ts [--pods=50000] [--namespaces=10000] [--rollout=1000] [--services=10000]
//                          [--sweep-rate=200] [--stale=2000] [--skip=rollout,failover]
//                          [--memory-variants='--max-old-space-size=144 --trace-gc;...']

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { cpus } from 'node:os'
import { join } from 'node:path'
import type { V1Pod } from '@kubernetes/client-node'
import { stringify } from 'yaml'
import { admit } from '../src/admission/review.js'
import { newKey } from '../src/decision/keyring.js'
import { defaultPolicy } from '../src/policy/load.js'
import { buildRecord, encodeRecord } from '../src/registry/record.js'
import { startCmdb } from '../test/harness/cmdb.js'
import { startControlPlane, type ControlPlane } from '../test/harness/control-plane.js'
import { installManifests } from '../test/harness/enlist.js'
import { freePort, onInterrupt, waitFor } from '../test/harness/processes.js'
import { cleanEnv, ENLIST } from '../test/helpers/cli.js'
import { makePki, request, type TestPki } from '../test/helpers/https.js'
import { deployedEnv } from './deployed-env.js'

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def)
const PODS = arg('pods', 50_000)
const NAMESPACES = arg('namespaces', 10_000)
const ROLLOUT = arg('rollout', 1000)
const SERVICES = arg('services', 10_000)
const SKIP = new Set((process.argv.find((a) => a.startsWith('--skip='))?.slice(7) ?? '').split(',').filter(Boolean))
const CONCURRENCY = 48
const SWEEP_RATE = arg('sweep-rate', 200)
const STALE = arg('stale', 2000)
const log = (s: string) => process.stderr.write(`[scale] ${s}\n`)
const BENCH = new URL('./', import.meta.url).pathname

async function inPool<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>, label?: string): Promise<void> {
  let next = 0
  let done = 0
  const started = Date.now()
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++
      if (i >= items.length) return
      for (let attempt = 0; ; attempt++) {
        try {
          await fn(items[i]!, i)
          break
        } catch (err) {
          if (attempt >= 5) throw err
          await new Promise((r) => setTimeout(r, 200 * 2 ** attempt))
        }
      }
      if (label && ++done % 5000 === 0) log(`${label}: ${done}/${items.length} (${Math.round(done / ((Date.now() - started) / 1000))}/s)`)
    }
  }
  await Promise.all(Array.from({ length: n }, worker))
}

/** A rich injected pod: the typical fixture as enlist injects it, sealed with a throwaway key. */
function injectedTemplate(): V1Pod {
  const review = JSON.parse(readFileSync(join(BENCH, 'fixtures/typical.json'), 'utf8')) as { request: { object: V1Pod; namespace: string } }
  const key = newKey(Date.now(), Date.now())
  const out = admit(review.request as never, defaultPolicy(), {
    namespaceLabels: { 'enlist.io/inject': 'enabled' },
    serverVersion: { major: 1, minor: 20 },
    caBundle: '',
    keys: { ring: { keys: [key] }, signing: key },
  })
  if (out.verdict !== 'injected' || !out.patch) throw new Error(`the typical fixture was not injected: ${out.reason}`)
  const pod = structuredClone(review.request.object)
  for (const op of JSON.parse(out.patch) as Array<{ op: string; path: string; value?: unknown }>) applyOp(pod, op)
  delete pod.metadata!.managedFields
  return pod
}

function applyOp(doc: unknown, op: { op: string; path: string; value?: unknown }): void {
  const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  let cur = doc as Record<string, unknown>
  for (const p of parts.slice(0, -1)) cur = cur[p] as Record<string, unknown>
  const last = parts.at(-1)!
  if (Array.isArray(cur)) {
    if (last === '-') cur.push(op.value)
    else cur.splice(Number(last), 0, op.value)
  } else if (op.op === 'remove') delete cur[last]
  else cur[last] = op.value
}

class ReplicaExited extends Error {}

interface Replica {
  child: ChildProcess
  port: number
  url: string
  lines: string[]
  startedAt: number
  /** Rejects with ReplicaExited when the process ends (a stop included: a no-op then). */
  exited: Promise<never>
}

const DEPLOYED_ENV = deployedEnv()
// --memory-variants='A;B': after the main figure, a fresh replica with the node flags A, then
// one with B, each measured once synced on the same cluster. The flags go on the command line
// (which overrides NODE_OPTIONS, and takes what NODE_OPTIONS refuses, such as --trace-gc).
const VARIANTS = (process.argv.find((a) => a.startsWith('--memory-variants='))?.slice(18) ?? '').split(';').filter(Boolean)

function startReplica(cp: ControlPlane, pki: TestPki, port: number, args: string[] = [], nodeFlags: string[] = []): Replica {
  const child = spawn(
    process.execPath,
    [...nodeFlags, ENLIST, 'serve', `--kubeconfig=${cp.kubeconfig}`, `--port=${port}`, '--bind-address=127.0.0.1', `--tls-cert=${pki.certFile}`, `--tls-key=${pki.keyFile}`, '--log-level=info', ...args],
    { env: { ...cleanEnv(), ...DEPLOYED_ENV }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const exited = new Promise<never>((_, reject) => child.once('exit', (code, signal) => reject(new ReplicaExited(`exited (${code ?? signal}): ${r.lines.slice(-5).join('\n')}`))))
  exited.catch(() => undefined) // nobody waiting on it is fine
  const r: Replica = { child, port, url: `https://127.0.0.1:${port}`, lines: [], startedAt: Date.now(), exited }
  let buf = ''
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      r.lines.push(buf.slice(0, nl))
      buf = buf.slice(nl + 1)
    }
  })
  child.stderr!.resume()
  return r
}

const stopReplica = (r: Replica, signal: NodeJS.Signals = 'SIGTERM') =>
  new Promise<void>((resolve) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve()
    r.child.once('exit', () => resolve())
    r.child.kill(signal)
  })

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024
}

async function metric(r: Replica, pki: TestPki, name: string): Promise<number> {
  const body = (await request(`${r.url}/metrics`, { ca: pki.ca.cert })).body
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(body)?.[1] ?? NaN)
}

/** Samples a replica's memory for a while after its caches synced: the settled minimum. */
async function settledMemory(r: Replica, pki: TestPki, seconds: number): Promise<{ rssMb: number; heapMb: number }> {
  let rss = Infinity
  let heap = Infinity
  const until = Date.now() + seconds * 1000
  while (Date.now() < until) {
    rss = Math.min(rss, rssMb(r.child.pid!))
    heap = Math.min(heap, (await metric(r, pki, 'nodejs_heap_size_used_bytes')) / 2 ** 20)
    await new Promise((res) => setTimeout(res, 1000))
  }
  return { rssMb: rss, heapMb: heap }
}

async function waitLog(r: Replica, what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<number> {
  return waitFor(
    what,
    async () => {
      for (const line of r.lines) {
        try {
          const l = JSON.parse(line) as Record<string, unknown>
          if (pred(l)) return Date.parse(String(l.time))
        } catch {
          // not JSON
        }
      }
      return undefined
    },
    timeoutMs,
    200,
  )
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = { pods: PODS, namespaces: NAMESPACES, replicaEnv: DEPLOYED_ENV, node: process.version, date: new Date().toISOString(), machine: `${cpus().length} vCPU ${cpus()[0]?.model ?? ''}` }
  log(`control plane (no controller manager: nothing but the apiserver and enlist touch the pods)`)
  // 50,000 pods of 24 KB, each written three times, outgrow etcd's default 2 GiB quota
  // between the apiserver's compactions
  const cp = await startControlPlane({ controllerManager: false, log, etcdArgs: ['--quota-backend-bytes=17179869184'] })
  const replicas: Replica[] = []
  // Ctrl-C: the harness stops the control plane; the replicas are this file's to stop
  onInterrupt(async () => {
    for (const r of replicas) await stopReplica(r)
  })
  const cmdb = await startCmdb()
  try {
    const pki = await makePki({ validityMs: 24 * 3600_000 })
    const client = cp.client

    // --- namespaces, and a replica with no managed pods: the baseline -------------------
    const nsNames = Array.from({ length: NAMESPACES }, (_, i) => `team-${i}`)
    const nsStarted = Date.now()
    await inPool(nsNames, CONCURRENCY, async (name, i) => {
      await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'enlist.io/inject': i % 2 === 0 ? 'enabled' : 'disabled', team: `t${i % 97}` } } }).catch(ignoreConflict)
      // no controller manager here, so no token controller making each namespace's default account
      await client.create(`/api/v1/namespaces/${name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } }).catch(ignoreConflict)
    }, 'namespaces')
    log(`${NAMESPACES} namespaces in ${((Date.now() - nsStarted) / 1000).toFixed(0)} s`)
    const port = await freePort()
    const install = (servedBy = port) => installManifests(cp, servedBy, pki.ca.cert, {
      policy: (p) => {
        p.registry = {
          backends: [
            { name: 'kubernetes', type: 'kubernetes' },
            { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, maxListPages: 1000 },
          ],
          reconcileIntervalSeconds: 86400,
          sweepRequestsPerSecond: SWEEP_RATE,
        }
      },
    })
    await install()
    const base = startReplica(cp, pki, port, ['--identity=baseline', '--leader-elect=false'])
    replicas.push(base)
    await waitSynced(base, pki, 'the baseline replica')
    const baseline = await settledMemory(base, pki, 15)
    await stopReplica(base)
    results.baseline = baseline
    log(`baseline (${NAMESPACES} namespaces, no managed pods): RSS ${baseline.rssMb.toFixed(0)} MB, heap ${baseline.heapMb.toFixed(0)} MB`)

    // --- fill: pods as enlist injected them, registered, their record written ----------------
    // No replica serves while the cluster fills (the pods come injected), so the webhook is
    // taken out meanwhile: with failurePolicy Fail it would refuse every pod.
    await client.delete('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/enlist')
    const fillStarted = Date.now()
    const tpl = injectedTemplate()
    const decision = JSON.parse(tpl.metadata!.annotations!['enlist.io/status']!.replace(/,"seal":.*$/, '}')) as { decision: { service: string; metadata: Record<string, string> } }
    const at = new Date(fillStarted).toISOString().replace(/\.\d+Z$/, 'Z')
    await inPool(Array.from({ length: PODS }, (_, i) => i), CONCURRENCY, async (i) => {
      const ns = nsNames[i % NAMESPACES]!
      const name = `orders-${i}`
      const pod = structuredClone(tpl)
      pod.metadata = { ...pod.metadata, name, namespace: ns }
      delete pod.metadata.generateName
      pod.spec = { ...pod.spec!, nodeName: `node-${i % 2000}`, automountServiceAccountToken: false }
      const created = await client.create<V1Pod>(`/api/v1/namespaces/${ns}/pods`, pod).catch(async (err: { conflict?: boolean }) => {
        if (err.conflict) return client.get<V1Pod>(`/api/v1/namespaces/${ns}/pods/${name}`)
        throw err
      })
      const status = podStatus(i, at, tpl)
      await client.patch(`/api/v1/namespaces/${ns}/pods/${name}/status`, { status }, 'application/merge-patch+json')
      const record = encodeRecord(buildRecord({ ...created, status }, decision.decision, at))
      await client.patch(`/api/v1/namespaces/${ns}/pods/${name}`, { metadata: { annotations: { 'app.io/annotation': record } } }, 'application/merge-patch+json')
      // this cluster's entries (the harness names the test cluster e2e): what the sweep may remove
      cmdb.records.set(created.metadata!.uid!, { uid: created.metadata!.uid, namespace: ns, pod: name, cluster: 'e2e' })
    }, 'pods')
    const fillS = (Date.now() - fillStarted) / 1000
    const podJson = JSON.stringify(await client.get(`/api/v1/namespaces/team-0/pods/orders-0`))
    results.fill = { seconds: Math.round(fillS), podsPerSecond: Math.round(PODS / fillS), podJsonBytes: podJson.length }
    log(`${PODS} pods created, registered and recorded in ${fillS.toFixed(0)} s (${podJson.length} bytes of JSON each)`)
    await install()

    // --- a fresh replica: start-up, memory, and the sweep at start --------------------------
    // The CMDB lists in pages of 500 and holds entries of pods long gone, as after an outage:
    // the sweep must page through it and remove them no faster than sweepRequestsPerSecond.
    cmdb.pageSize = 500
    const staleUids = Array.from({ length: STALE }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`)
    for (const [i, uid] of staleUids.entries()) cmdb.records.set(uid, { uid, namespace: 'team-0', pod: `gone-${i}`, cluster: 'e2e' })
    cmdb.requests.length = 0
    const a = startReplica(cp, pki, port, ['--identity=replica-a'])
    replicas.push(a)
    const ready = await waitFor('replica a ready', async () => ((await request(`${a.url}/readyz`, { ca: pki.ca.cert }).catch(() => undefined))?.status === 200 ? Date.now() : undefined), 300_000, 100)
    const synced = await waitSynced(a, pki, 'replica a')
    results.startup = { servesAdmissionS: round1((ready - a.startedAt) / 1000), cachesSyncedS: round1((synced - a.startedAt) / 1000) }
    log(`replica a serves admissions ${((ready - a.startedAt) / 1000).toFixed(1)} s after start; every cache synced after ${((synced - a.startedAt) / 1000).toFixed(1)} s`)
    const sweep = await waitSweep(a, 0, 3_600_000)
    const deletes = cmdb.requests.filter((r) => r.method === 'DELETE')
    const deleteSpanS = deletes.length > 1 ? (deletes.at(-1)!.at - deletes[0]!.at) / 1000 : 0
    results.sweep = {
      entries: PODS + STALE,
      stale: STALE,
      ratePerSecond: SWEEP_RATE,
      ...sweep,
      cmdbRequests: cmdb.requests.length,
      cmdbListPages: cmdb.requests.filter((r) => r.method === 'GET').length,
      cmdbDeletes: deletes.length,
      deletesPerSecond: deleteSpanS > 0 ? Math.round((deletes.length - 1) / deleteSpanS) : undefined,
      staleLeft: staleUids.filter((uid) => cmdb.records.has(uid)).length,
    }
    log(`sweep at start: ${JSON.stringify(sweep)}`)
    const mem = await settledMemory(a, pki, 20)
    const perPod = Math.round(((mem.heapMb - baseline.heapMb) * 2 ** 20) / PODS)
    const perPodRss = Math.round(((mem.rssMb - baseline.rssMb) * 2 ** 20) / PODS)
    results.memory = { ...mem, heapBytesPerPod: perPod, rssBytesPerPod: perPodRss }
    log(`replica a with ${PODS} managed pods: RSS ${mem.rssMb.toFixed(0)} MB, heap ${mem.heapMb.toFixed(0)} MB; ${perPod} bytes of heap per cached pod (${perPodRss} of RSS)`)
    const variants: Array<{ nodeOptions: string; rssMb?: number; heapMb?: number; cachesSyncedS?: number; peakLiveMb?: number; failed?: string }> = []
    for (const [i, nodeOptions] of VARIANTS.entries()) {
      const v = startReplica(cp, pki, await freePort(), [`--identity=variant-${i}`, '--leader-elect=false'], nodeOptions.split(' ').filter(Boolean))
      replicas.push(v)
      try {
        const at = await waitSynced(v, pki, `variant ${nodeOptions}`)
        const m = await settledMemory(v, pki, 20)
        // with --trace-gc: the most a full collection left (what was live), over the sync
        const live = v.lines.map((l) => /Mark-Compact[^\n]*?-> ([\d.]+) \(/.exec(l)?.[1]).filter((x): x is string => x !== undefined).map(Number)
        const peakLiveMb = live.length > 0 ? round1(Math.max(...live)) : undefined
        variants.push({ nodeOptions, ...m, cachesSyncedS: round1((at - v.startedAt) / 1000), peakLiveMb })
        log(`node ${nodeOptions}: RSS ${m.rssMb.toFixed(0)} MB, heap ${m.heapMb.toFixed(0)} MB, caches synced after ${((at - v.startedAt) / 1000).toFixed(1)} s${peakLiveMb !== undefined ? `, at most ${peakLiveMb} MB live after a full GC` : ''}`)
      } catch (err) {
        if (!(err instanceof ReplicaExited)) throw err
        // a heap bound too small for the cluster: the finding, not the end of the run
        variants.push({ nodeOptions, failed: (err as Error).message.split('\n')[0] })
        log(`node ${nodeOptions}: ${(err as Error).message}`)
      }
      await stopReplica(v)
    }
    if (variants.length > 0) results.memoryVariants = variants

    // --- admissions while it holds everything ---------------------------------------------
    const review = readFileSync(join(BENCH, 'fixtures/typical.json'), 'utf8')
    const lat: number[] = []
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now()
      const r = await request(`${a.url}/mutate`, { method: 'POST', body: review.replace('"namespace": "shop"', `"namespace": "team-${(2 * i) % NAMESPACES}"`), ca: pki.ca.cert })
      if (r.status !== 200) throw new Error(`admission answered ${r.status}`)
      lat.push(performance.now() - t0)
    }
    if (process.env.SCALE_DEBUG) {
      const adm = a.lines.filter((l) => l.includes('"admission"'))
      for (const l of [...adm.slice(0, 3), ...adm.slice(-3)]) log(l)
      log(`${adm.length} admission lines; latencies ${lat.slice(0, 5).map((x) => x.toFixed(1)).join(' ')}`)
    }
    results.admissionAtScale = { p50Ms: round1(percentile(lat, 50)), p99Ms: round1(percentile(lat, 99)) }

    // --- failover ---------------------------------------------------------------------
    if (!SKIP.has('failover')) {
      const b = startReplica(cp, pki, await freePort(), ['--identity=replica-b'])
      replicas.push(b)
      await waitSynced(b, pki, 'replica b')
      const killedAt = Date.now()
      await stopReplica(a, 'SIGKILL')
      const started = await waitLog(b, 'the new leader starting its controller', (l) => l.msg === 'controller started' && Date.parse(String(l.time)) >= killedAt, 120_000)
      await install(b.port) // the webhook and the registrars now reach replica b
      const swept = await waitSweep(b, killedAt, 3_600_000)
      results.failover = { controllerStartedS: round1((started - killedAt) / 1000), firstSweepDoneS: round1((swept.doneAt - killedAt) / 1000) }
      log(`failover: the new leader's controller started ${((started - killedAt) / 1000).toFixed(1)} s after the leader was killed (lease 15 s), its first sweep done after ${((swept.doneAt - killedAt) / 1000).toFixed(1)} s`)
    }

    // --- a rollout of 1000 pods at once, 10,000 Services in the dependency cache ---------------
    if (!SKIP.has('rollout')) results.rollout = await rollout(cp, pki, replicas.at(-1)!)
    writeResults(results)
  } finally {
    for (const r of replicas) await stopReplica(r)
    await cmdb.close()
    await cp.stop()
  }
}

/** 1000 pods created together in an opted-in namespace, each waiting (long-poll, as the
 *  registrar does) for one Service among 10,000 until it gets a ready endpoint. */
async function rollout(cp: ControlPlane, pki: TestPki, r: Replica): Promise<Record<string, unknown>> {
  const client = cp.client
  const ns = 'rollout'
  await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'enlist.io/inject': 'enabled' } } })
  await client.create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } })
  const svcStarted = Date.now()
  await inPool(Array.from({ length: SERVICES }, (_, i) => i), CONCURRENCY, async (i) => {
    await client.create(`/api/v1/namespaces/team-${i % NAMESPACES}/services`, { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}` }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] } }).catch(ignoreConflict)
  }, 'services')
  await client.create(`/api/v1/namespaces/${ns}/services`, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' }, spec: { ports: [{ name: 'pg', port: 5432 }] } })
  log(`${SERVICES} Services in ${((Date.now() - svcStarted) / 1000).toFixed(0)} s`)

  // the pods, through enlist's webhook (injected), then bound with an IP as a kubelet would
  const created = new Map<string, number>()
  const pods: V1Pod[] = []
  const t0 = Date.now()
  await inPool(Array.from({ length: ROLLOUT }, (_, i) => i), CONCURRENCY, async (i) => {
    const began = Date.now()
    const p = await client.create<V1Pod>(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `web-${i}`, labels: { app: 'web' }, annotations: { 'enlist.io/depends-on': 'db:5432' } },
      spec: { automountServiceAccountToken: false, containers: [{ name: 'app', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
    })
    created.set(p.metadata!.name!, began)
    const ip = `10.250.${i >> 8}.${i & 255}`
    await client.create(`/api/v1/namespaces/${ns}/pods/${p.metadata!.name}/binding`, { apiVersion: 'v1', kind: 'Binding', metadata: { name: p.metadata!.name }, target: { apiVersion: 'v1', kind: 'Node', name: 'node-1' } })
    await client.patch(`/api/v1/namespaces/${ns}/pods/${p.metadata!.name}/status`, { status: { phase: 'Pending', podIP: ip, podIPs: [{ ip }], hostIP: '127.0.0.1' } }, 'application/merge-patch+json')
    pods.push(p)
  }, 'rollout pods')
  log(`${ROLLOUT} pods created and bound in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  // every registrar long-polls, as enlist register does: retry on 429 or 503 after Retry-After
  const agent = new https.Agent({ keepAlive: true, maxSockets: ROLLOUT, ca: pki.ca.cert })
  const registered = new Map<string, number>()
  let answers429 = 0
  const registrar = async (p: V1Pod): Promise<void> => {
    const tr = await client.create<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/default/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: ['enlist'], expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: p.metadata!.name, uid: p.metadata!.uid } },
    })
    for (let attempt = 0; attempt < 200; attempt++) {
      const res = await request(`${r.url}/v1/registrations?wait=30s`, { method: 'POST', agent, headers: { authorization: `Bearer ${tr.status.token}` }, timeoutMs: 60_000 }).catch(() => undefined)
      if (res?.status === 200) {
        registered.set(p.metadata!.name!, Date.now())
        return
      }
      if (res?.status === 429) answers429++
      const after = Number(res?.headers['retry-after'] ?? 1)
      await new Promise((res2) => setTimeout(res2, Math.max(100, Math.min(after, 10) * 1000 * (0.5 + Math.random()))))
    }
  }
  const all = Promise.all(pods.map(registrar))
  await new Promise((res) => setTimeout(res, 3000)) // every registrar holding
  const readyAt = Date.now()
  await client.create(`/apis/discovery.k8s.io/v1beta1/namespaces/${ns}/endpointslices`, {
    apiVersion: 'discovery.k8s.io/v1beta1',
    kind: 'EndpointSlice',
    metadata: { name: 'db-1', labels: { 'kubernetes.io/service-name': 'db' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.251.0.1'], conditions: { ready: true } }],
    ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }],
  })
  await all
  agent.destroy()
  const done = Math.max(...registered.values())
  const fromCreation = [...registered].map(([name, at]) => at - created.get(name)!)
  const fromReady = [...registered.values()].map((at) => at - readyAt)
  const out = {
    pods: ROLLOUT,
    services: SERVICES,
    registered: registered.size,
    registrationsPerSecond: Math.round(registered.size / ((done - readyAt) / 1000)),
    afterDependencyReadyMs: { p50: percentile(fromReady, 50), p99: percentile(fromReady, 99), max: Math.max(...fromReady) },
    fromCreationMs: { p50: percentile(fromCreation, 50), p99: percentile(fromCreation, 99) },
    answers429,
  }
  log(`rollout: ${JSON.stringify(out)}`)
  return out
}

function podStatus(i: number, at: string, tpl: V1Pod): V1Pod['status'] {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
  return {
    phase: 'Running',
    podIP: ip,
    podIPs: [{ ip }],
    hostIP: `192.168.${(i >> 8) & 255}.${i & 255}`,
    startTime: at as never,
    qosClass: 'Burstable',
    conditions: [
      { type: 'Initialized', status: 'True', lastTransitionTime: at as never },
      { type: 'Ready', status: 'True', lastTransitionTime: at as never },
      { type: 'ContainersReady', status: 'True', lastTransitionTime: at as never },
      { type: 'PodScheduled', status: 'True', lastTransitionTime: at as never },
      { type: 'enlist.io/registered', status: 'True', reason: 'Registered', message: 'registered with kubernetes, cmdb', lastTransitionTime: at as never },
    ],
    initContainerStatuses: [{ name: 'enlist-registrar', ready: true, restartCount: 0, image: 'enlist:0.2.0', imageID: 'sha256:' + 'a'.repeat(64), containerID: 'containerd://' + 'b'.repeat(64), state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: at as never, finishedAt: at as never } } }],
    containerStatuses: (tpl.spec?.containers ?? []).map((c) => ({ name: c.name, ready: true, started: true, restartCount: 0, image: c.image ?? '', imageID: 'sha256:' + 'c'.repeat(64), containerID: 'containerd://' + 'd'.repeat(64), state: { running: { startedAt: at as never } } })),
  }
}

async function waitSynced(r: Replica, pki: TestPki, what: string): Promise<number> {
  // a replica that dies (V8 out of heap aborts) ends the wait at once, not at its deadline,
  // and ends the polling too (it would keep the benchmark alive for ten minutes)
  const stop = new AbortController()
  return Promise.race([
    r.exited.catch((err: Error) => {
      stop.abort()
      throw new ReplicaExited(`${what} ${err.message}`)
    }),
    waitFor(`every cache of ${what} synced`, async () => {
      const res = await request(`${r.url}/readyz?verbose`, { ca: pki.ca.cert }).catch(() => undefined)
      return res?.status === 200 && res.json<{ warnings?: Array<{ check: string }> }>().warnings?.every((w) => !w.check.endsWith('-cache')) ? Date.now() : undefined
    }, 600_000, 250, stop.signal),
  ])
}

async function waitSweep(r: Replica, after: number, timeoutMs: number): Promise<{ seconds: number; doneAt: number; backends: unknown }> {
  let line: Record<string, unknown> | undefined
  const doneAt = await waitLog(r, 'a sweep', (l) => {
    if (l.msg !== 'registry sweep finished' || Date.parse(String(l.time)) < after) return false
    line = l
    return true
  }, timeoutMs)
  return { seconds: round1(Number(line!.durationMs) / 1000), doneAt, backends: line!.backends }
}

const round1 = (x: number) => Math.round(x * 10) / 10
const ignoreConflict = (err: { conflict?: boolean }) => {
  if (!err.conflict) throw err
}

function writeResults(results: Record<string, unknown>): void {
  const out = join(BENCH, 'results')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'scale.json'), JSON.stringify(results, null, 2))
  console.log(stringify(results))
}

await main()
