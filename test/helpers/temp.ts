// Temp dirs a test makes, removed when its process exits, however it exits: by the exit
// handler (an interrupted run too: the harness's signal handler exits through process.exit),
// and when the process is killed outright (SIGKILL, a crash) by a reaper: one small shell per
// process that waits for it to be gone and removes what it listed. Some hold private keys.

import { spawn } from 'node:child_process'
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dirs = new Set<string>()
let reaper: { dir: string; list: string; pid?: number } | undefined

function startReaper(): NonNullable<typeof reaper> {
  const dir = mkdtempSync(join(tmpdir(), 'enlist-reap-'))
  const list = join(dir, 'dirs')
  appendFileSync(list, '')
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; while read -r d; do rm -rf -- "$d"; done < '${list}'; rm -rf -- '${dir}'`
  const child = spawn('bash', ['-c', script], { detached: true, stdio: 'ignore' })
  child.unref()
  return { dir, list, pid: child.pid }
}

process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
  if (!reaper) return
  rmSync(reaper.dir, { recursive: true, force: true })
  try {
    if (reaper.pid) process.kill(-reaper.pid, 'SIGKILL')
  } catch {
    // gone
  }
})

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.add(dir)
  reaper ??= startReaper()
  appendFileSync(reaper.list, `${dir}\n`)
  return dir
}
