// Idle memory over time: enlist with N namespaces cached, its RSS sampled after it is ready.
//   npx tsx bench/rss.ts [namespaces]
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { makePki, request } from '../test/helpers/https.js'
import { cleanEnv, ENLIST } from '../test/helpers/cli.js'
import { startControlPlane } from '../test/harness/control-plane.js'
import { installManifests } from '../test/harness/enlist.js'
import { freePort, waitFor } from '../test/harness/processes.js'

const n = Number(process.argv[2] ?? 5000)
const cp = await startControlPlane({ controllerManager: false })
try {
  const pki = await makePki()
  const port = await freePort()
  await installManifests(cp, port, pki.ca.cert)
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `team-${i + j}`, labels: { team: `t${j}` } } })))
  }
  for (let run = 0; run < 3; run++) {
    const child = spawn(process.execPath, [ENLIST, 'serve', `--kubeconfig=${cp.kubeconfig}`, `--port=${port}`, '--bind-address=127.0.0.1', `--tls-cert=${pki.certFile}`, `--tls-key=${pki.keyFile}`, '--leader-elect=false'], { env: cleanEnv(), stdio: 'ignore' })
    await waitFor('ready', async () => (await request(`https://127.0.0.1:${port}/readyz`, { ca: pki.ca.cert }).catch(() => undefined))?.status === 200, 60_000, 100)
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024
    const samples: string[] = []
    const ready = Date.now()
    for (const at of [1, 2, 5, 10, 20, 30]) {
      await new Promise((r) => setTimeout(r, Math.max(0, ready + at * 1000 - Date.now())))
      samples.push(`${at}s ${rss().toFixed(1)}`)
    }
    console.log(`run ${run + 1}, ${n} namespaces: RSS MB after ready: ${samples.join(', ')}`)
    child.kill('SIGTERM')
    await new Promise((r) => child.on('exit', r))
  }
} finally {
  await cp.stop()
}
