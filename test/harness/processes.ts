// Child processes that never outlive the test: each runs under a shell watchdog that
// kills it when our process is gone, however it went (a failed test, Ctrl-C, SIGKILL).

import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { createServer } from 'node:net'

export { tempDir } from '../helpers/temp.js'

const live = new Set<ChildProcess>()

function killAll(): void {
  for (const c of live) {
    try {
      if (c.pid) process.kill(-c.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}
process.once('exit', killAll)
const cleanups: Array<() => Promise<void>> = []

/**
 * Runs `fn` on Ctrl-C (or TERM, HUP) before the supervised processes are killed and this
 * process exits: an orderly stop (the demo's). Bounded: after a minute, or on a second
 * Ctrl-C, the process goes anyway (the watchdogs and a node's reaper still clean up).
 */
export function onInterrupt(fn: () => Promise<void>): void {
  cleanups.push(fn)
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    const limit = setTimeout(() => process.exit(130), 60_000)
    void Promise.allSettled(cleanups.map((f) => f())).then(() => {
      clearTimeout(limit)
      process.exit(130) // the exit handlers kill what is left and remove the temp dirs
    })
  })
}

// The watchdog polls our pid; when it disappears it stops the child (TERM, then KILL).
const WATCHDOG = `
parent=$1; shift
"$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit $?' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1 & wait $!; done
if kill -0 "$child" 2>/dev/null; then kill -TERM $child; sleep 5; kill -KILL $child 2>/dev/null; fi
wait $child
`

export interface Supervised {
  name: string
  child: ChildProcess
  logFile: string
  exited: Promise<number | null>
  /** Lines the process wrote (stdout and stderr), kept in memory for assertions. */
  lines: string[]
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>
}

export function supervise(name: string, cmd: string, args: readonly string[], opts: { logFile: string; env?: NodeJS.ProcessEnv; keepLines?: boolean }): Supervised {
  const child = spawn('bash', ['-c', WATCHDOG, 'watchdog', String(process.pid), cmd, ...args], {
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: killed as a whole
  })
  live.add(child)
  const log: WriteStream = createWriteStream(opts.logFile, { flags: 'a' })
  const lines: string[] = []
  let partial = ''
  const onData = (d: Buffer): void => {
    log.write(d)
    if (!opts.keepLines) return
    partial += d.toString()
    let nl: number
    while ((nl = partial.indexOf('\n')) !== -1) {
      lines.push(partial.slice(0, nl))
      partial = partial.slice(nl + 1)
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child)
      log.end()
      resolve(code ?? (signal === 'SIGTERM' ? 143 : signal === 'SIGKILL' ? 137 : null))
    })
  })
  return {
    name,
    child,
    logFile: opts.logFile,
    exited,
    lines,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      // The watchdog forwards TERM to the real process and waits for it; KILL cannot be
      // forwarded (it would kill the watchdog alone), so it goes to the whole group.
      if (signal === 'SIGKILL') {
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {
          // gone
        }
      } else child.kill(signal)
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {
          // gone
        }
      }, graceMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

/** What ends with a test: tap's `t`, whose teardowns run in the order they were added. */
export interface Owner {
  teardown(fn: () => unknown): void
}

/** `starting`, once it has started, stopped by `stop` when `t` ends. */
export async function owned<T>(t: Owner, starting: Promise<T>, stop: (x: T) => unknown): Promise<T> {
  const x = await starting
  t.teardown(() => stop(x))
  return x
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 100, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    // a caller racing the wait against something else stops the polling when that wins
    signal?.throwIfAborted()
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
