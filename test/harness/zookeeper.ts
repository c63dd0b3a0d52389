// A ZooKeeper ensemble from Debian's `zookeeper` package, on loopback, owned by the test:
// each server a supervised JVM with its own data dir in one temp dir, removed on every exit
// path. Servers can be stopped and started again (same ports, same data) for failover tests.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { freePort, supervise, type Supervised, waitFor } from './processes.js'
import { tempDir } from '../helpers/temp.js'

export interface ZkServer {
  id: number
  clientPort: number
  process: Supervised | undefined
}

export interface ZkEnsemble {
  dir: string
  servers: ZkServer[]
  /** host:port,host:port,... for clients. */
  connect: string
  start(id: number): Promise<void>
  stop(id: number): Promise<void>
  /** The id of the current leader (asks each server with `srvr`). */
  leader(): Promise<number>
  /** Waits until a quorum serves (every running server answers as leader or follower). */
  waitServing(timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const CLASSPATH = '/usr/share/java/*:/usr/share/zookeeper/*:/etc/zookeeper/conf'
const dirs = new Set<string>()
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** One four-letter-word command; resolves with the whole answer. */
export function fourLetter(port: number, cmd: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    let out = ''
    const timer = setTimeout(() => s.destroy(new Error(`${cmd}: no answer`)), timeoutMs)
    s.on('connect', () => s.write(cmd))
    s.on('data', (d) => (out += d.toString()))
    s.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    s.on('close', () => {
      clearTimeout(timer)
      resolve(out)
    })
  })
}

export async function startZookeeper(opts: { servers?: number; tickTimeMs?: number } = {}): Promise<ZkEnsemble> {
  const n = opts.servers ?? 3
  const dir = tempDir('enlist-zk-')
  dirs.add(dir)
  const ports: Array<{ client: number; peer: number; election: number }> = []
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort(), election: await freePort() })
  const servers: ZkServer[] = ports.map((p, i) => ({ id: i + 1, clientPort: p.client, process: undefined }))
  for (const s of servers) {
    const data = join(dir, `server-${s.id}`)
    mkdirSync(data)
    writeFileSync(join(data, 'myid'), `${s.id}\n`)
    const lines = [
      // a short tick allows the short session timeouts the expiry test uses (min 2 ticks)
      `tickTime=${opts.tickTimeMs ?? 500}`,
      'initLimit=20',
      'syncLimit=10',
      `dataDir=${data}`,
      `clientPort=${s.clientPort}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=srvr,ruok,stat,cons',
      'maxClientCnxns=0',
      ...(n > 1 ? ports.map((p, i) => `server.${i + 1}=127.0.0.1:${p.peer}:${p.election}`) : []),
    ]
    writeFileSync(join(dir, `zoo-${s.id}.cfg`), lines.join('\n') + '\n')
  }

  const start = async (id: number): Promise<void> => {
    const s = servers[id - 1]!
    if (s.process && s.process.child.exitCode === null) return
    s.process = supervise(
      `zookeeper-${id}`,
      'java',
      // small heaps and the client compiler: three JVMs share two cores with everything else
      ['-Xms32m', '-Xmx192m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dzookeeper.admin.enableServer=false', '-cp', CLASSPATH, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', join(dir, `zoo-${id}.cfg`)],
      { logFile: join(dir, `zookeeper-${id}.log`) },
    )
  }
  const stop = async (id: number): Promise<void> => {
    const s = servers[id - 1]!
    await s.process?.stop('SIGTERM', 10_000)
    s.process = undefined
  }
  const mode = async (s: ZkServer): Promise<string | undefined> => {
    try {
      return /Mode: (\w+)/.exec(await fourLetter(s.clientPort, 'srvr'))?.[1]
    } catch {
      return undefined
    }
  }
  const ensemble: ZkEnsemble = {
    dir,
    servers,
    connect: servers.map((s) => `127.0.0.1:${s.clientPort}`).join(','),
    start,
    stop,
    async leader() {
      return waitFor('a ZooKeeper leader', async () => {
        for (const s of servers) if (s.process && (await mode(s)) === 'leader') return s.id
        return undefined
      }, 60_000, 200)
    },
    async waitServing(timeoutMs = 90_000) {
      await waitFor('the ZooKeeper ensemble serving', async () => {
        const running = servers.filter((s) => s.process)
        for (const s of running) {
          if (s.process!.child.exitCode !== null) throw new Error(`zookeeper-${s.id} exited; see ${s.process!.logFile}`)
          const m = await mode(s)
          if (m !== 'leader' && m !== 'follower' && m !== 'standalone') return false
        }
        return true
      }, timeoutMs, 250)
    },
    async close() {
      for (const s of servers) await stop(s.id)
      rmSync(dir, { recursive: true, force: true })
      dirs.delete(dir)
    },
  }
  try {
    for (const s of servers) await start(s.id)
    await ensemble.waitServing()
  } catch (err) {
    await ensemble.close()
    throw err
  }
  return ensemble
}
