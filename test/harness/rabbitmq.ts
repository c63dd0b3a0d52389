// rabbitmq-server (Debian's package) as a process this test owns, in a temp dir, with its
// own epmd port (its epmd outlives the broker: stopped here too). Users from a definitions
// file: `enlist` (everything on /), `limited` (may not configure or write). It can be
// stopped and started again with the same node name and data (durable things survive).

import { execFile } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, supervise, type Supervised } from './processes.js'
import { tempDir } from '../helpers/temp.js'

export const RABBIT_USERS = {
  enlist: { username: 'enlist', password: 'enlist-s3cret' },
  limited: { username: 'limited', password: 'limited-s3cret' },
}

const BIN = '/usr/lib/rabbitmq/bin'

export interface RabbitMq {
  port: number
  url: string
  dir: string
  process: Supervised | undefined
  start(): Promise<void>
  /** Stops the broker (not epmd). */
  stopBroker(): Promise<void>
  /** Runs rabbitmqctl with this node's environment. */
  ctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>
  stop(): Promise<void>
}

let cleanups: Array<() => void> = []
process.once('exit', () => {
  for (const f of cleanups) f()
})

/** Starts a broker; ports are picked free, and picked again if another process took one
 *  between the pick and the broker's listen (parallel tests). */
export async function startRabbitMq(): Promise<RabbitMq> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce()
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt >= 3) throw err
    }
  }
}

class PortTaken extends Error {}

async function startOnce(): Promise<RabbitMq> {
  const dir = tempDir('enlist-rabbit-')
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()]
  const node = `enlist${port}@localhost`
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_NODENAME: node,
    ERL_EPMD_PORT: String(epmdPort),
    RABBITMQ_LOGS: '-',
  }
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n')
  writeFileSync(
    join(dir, 'definitions.json'),
    JSON.stringify({
      users: [
        { name: RABBIT_USERS.enlist.username, password: RABBIT_USERS.enlist.password, tags: 'administrator' },
        { name: RABBIT_USERS.limited.username, password: RABBIT_USERS.limited.password, tags: '' },
      ],
      vhosts: [{ name: '/' }],
      permissions: [
        { user: RABBIT_USERS.enlist.username, vhost: '/', configure: '.*', write: '.*', read: '.*' },
        { user: RABBIT_USERS.limited.username, vhost: '/', configure: '^$', write: '^$', read: '.*' },
      ],
    }),
  )
  writeFileSync(join(dir, 'rabbitmq.conf'), `load_definitions = ${join(dir, 'definitions.json')}\nloopback_users = none\nlog.console = true\nlog.console.level = info\n`)
  const epmdStop = (): void => {
    execFile('epmd', ['-port', String(epmdPort), '-kill'], () => undefined)
  }
  const remove = (): void => {
    epmdStop()
    rmSync(dir, { recursive: true, force: true })
  }
  cleanups.push(remove)
  const ctl: RabbitMq['ctl'] = (args) =>
    new Promise((resolve) => {
      execFile(join(BIN, 'rabbitmqctl'), ['-n', node, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
      })
    })
  const r: RabbitMq = {
    port,
    url: `amqp://127.0.0.1:${port}`,
    dir,
    process: undefined,
    ctl,
    async start() {
      const proc = supervise('rabbitmq', join(BIN, 'rabbitmq-server'), [], { logFile: join(dir, 'rabbitmq.log'), env, keepLines: true })
      r.process = proc
      // polled here rather than with waitFor, so a broker that cannot start fails at once
      const deadline = Date.now() + 90_000
      for (;;) {
        if (proc.lines.some((l) => /eaddrinuse/.test(l))) {
          try {
            process.kill(-proc.child.pid!, 'SIGKILL') // the whole group: the watchdog and the VM
          } catch {
            // gone
          }
          await proc.exited
          r.process = undefined
          throw new PortTaken(`a port of rabbitmq-server was taken: ${port}, ${distPort}`)
        }
        if (proc.child.exitCode !== null) throw new Error(`rabbitmq-server exited: ${proc.lines.slice(-10).join('\n')}`)
        if (proc.lines.some((l) => /Server startup complete/.test(l)) && (await portOpen(port))) return
        if (Date.now() > deadline) throw new Error(`rabbitmq-server did not start within 90 s: ${proc.lines.slice(-10).join('\n')}`)
        await new Promise((r) => setTimeout(r, 200))
      }
    },
    async stopBroker() {
      await r.process?.stop('SIGTERM', 30_000)
      r.process = undefined
    },
    async stop() {
      await r.stopBroker()
      remove()
      cleanups = cleanups.filter((f) => f !== remove)
    },
  }
  try {
    await r.start()
  } catch (err) {
    await r.stop()
    throw err
  }
  return r
}

async function portOpen(port: number): Promise<boolean> {
  const net = await import('node:net')
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}
