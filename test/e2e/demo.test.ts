// README's first command, as a newcomer runs it (not on a terminal: it ends by itself).
import t from 'tap'
import { spawn } from 'node:child_process'
import { cleanEnv } from '../helpers/cli.js'

const REPO = new URL('../../', import.meta.url).pathname

t.test('scripts/demo.sh shows enlist inject, register and deregister a pod, then cleans up', async (t) => {
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn(`${REPO}scripts/demo.sh`, { cwd: REPO, env: { ...cleanEnv(), DEMO_HOLD: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (d: Buffer) => (text += d.toString()))
    child.stderr.on('data', (d: Buffer) => (text += d.toString()))
    child.on('close', (code) => resolve({ code, text }))
  })
  t.equal(out.code, 0, out.text.slice(-2000))
  for (const expected of [
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
    /demo complete; cleaned up/,
  ]) {
    t.match(out.text, expected)
  }
  const dir = /kubeconfig (\/tmp\/enlist-cp-[^/]+)\/kubeconfig/.exec(out.text)?.[1]
  const { existsSync } = await import('node:fs')
  t.ok(dir && !existsSync(dir), 'its temp dir is gone')
})
