// What the event-stream end-to-end tests share: pods that come and go as a kubelet would
// drive them, `enlist relay` as a process, and the checks every run ends with.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { V1Pod } from '@kubernetes/client-node'
import { Ajv } from 'ajv'
import { cleanEnv, ENLIST } from '../helpers/cli.js'
import type { Cmdb } from './cmdb.js'
import type { ControlPlane } from './control-plane.js'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { listPods, podManifest, refOf, registeredCondition } from './k8s.js'
import { startPod } from './kubelet.js'
import { freePort, supervise, type Supervised, waitFor } from './processes.js'
import { tempDir } from '../helpers/temp.js'

/** Creates a pod of `service` (the webhook injects it), binds it and gives it an IP. */
export async function createPod(cp: ControlPlane, ns: string, name: string, service = 'orders'): Promise<V1Pod> {
  const created = await cp.client.create<V1Pod>(
    podsPath(ns),
    podManifest(name, { labels: { app: service }, containers: [{ name: 'app', image: `${service}:1`, ports: [{ name: 'http', containerPort: 8080 }] }] }),
  )
  return startPod(cp, created)
}

export async function forceDelete(cp: ControlPlane, pod: V1Pod): Promise<void> {
  await cp.client.request('DELETE', podPath(refOf(pod)), { query: { gracePeriodSeconds: 0 }, body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 } })
}

/** A graceful delete: no kubelet runs here, so the pod stays terminating until forced. */
export async function deleteGracefully(cp: ControlPlane, pod: V1Pod): Promise<void> {
  await cp.client.delete(podPath(refOf(pod)))
}

/** UIDs of pods that exist, are not terminating, and are registered (condition True). */
export async function liveRegistered(cp: ControlPlane, ns: string): Promise<Set<string>> {
  const pods = await listPods(cp, ns)
  return new Set(pods.filter((p) => !p.metadata?.deletionTimestamp && registeredCondition(p)?.status === 'True').map((p) => p.metadata!.uid!))
}

export interface SeenEvent {
  id: string
  type: string
  uid: string
  body: Record<string, unknown>
}

const schema = JSON.parse(readFileSync(new URL('../../docs/events.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false })
export const validateEvent = ajv.compile(schema)

/** What every run must end with: each registered pod has its registered event, each gone
 *  pod its deregistered event, duplicates share their id, and every event is schema-valid. */
export function checkEvents(seen: readonly SeenEvent[], registered: ReadonlySet<string>, gone: ReadonlySet<string>): string[] {
  const problems: string[] = []
  const byId = new Map<string, SeenEvent[]>()
  for (const e of seen) {
    if (!validateEvent(e.body)) problems.push(`event ${e.id} does not match docs/events.schema.json: ${ajv.errorsText(validateEvent.errors)}`)
    byId.set(e.id, [...(byId.get(e.id) ?? []), e])
  }
  for (const [id, copies] of byId) {
    const first = JSON.stringify({ ...copies[0]!.body, time: undefined })
    for (const c of copies) if (JSON.stringify({ ...c.body, time: undefined }) !== first) problems.push(`duplicates of ${id} differ`)
  }
  const has = (uid: string, kind: string): boolean => byId.has(`${uid}.${kind}`)
  for (const uid of registered) if (!has(uid, 'registered')) problems.push(`no registered event for ${uid}`)
  for (const uid of gone) {
    if (!has(uid, 'registered')) problems.push(`no registered event for gone pod ${uid}`)
    if (!has(uid, 'deregistered')) problems.push(`no deregistered event for gone pod ${uid}`)
  }
  return problems
}

export interface RelayProcess {
  process: Supervised
  url: string
  metrics(): Promise<string>
  readyz(): Promise<{ status: number; body: string }>
  stop(): Promise<number | null>
}

/** `enlist relay` as a process. */
export async function startRelay(cp: ControlPlane, args: readonly string[], credentials: Record<string, string>): Promise<RelayProcess> {
  const dir = tempDir('enlist-relay-')
  const creds = join(dir, 'credentials')
  mkdirSync(creds)
  for (const [k, v] of Object.entries(credentials)) writeFileSync(join(creds, k), v)
  const port = await freePort()
  const proc = supervise('enlist-relay', process.execPath, [ENLIST, 'relay', `--credentials-dir=${creds}`, `--port=${port}`, '--bind-address=127.0.0.1', `--kubeconfig=${cp.kubeconfig}`, '--log-level=debug', ...args], {
    logFile: join(cp.dir, `relay-${port}.log`),
    env: cleanEnv(),
    keepLines: true,
  })
  const url = `http://127.0.0.1:${port}`
  const relay: RelayProcess = {
    process: proc,
    url,
    metrics: async () => (await fetch(`${url}/metrics`)).text(),
    readyz: async () => {
      const r = await fetch(`${url}/readyz?verbose`)
      return { status: r.status, body: await r.text() }
    },
    stop: () => proc.stop('SIGTERM', 15_000),
  }
  await waitFor('the relay ready', async () => {
    if (proc.child.exitCode !== null) throw new Error(`relay exited ${proc.child.exitCode}: ${proc.lines.slice(-5).join('\n')}`)
    return (await relay.readyz()).status === 200
  }, 60_000, 200)
  return relay
}

/** Waits until the CMDB holds exactly `want` (by uid). */
export async function waitForCmdb(cmdb: Cmdb, want: () => Promise<Set<string>>, timeoutMs = 90_000): Promise<void> {
  let last = ''
  try {
    await waitFor('the CMDB to equal the live registered pods', async () => {
      const w = await want()
      const have = new Set(cmdb.records.keys())
      last = `want ${[...w].sort().join(',')} have ${[...have].sort().join(',')}`
      return w.size === have.size && [...w].every((u) => have.has(u))
    }, timeoutMs, 250)
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${last}`, { cause: err })
  }
}
