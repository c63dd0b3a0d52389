// nats-server (Debian's package) with JetStream, as processes this test owns: one server,
// or a three-server cluster for failover. Each server can be stopped and started again on
// the same ports and store. Users: `enlist` (everything), `limited` (may not publish
// registration events), `sys` (the system account). Temp dirs go on every exit path.

import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, supervise, type Supervised, waitFor } from './processes.js'
import { tempDir } from '../helpers/temp.js'

export const NATS_USERS = {
  enlist: { user: 'enlist', password: 'enlist-s3cret' },
  limited: { user: 'limited', password: 'limited-s3cret' },
}

export interface NatsServer {
  name: string
  port: number
  url: string
  process: Supervised | undefined
  start(): Promise<void>
  stop(signal?: NodeJS.Signals): Promise<void>
}

export interface NatsCluster {
  servers: NatsServer[]
  /** Every server's URL, comma separated (what the policy's url takes). */
  url: string
  dir: string
  stop(): Promise<void>
}

/** `host`: the address clients reach the servers at (default loopback; a real node's pods
 *  reach the host's address on the node's link). */
export async function startNats(opts: { size?: 1 | 3; host?: string } = {}): Promise<NatsCluster> {
  const size = opts.size ?? 1
  const host = opts.host ?? '127.0.0.1'
  const dir = tempDir('enlist-nats-')
  const remove = (): void => rmSync(dir, { recursive: true, force: true })
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), cluster: await freePort() })))
  const servers: NatsServer[] = ports.map((p, i) => {
    const name = `n${i + 1}`
    const conf = join(dir, `${name}.conf`)
    const routes = ports.filter((_, j) => j !== i).map((q) => `nats-route://127.0.0.1:${q.cluster}`)
    writeFileSync(
      conf,
      `server_name: ${name}
listen: ${host}:${p.client}
jetstream { store_dir: "${join(dir, name)}", max_memory_store: 64MB, max_file_store: 1GB }
accounts {
  APP {
    jetstream: enabled
    users: [
      { user: ${NATS_USERS.enlist.user}, password: ${NATS_USERS.enlist.password} }
      { user: ${NATS_USERS.limited.user}, password: ${NATS_USERS.limited.password}, permissions: { publish: { deny: ["enlist.>", "events.>"] } } }
    ]
  }
  SYS { users: [ { user: sys, password: sys } ] }
}
system_account: SYS
${size > 1 ? `cluster { name: enlist-test, listen: 127.0.0.1:${p.cluster}, no_advertise: true, routes: [${routes.join(", ")}] }` : ''}
`,
    )
    const server: NatsServer = {
      name,
      port: p.client,
      url: `nats://${host}:${p.client}`,
      process: undefined,
      async start() {
        const proc = supervise(`nats-${name}`, 'nats-server', ['-c', conf], { logFile: join(dir, `${name}.log`), keepLines: true })
        server.process = proc
        await waitFor(`nats-server ${name} ready`, async () => {
          if (proc.child.exitCode !== null) throw new Error(`nats-server ${name} exited: ${proc.lines.slice(-5).join('\n')}`)
          return proc.lines.some((l) => l.includes('Server is ready'))
        }, 30_000, 50)
      },
      async stop(signal = 'SIGTERM') {
        const proc = server.process
        server.process = undefined
        if (!proc) return
        if (signal === 'SIGKILL') {
          // a crash: the whole process group at once (the watchdog would forward nothing)
          try {
            process.kill(-proc.child.pid!, 'SIGKILL')
          } catch {
            // already gone
          }
          await proc.exited
        } else await proc.stop(signal, 10_000)
      },
    }
    return server
  })
  try {
    await Promise.all(servers.map((s) => s.start()))
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')))
    remove()
    throw err
  }
  return {
    servers,
    url: servers.map((s) => s.url).join(','),
    dir,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()))
      remove()
    },
  }
}
