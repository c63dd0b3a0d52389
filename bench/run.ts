// make bench: enlist's admission throughput and latency against the physical limit for
// this stack (bench/baseline.mjs), per fixture, on a real control plane with 5000
// namespaces in enlist's cache, beside the baseline's work inside fastify
// (bench/fastify-floor.mjs), which tells the framework's cost from enlist's own; then 500
// pods through the apiserver, read from the apiserver's own webhook latency metric.
// Prints tables, writes bench/results/*.json.
//
// Each server is pinned to core 0 and every load generator to core 1 (taskset).
// Closed-loop maximum: wrk, 16 keep-alive connections, no pipelining; every server is
// warmed up (the JIT needs seconds), then measured in alternating rounds and the median
// taken, so that drift in the machine's speed hits all of them alike.
// Latency: bench/open-loop.mjs at half of enlist's maximum, 16 connections, timed from
// each request's scheduled send.
//   npx tsx bench/run.ts [--quick] [--fixtures=typical,not-opted-in] [--log-level=warn] [--no-e2e]

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { makePki } from '../test/helpers/https.js'
import { cleanEnv, ENLIST } from '../test/helpers/cli.js'
import { startControlPlane } from '../test/harness/control-plane.js'
import { installManifests } from '../test/harness/enlist.js'
import { freePort, waitFor } from '../test/harness/processes.js'
import { request } from '../test/helpers/https.js'
import { deployedEnv } from './deployed-env.js'
import { fixtureSpec, wrkScript } from './wrk-script.js'

/** enlist runs with its Deployment's V8 and allocator settings, as it ships; BENCH_ENV_JSON
 *  (e.g. '{}', or '{"NODE_OPTIONS":"--max-semi-space-size=16"}') replaces them, for A/B runs. */
const DEPLOYED_ENV = process.env.BENCH_ENV_JSON ? (JSON.parse(process.env.BENCH_ENV_JSON) as Record<string, string>) : deployedEnv()

const BENCH = new URL('./', import.meta.url).pathname
const quick = process.argv.includes('--quick')
const WARMUP_S = quick ? 2 : 4
const ROUNDS = quick ? 1 : 3
const MAX_S = 3
const LAT_S = quick ? 3 : 6
const NAMESPACES = quick ? 500 : 5000
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
// Every request is another pod (its managedFields second differs), as in a cluster where the
// pods are many; "NAME:same" sends one review over and over, as the runs before 2026-12-07 did.
const FIXTURES = arg('fixtures')?.split(',') ?? ['small', 'typical', 'large', 'env1500', 'not-opted-in']
const fixtureFile = (fixture: string) => join(BENCH, 'fixtures', `${fixtureSpec(fixture).name}.json`)
const sameReview = (fixture: string) => fixtureSpec(fixture).same
const LOG_LEVEL = arg('log-level') ?? 'info'
const END_TO_END = !process.argv.includes('--no-e2e')
const log = (s: string) => process.stderr.write(`${s}\n`)

function ensureTool(bin: string, pkg: string): void {
  try {
    execFileSync('which', [bin], { stdio: 'ignore' })
    return
  } catch {
    log(`installing ${pkg} from Debian`)
  }
  const sudo = process.getuid?.() === 0 ? [] : ['sudo']
  const run = (args: string[]) => execFileSync(sudo[0] ?? args[0]!, sudo.length ? args : args.slice(1), { stdio: 'inherit' })
  try {
    run(['apt-get', 'install', '-y', '-q', pkg])
  } catch {
    run(['apt-get', 'update', '-q'])
    run(['apt-get', 'install', '-y', '-q', pkg])
  }
}

const pinned = (core: number, cmd: string, args: string[], env = cleanEnv()) => {
  const many = cpus().length > 1
  return spawn(many ? 'taskset' : cmd, many ? ['-c', String(core), cmd, ...args] : args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
}

/** CPU seconds (user + system) a process has used: steadier than throughput on a VM. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) / TICKS
}
const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100

/** Moves a process tree (every thread) onto one core (-1: every core). */
function pinTree(pid: number, core: number): void {
  try {
    execFileSync('taskset', ['-apc', core < 0 ? `0-${cpus().length - 1}` : String(core), String(pid)], { stdio: 'ignore' })
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) pinTree(Number(child), core)
    }
  } catch {
    // gone, or not permitted: the numbers then carry a little more noise
  }
}

function rssMb(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb ? Number(kb) / 1024 : NaN
  } catch {
    return NaN
  }
}

