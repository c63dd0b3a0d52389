// A ZooKeeper ensemble from Debian's `zookeeper` package, on loopback, owned by the test:
// each server a supervised JVM with its own data dir in one temp dir, removed on every exit
// path. Servers can be stopped and started again (same ports, same data) for failover tests.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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
/** How long a running server may stay out of the quorum before waitServing restarts it. */
const STUCK_MS = 30_000

/** The last lines of a file, for an error message. */
function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** One four-letter-word command; resolves with the whole answer. */
export function fourLetter(port: number, cmd: string, timeoutMs = 2000, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host)
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

/** `host`: the address clients reach the ensemble at (default loopback; a real node's pods
 *  reach the host's address on the node's link). */
export async function startZookeeper(opts: { servers?: number; tickTimeMs?: number; host?: string } = {}): Promise<ZkEnsemble> {
  const n = opts.servers ?? 3
  const host = opts.host ?? '127.0.0.1'
  const dir = tempDir('enlist-zk-')
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
      `clientPortAddress=${host}`,
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
      return /Mode: (\w+)/.exec(await fourLetter(s.clientPort, 'srvr', 2000, host))?.[1]
    } catch {
      return undefined
    }
  }
  const ensemble: ZkEnsemble = {
    dir,
    servers,
    connect: servers.map((s) => `${host}:${s.clientPort}`).join(','),
    start,
    stop,
    async leader() {
      return waitFor('a ZooKeeper leader', async () => {
        for (const s of servers) if (s.process && (await mode(s)) === 'leader') return s.id
        return undefined
      }, 60_000, 200)
    },
    // A member that stays out of the quorum (an election or a sync that never completes,
    // seen once on a loaded machine) is restarted, as a liveness probe on `srvr` would
    // restart it in production; a timeout names every member's mode and its log's end.
    async waitServing(timeoutMs = 90_000) {
      const notServingSince = new Map<number, number>()
      const modes = new Map<number, string>()
      try {
        await waitFor('the ZooKeeper ensemble serving', async () => {
          let serving = true
          for (const s of servers.filter((x) => x.process)) {
            if (s.process!.child.exitCode !== null) throw new Error(`zookeeper-${s.id} exited; see ${s.process!.logFile}`)
            const m = (await mode(s)) ?? 'not answering'
            modes.set(s.id, m)
            if (m === 'leader' || m === 'follower' || m === 'standalone') {
              notServingSince.delete(s.id)
              continue
            }
            serving = false
            const since = notServingSince.get(s.id) ?? Date.now()
            notServingSince.set(s.id, since)
            if (Date.now() - since > STUCK_MS) {
              process.stderr.write(`zookeeper-${s.id}: out of the quorum for ${STUCK_MS / 1000} s (${m}); restarted\n`)
              await stop(s.id)
              await start(s.id)
              notServingSince.delete(s.id)
            }
          }
          return serving
        }, timeoutMs, 250)
      } catch (err) {
        const state = servers.map((s) => `zookeeper-${s.id}: ${s.process ? (modes.get(s.id) ?? 'unknown') : 'stopped'}\n${s.process ? tail(s.process.logFile, 15) : ''}`)
        throw new Error(`${(err as Error).message}\n${state.join('\n')}`, { cause: err })
      }
    },
    async close() {
      for (const s of servers) await stop(s.id)
      rmSync(dir, { recursive: true, force: true })
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
