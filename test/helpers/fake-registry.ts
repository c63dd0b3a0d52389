// An in-memory registry backend (records by uid, a call log, failures on demand), and the
// real BackendSet holding such backends next to the real kubernetes backend: what unit
// tests of the registration service and the controller write to instead of a network.

import type { Logger } from 'pino'
import type { KubeClient } from '../../src/kube/client.js'
import type { PodRef } from '../../src/kube/pod-ref.js'
import { SecretReader } from '../../src/kube/secrets.js'
import { silentLogger } from '../../src/log.js'
import type { Metrics } from '../../src/metrics.js'
import type { Backend, BackendCallOptions, BackendOp } from '../../src/registry/backend.js'
import { BackendSet } from '../../src/registry/backend-set.js'
import type { PodLookup } from '../../src/registry/kubernetes.js'
import type { ListedEntry } from '../../src/registry/ownership.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { makePolicy } from './fixtures.js'

export interface BackendCall {
  op: BackendOp
  uid?: string
  ok: boolean
}

/** A backend whose store is a map: idempotent, as every backend must be. */
export class FakeBackend implements Backend {
  readonly type = 'fake'
  readonly records = new Map<string, RegistryRecord>()
  readonly calls: BackendCall[] = []
  private failures: Array<{ op: BackendOp; times: number; uid?: string; message: string }> = []
  /** Runs as each call begins, before it fails or succeeds (to change the world mid-call). */
  before?: (op: BackendOp, uid: string | undefined) => void | Promise<void>

  constructor(readonly name: string) {}

  /** The next `times` calls of `op` (for `uid` only, if given) fail; Infinity: until heal(). */
  fail(op: BackendOp, times = 1, o: { uid?: string; message?: string } = {}): void {
    this.failures.push({ op, times, uid: o.uid, message: o.message ?? `${this.name} is down` })
  }

  heal(): void {
    this.failures = []
  }

  /** The backend loses an entry (a restore from backup, an operator's mistake). */
  lose(uid: string): void {
    this.records.delete(uid)
  }

  /** How many calls of `op` were made (for `uid`, if given), failed ones included. */
  count(op: BackendOp, uid?: string): number {
    return this.calls.filter((c) => c.op === op && (uid === undefined || c.uid === uid)).length
  }

  async register(record: RegistryRecord, _opts?: BackendCallOptions): Promise<void> {
    await this.enter('register', record.uid)
    this.records.set(record.uid, structuredClone(record))
  }

  async deregister(ref: PodRef, _opts?: BackendCallOptions): Promise<void> {
    await this.enter('deregister', ref.uid)
    this.records.delete(ref.uid)
  }

  async list(opts?: BackendCallOptions): Promise<ListedEntry[]> {
    await opts?.pace?.()
    await this.enter('list')
    // as the http backend lists: each record's mark and writer's UID
    return [...this.records.values()].map((r) => ({ uid: r.uid, namespace: r.namespace, pod: r.pod, cluster: r.cluster, ...(r.clusterUID ? { clusterUID: r.clusterUID } : {}) }))
  }

  private async enter(op: BackendOp, uid?: string): Promise<void> {
    await new Promise((r) => setImmediate(r))
    await this.before?.(op, uid)
    const i = this.failures.findIndex((f) => f.op === op && (f.uid === undefined || f.uid === uid))
    if (i >= 0) {
      const f = this.failures[i]!
      if (--f.times <= 0) this.failures.splice(i, 1)
      this.calls.push({ op, uid, ok: false })
      throw new Error(f.message)
    }
    this.calls.push({ op, uid, ok: true })
  }
}

export interface FakeRegistryOptions {
  client: KubeClient
  pods: PodLookup
  metrics: Metrics
  log?: Logger
  /** In-memory backends, in this order after the kubernetes one. */
  backends: FakeBackend[]
  /** Whether the real kubernetes backend (the record on the pod) comes first; default true. */
  kubernetes?: boolean
  /** Retry delays of the fake backends (the policy's registry.backends[].retry). */
  retry?: { initialDelayMs: number; maxDelayMs: number }
  /** The policy's cluster.name (the fakes stand in for shared backends); default "test". */
  cluster?: string
  /** Fakes whose policy entry says `sweep: false`. */
  sweepOff?: readonly string[]
}

/**
 * The real BackendSet, configured from a real policy, with the fakes in the places of
 * http backends of the same names: the policy gives them their retry settings, and then
 * the set's backends are swapped (the set builds backends only from the catalogue, and
 * has no other way in). Returns the set and the policy it was configured with.
 */
export async function fakeRegistry(o: FakeRegistryOptions): Promise<{ registry: BackendSet; policy: ReturnType<typeof makePolicy> }> {
  const log = o.log ?? silentLogger()
  const retry = o.retry ?? { initialDelayMs: 10, maxDelayMs: 100 }
  const backends: unknown[] = [
    ...(o.kubernetes === false ? [] : [{ name: 'kubernetes', type: 'kubernetes' }]),
    ...o.backends.map((b) => ({ name: b.name, type: 'http', url: `https://${b.name}.invalid/registry`, retry, sweep: !o.sweepOff?.includes(b.name) })),
  ]
  const policy = makePolicy({ cluster: { name: o.cluster ?? 'test' }, registry: { backends } })
  const registry = new BackendSet(o.client, o.pods, new SecretReader(o.client, 'enlist-system'), o.metrics, log)
  await registry.configure(policy.spec)
  const inner = registry as unknown as { current: Backend[] }
  if (inner.current.length !== backends.length) throw new Error('fake registry: the policy did not configure every backend')
  const http = inner.current.filter((b) => b.type === 'http')
  inner.current = inner.current.map((b) => o.backends.find((f) => f.name === b.name && b.type === 'http') ?? b)
  await Promise.all(http.map((b) => b.close?.()))
  return { registry, policy }
}