/** The node process under taskset: its pid, for RSS. */
function nodePid(child: ChildProcess): number {
  return child.pid! // taskset execs the command, keeping the pid
}

async function wrk(url: string, bodyFile: string, seconds: number, same = false): Promise<{ rps: number; requests: number; p50: number; p99: number }> {
  const script = join(tmpdir(), `enlist-wrk-${Date.now()}.lua`)
  const compact = join(tmpdir(), `enlist-body-${Date.now()}.json`)
  writeFileSync(compact, JSON.stringify(JSON.parse(readFileSync(bodyFile, 'utf8'))))
  writeFileSync(script, wrkScript(compact, same))
  let out: string
  try {
    out = await run(pinned(1, 'wrk', ['-t1', '-c16', `-d${seconds}s`, '--latency', '-s', script, `${url}?timeout=10s`]))
  } finally {
    rmSync(script, { force: true })
    rmSync(compact, { force: true })
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
  const requests = Number(/(\d+) requests in/.exec(out)?.[1])
  const ms = (label: string) => {
    const m = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    if (!m) return NaN
    return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1)
  }
  if (/Non-2xx/.test(out)) throw new Error(`wrk saw errors:\n${out}`)
  return { rps, requests, p50: ms('50'), p99: ms('99') }
}

async function openLoop(url: string, bodyFile: string, rate: number, seconds: number, ca: string, same = false) {
  const out = await run(pinned(1, process.execPath, [join(BENCH, 'open-loop.mjs'), url, bodyFile, String(Math.round(rate)), String(seconds), '16', ca, same ? 'same' : 'distinct']))
  return JSON.parse(out.trim().split('\n').pop()!) as { p50: number; p99: number; p999: number; max: number; errors: number; completed: number; maxGeneratorLagMs: number }
}

function run(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))))
  })
}

interface Measured {
  rps: number
  /** CPU time the server used per request, in microseconds (user + system). */
  cpuUs: number
  p50: number
  p99: number
  p999: number
}

interface Row {
  fixture: string
  bytes: number
  enlist: Measured
  baseline: Measured
  /** bench/fastify-floor.mjs: the baseline's work inside fastify (throughput and CPU only). */
  fastify: Pick<Measured, 'rps' | 'cpuUs'>
  /** enlist's throughput as a share of the baseline's. */
  ratio: number
  /** the baseline's CPU per request as a share of enlist's: the same, without the VM's noise. */
  cpuRatio: number
  rate: number
}

