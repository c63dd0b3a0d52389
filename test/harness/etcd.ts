// An etcd v3 cluster from Debian's `etcd-server` package for the registry tests: separate from
// the control plane's etcd (its own ports and data dirs), owned by the test, removed on every
// exit path. Members can be stopped and started again, and the leader found, for failover.

import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, supervise, type Supervised, waitFor } from './processes.js'
import { tempDir } from '../helpers/temp.js'

export interface EtcdMember {
  name: string
  clientURL: string
  process: Supervised | undefined
}

export interface EtcdCluster {
  dir: string
  members: EtcdMember[]
  endpoints: string[]
  start(i: number): Promise<void>
  stop(i: number): Promise<void>
  /** The index of the leader, as the members report it. */
  leader(): Promise<number>
  /** Waits until every running member is healthy (has a leader). */
  waitHealthy(timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const ETCD = process.env.ENLIST_ETCD ?? '/usr/bin/etcd'

interface Status {
  header?: { member_id?: string }
  leader?: string
}

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return (await res.json()) as Status
}

/** `host`: the address clients reach the members at (default loopback; a real node's pods
 *  reach the host's address on the node's link). */
export async function startEtcd(opts: { members?: number; host?: string } = {}): Promise<EtcdCluster> {
  const n = opts.members ?? 3
  const host = opts.host ?? '127.0.0.1'
  const dir = tempDir('enlist-etcd-')
  const ports: Array<{ client: number; peer: number }> = []
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort() })
  const members: EtcdMember[] = ports.map((p, i) => ({ name: `m${i}`, clientURL: `http://${host}:${p.client}`, process: undefined }))
  const initialCluster = members.map((m, i) => `${m.name}=http://127.0.0.1:${ports[i]!.peer}`).join(',')

  const start = async (i: number): Promise<void> => {
    const m = members[i]!
    if (m.process && m.process.child.exitCode === null) return
    m.process = supervise(`etcd-${m.name}`, ETCD, [
      `--name=${m.name}`,
      `--data-dir=${join(dir, m.name)}`,
      `--listen-client-urls=${m.clientURL}`,
      `--advertise-client-urls=${m.clientURL}`,
      `--listen-peer-urls=http://127.0.0.1:${ports[i]!.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${ports[i]!.peer}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      '--initial-cluster-token=enlist-registry-test',
      // a loaded 2-core machine: elections slow enough not to flap, fast enough for the test
      '--heartbeat-interval=200',
      '--election-timeout=2000',
      '--log-level=warn',
      '--logger=zap',
    ], { logFile: join(dir, `etcd-${m.name}.log`) })
  }
  const stop = async (i: number): Promise<void> => {
    await members[i]!.process?.stop('SIGTERM', 10_000)
    members[i]!.process = undefined
  }
  const cluster: EtcdCluster = {
    dir,
    members,
    endpoints: members.map((m) => m.clientURL),
    start,
    stop,
    async leader() {
      return waitFor('an etcd leader', async () => {
        for (const m of members) {
          if (!m.process) continue
          try {
            const s = await status(m.clientURL)
            if (s.leader && s.leader !== '0') {
              for (let i = 0; i < members.length; i++) {
                if (!members[i]!.process) continue
                const id = (await status(members[i]!.clientURL)).header?.member_id
                if (id === s.leader) return i
              }
            }
          } catch {
            // not up yet
          }
        }
        return undefined
      }, 60_000, 200)
    },
    async waitHealthy(timeoutMs = 60_000) {
      await waitFor('etcd healthy', async () => {
        for (const m of members) {
          if (!m.process) continue
          if (m.process.child.exitCode !== null) throw new Error(`etcd ${m.name} exited; see ${m.process.logFile}`)
          const res = await fetch(`${m.clientURL}/health`, { signal: AbortSignal.timeout(2000) })
          if (!res.ok || !((await res.json()) as { health?: string }).health?.startsWith('true')) return false
        }
        return true
      }, timeoutMs, 200)
    },
    async close() {
      for (let i = 0; i < members.length; i++) await stop(i)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    for (let i = 0; i < n; i++) await start(i)
    await cluster.waitHealthy()
  } catch (err) {
    await cluster.close()
    throw err
  }
  return cluster
}
