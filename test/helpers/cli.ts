import { spawn } from 'node:child_process'

export const ENLIST = new URL('../../dist/cli/main.js', import.meta.url).pathname

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** The environment without tap's loaders, so children run as users run them. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  for (const k of Object.keys(env)) if (k.startsWith('TAP') || k.startsWith('_TAPJS')) delete env[k]
  return env
}

/** Runs the built `enlist` CLI. */
export function enlist(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ENLIST, ...args], { env: { ...cleanEnv(), ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.on('error', () => undefined) // an early exit shows in the exit code and stderr
    child.stdin.end(opts.input ?? '')
  })
}