async function main(): Promise<void> {
  ensureTool('wrk', 'wrk')
  const started = Date.now()
  log('starting a control plane (no controller manager: nothing runs but the apiserver)')
  const cp = await startControlPlane({ controllerManager: false, log })
  // core 0 is the server's alone: the apiserver and etcd share core 1 with the load
  for (const p of cp.processes) if (p.child.pid) pinTree(p.child.pid, 1)
  const children: ChildProcess[] = []
  try {
    const pki = await makePki({ validityMs: 24 * 3600_000 })
    const enlistPort = await freePort()
    await installManifests(cp, enlistPort, pki.ca.cert)
    log(`creating ${NAMESPACES} namespaces for enlist's cache`)
    for (const [name, labels] of [['shop', { 'enlist.io/inject': 'enabled' }], ['plain', {}]] as const) {
      await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } })
    }
    for (let i = 0; i < NAMESPACES; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, NAMESPACES - i) }, (_, j) =>
          cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `team-${i + j}`, labels: { 'enlist.io/inject': (i + j) % 3 === 0 ? 'enabled' : 'disabled', team: `t${(i + j) % 97}` } } }),
        ),
      )
    }

    // --- the servers ---------------------------------------------------------------
    const enlist = pinned(0, process.execPath, [
      ENLIST, 'serve', `--kubeconfig=${cp.kubeconfig}`, `--port=${enlistPort}`, '--bind-address=127.0.0.1',
      `--tls-cert=${pki.certFile}`, `--tls-key=${pki.keyFile}`, '--leader-elect=false', `--log-level=${LOG_LEVEL}`,
    ], { ...cleanEnv(), ...DEPLOYED_ENV })
    children.push(enlist)
    enlist.stdout!.resume()
    enlist.stderr!.resume()
    const enlistUrl = `https://127.0.0.1:${enlistPort}`
    await waitFor('enlist ready', async () => (await request(`${enlistUrl}/readyz`, { ca: pki.ca.cert })).status === 200, 60_000, 200)
    // every namespace in the cache (the system ones, enlist-system, shop and plain besides)
    await waitFor('the namespace cache to hold every namespace', async () => new RegExp(`enlist_namespace_cache_namespaces ${NAMESPACES + 7}\\b`).test((await request(`${enlistUrl}/metrics`, { ca: pki.ca.cert })).body), 30_000, 200)
    // the two reference servers: started alike, pinned with enlist, ready when they say so
    const startReference = async (script: string) => {
      const port = await freePort()
      const child = pinned(0, process.execPath, [join(BENCH, script), pki.certFile, pki.keyFile, String(port)])
      children.push(child)
      child.stderr!.resume()
      await new Promise<void>((r) => child.stdout!.once('data', () => r()))
      return { child, port, url: `https://127.0.0.1:${port}` }
    }
    const { child: baseline, port: basePort, url: baseUrl } = await startReference('baseline.mjs')
    const { child: floor, url: floorUrl } = await startReference('fastify-floor.mjs')

    // Idle means settled: startup garbage (the namespace list pages) goes with the first
    // major collection, 10-20 s after start. Both figures are reported.
    const atStart = rssMb(nodePid(enlist))
    const baselineIdle = rssMb(nodePid(baseline)) // before its warm-up below
    // Meanwhile the JIT warms the two reference servers on every fixture (enlist, left
    // idle, is warmed before each fixture instead).
    const settleUntil = Date.now() + (quick ? 5000 : 30_000)
    for (const fixture of FIXTURES) {
      for (const url of [baseUrl, floorUrl]) await wrk(`${url}/mutate`, fixtureFile(fixture), Math.min(WARMUP_S, 3), sameReview(fixture))
    }
    await new Promise((r) => setTimeout(r, Math.max(0, settleUntil - Date.now())))
    const idleRss = { enlist: rssMb(nodePid(enlist)), enlistAtStart: atStart, baseline: baselineIdle }
    log(`RSS: enlist ${idleRss.enlist.toFixed(1)} MB idle (${atStart.toFixed(1)} MB just after start) with ${NAMESPACES} namespaces cached; baseline ${idleRss.baseline.toFixed(1)} MB at start`)

    // --- per fixture -------------------------------------------------------------------
    const rows: Row[] = []
    let loadRss = 0
    const sampler = setInterval(() => (loadRss = Math.max(loadRss, rssMb(nodePid(enlist)))), 100)
    for (const fixture of FIXTURES) {
      const file = fixtureFile(fixture)
      const same = sameReview(fixture)
      const bytes = Buffer.byteLength(JSON.stringify(JSON.parse(readFileSync(file, 'utf8'))))
      log(`${fixture} (${(bytes / 1024).toFixed(1)} KiB)`)
      const result: Partial<Row> = { fixture, bytes }
      const servers = [['enlist', enlistUrl], ['baseline', baseUrl], ['fastify', floorUrl]] as const
      for (const [name, url] of servers) await wrk(`${url}/mutate`, file, name === 'enlist' ? WARMUP_S : 1, same)
      const samples: Record<string, number[]> = { enlist: [], baseline: [], fastify: [] }
      const cpu: Record<string, number[]> = { enlist: [], baseline: [], fastify: [] }
      const pids: Record<string, number> = { enlist: nodePid(enlist), baseline: nodePid(baseline), fastify: nodePid(floor) }
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, url] of servers) {
          const before = cpuSeconds(pids[name]!)
          const r = await wrk(`${url}/mutate`, file, MAX_S, same)
          samples[name]!.push(r.rps)
          cpu[name]!.push(((cpuSeconds(pids[name]!) - before) * 1e6) / r.requests)
        }
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
      for (const [name] of servers) {
        const m = { rps: median(samples[name]!), cpuUs: median(cpu[name]!) }
        if (name === 'fastify') result.fastify = m
        else result[name] = { ...m, p50: NaN, p99: NaN, p999: NaN }
        log(`  ${name.padEnd(8)} max ${m.rps.toFixed(0)} req/s, ${m.cpuUs.toFixed(0)} µs CPU/request (rounds: ${samples[name]!.map((x) => x.toFixed(0)).join(', ')})`)
      }
      const rate = result.enlist!.rps / 2
      for (const [name, url] of [['enlist', enlistUrl], ['baseline', baseUrl]] as const) {
        const l = await openLoop(`${url}/mutate`, file, rate, LAT_S, pki.caFile, same)
        if (l.errors > 0) throw new Error(`${name}/${fixture}: ${l.errors} errors`)
        Object.assign(result[name]!, { p50: l.p50, p99: l.p99, p999: l.p999 })
        log(`  ${name.padEnd(8)} at ${rate.toFixed(0)} req/s: p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, p99.9 ${l.p999.toFixed(2)} ms (generator lag ${l.maxGeneratorLagMs.toFixed(1)} ms)`)
      }
      result.rate = rate
      result.ratio = result.enlist!.rps / result.baseline!.rps
      result.cpuRatio = result.baseline!.cpuUs / result.enlist!.cpuUs
      rows.push(result as Row)
    }
    clearInterval(sampler)

    // --- end to end: 500 pods through the apiserver, with the baseline and with enlist
    // behind the same webhook, read from the apiserver's own metric (deltas per phase).
    let e2e: { baseline: Phase; enlist: Phase } | undefined
    if (END_TO_END) {
    log('end to end: 500 pods through the apiserver, the baseline then enlist behind the webhook')
    for (const p of cp.processes) if (p.child.pid) pinTree(p.child.pid, -1) // both cores again
    await cp.client.create('/api/v1/namespaces/shop/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' }, automountServiceAccountToken: false })
    const typical = JSON.parse(readFileSync(join(BENCH, 'fixtures/typical.json'), 'utf8')) as { request: { object: { metadata: Record<string, unknown>; spec: Record<string, unknown> } } }
    const tpl = typical.request.object
    const pointWebhook = async (port: number) => {
      const path = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/enlist'
      const cfg = await cp.client.get<{ webhooks: Array<{ clientConfig: { url: string } }> }>(path)
      await cp.client.patch(path, cfg.webhooks.map((_, i) => ({ op: 'replace', path: `/webhooks/${i}/clientConfig/url`, value: `https://127.0.0.1:${port}/mutate` })), 'application/json-patch+json')
      await new Promise((r) => setTimeout(r, 1500)) // the apiserver picks the change up from its watch
    }
    const createPods = async (prefix: string) => {
      const t0 = Date.now()
      await Promise.all(
        Array.from({ length: 16 }, async (_, w) => {
          for (let i = w; i < 500; i += 16) {
            await cp.client.create('/api/v1/namespaces/shop/pods', {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: `${prefix}-${i}`, labels: tpl.metadata.labels, annotations: tpl.metadata.annotations },
              spec: { ...tpl.spec, automountServiceAccountToken: false },
            })
          }
        }),
      )
      return (Date.now() - t0) / 1000
    }
    const scrape = async () => webhookLatency(await cp.client.requestText('GET', '/metrics'), 'namespace.inject.enlist.io')
    await pointWebhook(basePort)
    const s0 = await scrape()
    const baseSeconds = await createPods('plain')
    const s1 = await scrape()
    await pointWebhook(enlistPort)
    const enlistSeconds = await createPods('enlisted')
    const s2 = await scrape()
    e2e = { baseline: { seconds: baseSeconds, ...delta(s0, s1) }, enlist: { seconds: enlistSeconds, ...delta(s1, s2) } }
    }

    // --- report ------------------------------------------------------------------------------
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      settings: { logLevel: LOG_LEVEL, warmupSeconds: WARMUP_S, rounds: ROUNDS, maxSeconds: MAX_S, latencySeconds: LAT_S, namespaces: NAMESPACES, connections: 16 },
      rss: { idleMb: idleRss.enlist, atStartMb: idleRss.enlistAtStart, underLoadMb: loadRss, baselineIdleMb: idleRss.baseline },
      fixtures: rows,
      endToEnd: e2e ? { pods: 500, ...e2e } : undefined,
      totalSeconds: (Date.now() - started) / 1000,
    }
    mkdirSync(join(BENCH, 'results'), { recursive: true })
    const file = join(BENCH, 'results', `${report.date.replace(/[:.]/g, '-')}.json`)
    writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
    printReport(report)
    log(`\nresults: ${file}`)
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await cp.stop()
  }
}

