// Where enlist spends its time on one fixture: enlist under wrk with --cpu-prof, then
// the functions with the most self time.   npx tsx bench/profile.ts [fixture[:same]] [--gc]

import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { makePki, request } from '../test/helpers/https.js'
import { cleanEnv, ENLIST } from '../test/helpers/cli.js'
import { startControlPlane } from '../test/harness/control-plane.js'
import { installManifests } from '../test/harness/enlist.js'
import { freePort, waitFor } from '../test/harness/processes.js'
import { tempDir } from '../test/helpers/temp.js'
import { fixtureSpec, wrkScript } from './wrk-script.js'

// "typical:same": one review over and over (a ReplicaSet's burst); else each request another pod
const { name: fixture, same } = fixtureSpec(process.argv[2] ?? 'typical')
// --gc: trace garbage collection under open-loop load instead of profiling
const traceGc = process.argv.includes('--gc')
const cp = await startControlPlane({ controllerManager: false })
try {
  const pki = await makePki()
  const port = await freePort()
  await installManifests(cp, port, pki.ca.cert)
  await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'enlist.io/inject': 'enabled' } } })
  await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'plain' } })
  const dir = tempDir('enlist-prof-')
  const nodeFlags = traceGc ? ['--trace-gc'] : ['--cpu-prof', `--cpu-prof-dir=${dir}`]
  const child = spawn('taskset', ['-c', '0', process.execPath, ...nodeFlags, ENLIST, 'serve', `--kubeconfig=${cp.kubeconfig}`, `--port=${port}`, '--bind-address=127.0.0.1', `--tls-cert=${pki.certFile}`, `--tls-key=${pki.keyFile}`, '--leader-elect=false'], { env: cleanEnv(), stdio: ['ignore', traceGc ? 'pipe' : 'ignore', 'inherit'] })
  const gcLines: string[] = []
  child.stdout?.on('data', (d: Buffer) => gcLines.push(...d.toString().split('\n').filter((l) => /Mark-Compact|Scavenge|Mark-sweep/.test(l))))
  await waitFor('ready', async () => (await request(`https://127.0.0.1:${port}/readyz`, { ca: pki.ca.cert })).status === 200, 60_000, 200)
  const body = join(dir, 'body.json')
  writeFileSync(body, JSON.stringify(JSON.parse(readFileSync(new URL(`./fixtures/${fixture}.json`, import.meta.url), 'utf8'))))
  const lua = join(dir, 'w.lua')
  writeFileSync(lua, wrkScript(body, same))
  if (traceGc) {
    // asynchronously: enlist's GC trace must keep flowing through our pipe meanwhile
    const { promisify } = await import('node:util')
    const { execFile } = await import('node:child_process')
    const load = () => promisify(execFile)('taskset', ['-c', '1', process.execPath, new URL('./open-loop.mjs', import.meta.url).pathname, `https://127.0.0.1:${port}/mutate`, body, '2000', '6', '16', pki.caFile, same ? 'same' : 'distinct'])
    await load() // warm-up
    gcLines.length = 0
    console.log((await load()).stdout)
    const pauses = gcLines.map((l) => ({ kind: /Mark-Compact|Mark-sweep/.test(l) ? 'major' : 'scavenge', ms: Number(/([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? 0) }))
    for (const kind of ['scavenge', 'major']) {
      const ms = pauses.filter((p) => p.kind === kind).map((p) => p.ms).sort((a, b) => a - b)
      console.log(`${kind}: ${ms.length} in 6 s, max ${ms.at(-1) ?? 0} ms, median ${ms[Math.floor(ms.length / 2)] ?? 0} ms`)
    }
    child.kill('SIGTERM')
    await new Promise((r) => child.on('exit', r))
    await cp.stop()
    process.exit(0)
  }
  console.log(execFileSync('taskset', ['-c', '1', 'wrk', '-t1', '-c16', '-d10s', '-s', lua, `https://127.0.0.1:${port}/mutate`]).toString().match(/Requests\/sec:.*/)?.[0])
  child.kill('SIGTERM')
  await new Promise((r) => child.on('exit', r))
  const prof = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!), 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>
    samples: number[]
    timeDeltas: number[]
  }
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  let total = 0
  prof.samples.forEach((id, i) => {
    const n = byId.get(id)!
    const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/\/work\/main\//, '')}:${n.callFrame.lineNumber}`
    const dt = prof.timeDeltas[i] ?? 0
    total += dt
    self.set(key, (self.get(key) ?? 0) + dt)
  })
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
  // by package: whose time it is
  const group = new Map<string, number>()
  for (const [k, v] of self) {
    const where = k.split(' ').slice(1).join(' ')
    const pkg = /^(@[^/]+\/[^/]+|[^/:]+)\//.exec(where)?.[1] ?? (where.startsWith('node:') ? 'node' : where.startsWith('dist/') ? 'enlist' : k.split(' ')[0]!)
    group.set(pkg, (group.get(pkg) ?? 0) + v)
  }
  console.log('--- by package')
  for (const [k, v] of [...group].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
} finally {
  await cp.stop()
}
