// README's first command, as a newcomer runs it: the whole demo, on the real node where this
// machine can run one (else on the kubelet stand-in). It holds the cluster at the end, as on
// a terminal, and Ctrl-C (SIGINT to its process group, as a terminal sends it) must stop
// everything and remove everything it made.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { cleanEnv } from '../helpers/cli.js'
import { realNodeSupport } from '../harness/node-support.js'
import { waitFor } from '../harness/processes.js'

const REPO = new URL('../../', import.meta.url).pathname
const FINAL = /^demo: pod shop\/checkout-[a-z0-9]+-[a-z0-9]+ on node node-1 \(kubelet (v\d+\.\d+\.\d+|stand-in), ([a-z]+:\/\/[^)\s]+)\): registered \d+ ms after creation, Ready \d+ ms, deregistered \d+ ms after deletion$/
const real = realNodeSupport().ok

t.setTimeout(15 * 60_000)

t.test('scripts/demo.sh shows enlist inject, register and deregister a pod; Ctrl-C cleans up', async (t) => {
  const child = spawn(`${REPO}scripts/demo.sh`, { cwd: REPO, env: { ...cleanEnv(), DEMO_HOLD: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : null))))
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // gone
    }
  })

  await waitFor('the summary line', async () => {
    if (child.exitCode !== null) throw new Error(`the demo exited ${child.exitCode}:\n${stdout.slice(-3000)}\n${stderr.slice(-2000)}`)
    return FINAL.test(stdout.trimEnd().split('\n').pop() ?? '')
  }, 12 * 60_000, 250)
  const last = stdout.trimEnd().split('\n').pop()!
  t.match(last, FINAL, `the last line: ${last}`)
  t.match(stdout, /The cluster stays up for you to explore\. Ctrl-C stops it and cleans up\./)

  const expected = [
    /\[1\/8\] Control plane/,
    /init container\s+enlist-registrar/,
    /waits for\s+shop\/db:5432/,
    /readiness gate\s+enlist\.io\/registered/,
    /Ready\s+False/,
    /"msg":"registered"/,
    /enlist\.io\/registered=True \(Registered/,
    /endpoints\s+Service checkout: ready \[10\.244\./,
    /"interface": "com\.acme\.Checkout"/,
    /enlist\.io\/registered=False \(Deregistered: the pod is terminating\)/,
    /Where to look next/,
  ]
  if (real) {
    expected.push(
      /real node: containerd, runc and kubelet v1\.20\.2 run here/,
      /pod\s+enlist-system\/enlist-\S+ Running on node-1 \(docker\.io\/library\/enlist:0\.1\.0\)/,
      /calls\s+https:\/\/enlist\.enlist-system\.svc:443\/v1\/registrations/,
      /app container\s+not started \(PodInitializing\)/,
      /containerd\s+registrar exited \S+, app started \S+/,
      /app stopped\s+\d+ ms after the delete, once the preStop hook had drained it/,
    )
    t.match(last, /\(kubelet v1\.20\.2, containerd:\/\/1\.6\.\d+/, 'the real kubelet and runtime')
  }
  for (const e of expected) t.match(stdout, e, `shows ${e.source}`)

  const cpDir = /kubeconfig (\/tmp\/enlist-cp-[^/\s]+)\/kubeconfig/.exec(stdout)?.[1]
  const nodeDir = /the node's logs: (\/tmp\/enlist-node-[^/\s]+)\//.exec(stdout)?.[1]
  t.ok(cpDir && existsSync(cpDir), 'the cluster is up while the demo holds')

  // Ctrl-C, as a terminal sends it: to the whole process group
  process.kill(-child.pid!, 'SIGINT')
  const code = await exited
  t.equal(code, 130, 'it exits as interrupted')
  t.match(stderr, /cleaned up: every process stopped/)
  t.notOk(cpDir && existsSync(cpDir), `the control plane's temp dir ${cpDir} is gone`)
  if (real) {
    t.notOk(nodeDir && existsSync(nodeDir), `the node's temp dir ${nodeDir} is gone`)
    const index = /pods in 10\.244\.(\d+)\.0\/24/.exec(stdout)?.[1]
    t.ok(index, 'the demo named its node network')
    t.notMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`\\benlist-node-${index}\\b`), `its network namespace enlist-node-${index} is gone`)
    t.notMatch(execFileSync('ip', ['link', 'show'], { encoding: 'utf8' }), new RegExp(`\\benlist${index}\\b`), 'and its link')
  }
  const stray = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8')
      return (cpDir && cmd.includes(cpDir)) || (nodeDir && cmd.includes(nodeDir))
    } catch {
      return false
    }
  })
  t.same(stray, [], 'no process of it is left')
})