interface Cumulative {
  calls: number
  sum: number
  buckets: Array<{ le: number; count: number }>
}

/** Calls, mean and bucket-bounded quantiles between two scrapes. */
function delta(a: Cumulative, b: Cumulative) {
  const calls = b.calls - a.calls
  const buckets = b.buckets.map((x, i) => ({ le: x.le, count: x.count - (a.buckets[i]?.count ?? 0) }))
  const quantile = (q: number) => (buckets.find((x) => x.count >= q * calls)?.le ?? NaN) * 1000
  return { calls, meanMs: calls ? ((b.sum - a.sum) / calls) * 1000 : NaN, p50UpperBoundMs: quantile(0.5), p99UpperBoundMs: quantile(0.99), bucketsMs: buckets.map((x) => [x.le * 1000, x.count]) }
}

function webhookLatency(metrics: string, name: string): Cumulative {
  const buckets: Array<{ le: number; count: number }> = []
  let count = 0
  let sum = 0
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('apiserver_admission_webhook_admission_duration_seconds') || !line.includes(`name="${name}"`) || !line.includes('operation="CREATE"')) continue
    const v = Number(line.split(' ').pop())
    const le = /le="([^"]+)"/.exec(line)?.[1]
    if (line.includes('_bucket') && le) buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: v })
    else if (line.includes('_count')) count += v
    else if (line.includes('_sum')) sum += v
  }
  buckets.sort((a, b) => a.le - b.le)
  return { calls: count, sum, buckets }
}

