// Every exit path cleans up, the worst one too: the process that started a node is killed
// (SIGKILL) while a pod runs, with no chance to run a handler. The node's reaper must remove
// the containers, the shims, containerd, the kubelet, kube-proxy, the mounts, the network
// namespace with its link and iptables rules, and the node's directory; the temp reaper the
// control plane's directory.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { cleanEnv } from '../helpers/cli.js'
import { realNodeSupport, supportLine } from '../harness/node-support.js'
import { waitFor } from '../harness/processes.js'

const REPO = new URL('../../', import.meta.url).pathname
const support = realNodeSupport()

const processesNaming = (dir: string) =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)
      } catch {
        return false
      }
    })

if (!support.ok) {
  t.test('a node outlives no killed process', { skip: supportLine(support) }, async () => undefined)
} else {
  t.setTimeout(10 * 60_000)
  t.test('a node outlives no killed process', async (t) => {
    const child = spawn(process.execPath, ['--import', 'tsx', `${REPO}test/fixtures/node-crash-child.ts`], { cwd: REPO, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    t.teardown(() => void child.kill('SIGKILL'))
    const where = await waitFor('the child running a pod', async () => {
      if (child.exitCode !== null) throw new Error(`the child exited ${child.exitCode}: ${err.slice(-2000)}`)
      const line = out.split('\n').find((l) => l.startsWith('{'))
      return line ? (JSON.parse(line) as { nodeDir: string; cpDir: string; netns: string; link: string }) : undefined
    }, 5 * 60_000, 250)
    t.ok(processesNaming(where.nodeDir).length > 3, 'containerd, its shims, the kubelet and kube-proxy run')

    child.kill('SIGKILL')
    await waitFor('the reaper to finish', async () => !existsSync(where.nodeDir) && processesNaming(where.nodeDir).length === 0, 120_000, 500)
    t.notOk(existsSync(where.nodeDir), `the node's directory ${where.nodeDir} is gone`)
    t.same(processesNaming(where.nodeDir), [], 'no process of the node is left')
    t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(where.nodeDir), 'nothing of it is mounted')
    t.notMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`\\b${where.netns}\\b`), `the network namespace ${where.netns} is gone, with its rules`)
    t.notMatch(execFileSync('ip', ['link', 'show'], { encoding: 'utf8' }), new RegExp(`\\b${where.link}\\b`), `the link ${where.link} is gone`)
    t.notOk(existsSync(`/run/enlist-node/${where.netns}`), 'its claim on the index is released')
    // the control plane's processes die with their watchdogs, its temp dir (keys, tokens) with the temp reaper
    await waitFor('the control plane gone', async () => processesNaming(where.cpDir).length === 0 && !existsSync(where.cpDir), 60_000, 500)
    t.notOk(existsSync(where.cpDir), `the control plane's directory ${where.cpDir} is gone too`)
  })
}