type Phase = { seconds: number; calls: number; meanMs: number; p50UpperBoundMs: number; p99UpperBoundMs: number }

function printReport(r: { machine: { cpus: number; model?: string }; rss: { idleMb: number; atStartMb: number; underLoadMb: number }; fixtures: Row[]; endToEnd?: { pods: number; baseline: Phase; enlist: Phase } }): void {
  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '-')
  const out: string[] = []
  out.push(`\n${r.machine.cpus} x ${r.machine.model}; server on core 0, load on core 1; 16 keep-alive connections\n`)
  out.push('| fixture | size | enlist req/s | baseline req/s | ratio | CPU µs/req enlist / baseline | CPU ratio | rate | enlist p50 / p99 / p99.9 ms | baseline p50 / p99 / p99.9 ms |')
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const x of r.fixtures) {
    out.push(
      `| ${x.fixture} | ${(x.bytes / 1024).toFixed(1)} KiB | ${f(x.enlist.rps, 0)} | ${f(x.baseline.rps, 0)} | ${f(x.ratio * 100, 0)}% | ${f(x.enlist.cpuUs, 0)} / ${f(x.baseline.cpuUs, 0)} | ${f(x.cpuRatio * 100, 0)}% | ${f(x.rate, 0)} | ${f(x.enlist.p50)} / ${f(x.enlist.p99)} / ${f(x.enlist.p999)} | ${f(x.baseline.p50)} / ${f(x.baseline.p99)} / ${f(x.baseline.p999)} |`,
    )
  }
  // Where the distance to the baseline goes: the framework (the fastify floor over the
  // baseline) and enlist's own work (enlist over the floor), in CPU per request.
  out.push("\n| fixture | baseline CPU µs/req | fastify floor CPU µs/req (share of baseline) | enlist CPU µs/req | framework's cost µs | enlist's own work µs |")
  out.push('| --- | ---: | ---: | ---: | ---: | ---: |')
  for (const x of r.fixtures) {
    out.push(
      `| ${x.fixture} | ${f(x.baseline.cpuUs, 0)} | ${f(x.fastify.cpuUs, 0)} (${f((x.baseline.cpuUs / x.fastify.cpuUs) * 100, 0)}%) | ${f(x.enlist.cpuUs, 0)} | ${f(x.fastify.cpuUs - x.baseline.cpuUs, 0)} | ${f(x.enlist.cpuUs - x.fastify.cpuUs, 0)} |`,
    )
  }
  out.push(`\nRSS with the namespaces cached: ${f(r.rss.idleMb, 1)} MB idle (${f(r.rss.atStartMb, 1)} MB just after start), ${f(r.rss.underLoadMb, 1)} MB max under load`)
  if (!r.endToEnd) return void process.stdout.write(out.join('\n') + '\n')
  out.push(`\nend to end, ${r.endToEnd.pods} pods each, apiserver_admission_webhook_admission_duration_seconds (p50/p99 are its bucket bounds):`)
  for (const [name, e] of [['baseline', r.endToEnd.baseline], ['enlist', r.endToEnd.enlist]] as const) {
    out.push(`  ${name.padEnd(8)} ${f(r.endToEnd.pods / e.seconds, 0)} pods/s; ${e.calls} calls, mean ${f(e.meanMs)} ms, p50 <= ${f(e.p50UpperBoundMs, 0)} ms, p99 <= ${f(e.p99UpperBoundMs, 0)} ms`)
  }
  process.stdout.write(out.join('\n') + '\n')
}

main().catch((err: unknown) => {
  log(`bench failed: ${(err as Error).stack ?? String(err)}`)
  process.exit(1)
})
