// Leader election against an in-memory Lease API whose calls can hang (a partition): the
// leader steps down, and its work has stopped, before another replica can take the lease;
// never two leaders at once; a clean stop hands over at once; a stuck stop is caught.
import t from 'tap'
import { LeaderElector, type LeaseClient } from '../../src/controller/leader.js'
import { type CallOptions, KubeApiError } from '../../src/kube/client.js'
import { AbortedError } from '../../src/lib/errors.js'
import { silentLogger } from '../../src/log.js'
import { createMetrics } from '../../src/metrics.js'

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string }
  spec: Record<string, unknown>
}

/** One apiserver's Leases: optimistic concurrency by resourceVersion. */
class LeaseStore {
  lease: Lease | undefined
  rv = 0
}

/** One replica's view of it; `partitioned` makes every call hang until its deadline. */
class FakeClient implements LeaseClient {
  partitioned = false
  calls = 0
  constructor(private readonly store: LeaseStore) {}

  private async call<T>(opts: CallOptions | undefined, fn: () => T): Promise<T> {
    this.calls++
    await new Promise((r) => setImmediate(r))
    if (this.partitioned) {
      await new Promise<never>((_, reject) => {
        const timer = setTimeout(() => reject(new KubeApiError(0, 'Timeout', 'no answer', 'GET', 'lease')), opts?.timeoutMs ?? 30_000)
        opts?.signal?.addEventListener('abort', () => {
          clearTimeout(timer)
          reject(new AbortedError('lease call'))
        })
      })
    }
    return fn()
  }

  get<T>(_path: string, _q?: unknown, opts?: CallOptions): Promise<T> {
    return this.call(opts, () => {
      if (!this.store.lease) throw new KubeApiError(404, 'NotFound', 'no lease', 'GET', 'lease')
      return structuredClone(this.store.lease) as T
    })
  }

  create<T>(_path: string, body: unknown, _q?: unknown, opts?: CallOptions): Promise<T> {
    return this.call(opts, () => {
      if (this.store.lease) throw new KubeApiError(409, 'AlreadyExists', 'exists', 'POST', 'lease')
      this.store.lease = { ...(structuredClone(body) as Lease) }
      this.store.lease.metadata.resourceVersion = String(++this.store.rv)
      return structuredClone(this.store.lease) as T
    })
  }

  replace<T>(_path: string, body: unknown, opts?: CallOptions): Promise<T> {
    return this.call(opts, () => {
      const b = structuredClone(body) as Lease
      if (b.metadata.resourceVersion !== this.store.lease?.metadata.resourceVersion) throw new KubeApiError(409, 'Conflict', 'changed', 'PUT', 'lease')
      b.metadata.resourceVersion = String(++this.store.rv)
      this.store.lease = b
      return structuredClone(b) as T
    })
  }
}

const TIMING = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 }

interface Replica {
  name: string
  client: FakeClient
  elector: LeaderElector
  metrics: ReturnType<typeof createMetrics>
  /** [start, stop] of its leader-only work, as the work itself saw it. */
  terms: Array<{ start: number; stop?: number; signalAt?: number }>
  overruns: number
}

function replica(name: string, store: LeaseStore, opts: { stopMs?: number } = {}): Replica {
  const client = new FakeClient(store)
  const metrics = createMetrics({ defaultMetrics: false })
  const r: Replica = { name, client, metrics, terms: [], overruns: 0, elector: undefined as unknown as LeaderElector }
  r.elector = new LeaderElector({
    client,
    namespace: 'enlist-system',
    name: 'enlist-controller',
    identity: name,
    ...TIMING,
    log: silentLogger(),
    metrics,
    onStartedLeading: (signal) => {
      const term: Replica['terms'][number] = { start: Date.now() }
      r.terms.push(term)
      signal.addEventListener('abort', () => (term.signalAt = Date.now()), { once: true })
    },
    onStoppedLeading: async () => {
      if (opts.stopMs) await new Promise((res) => setTimeout(res, opts.stopMs))
      const term = r.terms.at(-1)
      if (term) term.stop = Date.now()
    },
    onStopOverrun: () => r.overruns++,
  })
  return r
}

const leaderGauge = async (r: Replica): Promise<number> => (await r.metrics.leader.get()).values[0]?.value ?? 0

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test('a partitioned leader stops its work before the lease can pass; never two leaders', async (t) => {
  const store = new LeaseStore()
  const a = replica('a', store)
  const b = replica('b', store)
  a.elector.start()
  await until('a leads', () => a.elector.isLeader)
  b.elector.start()
  t.teardown(async () => {
    a.client.partitioned = false
    await Promise.all([a.elector.stop(), b.elector.stop()])
  })

  let both = 0
  let samples = 0
  const sampler = setInterval(() => {
    void Promise.all([leaderGauge(a), leaderGauge(b)]).then(([x, y]) => {
      samples++
      if (x === 1 && y === 1) both++
    })
  }, 10)
  t.teardown(() => clearInterval(sampler))

  await new Promise((r) => setTimeout(r, 1000)) // a few renewals
  const partitionedAt = Date.now()
  a.client.partitioned = true
  await until('b takes over', () => b.elector.isLeader)
  const tookOver = Date.now()
  await new Promise((r) => setTimeout(r, 500))
  clearInterval(sampler)

  const aTerm = a.terms[0]!
  const stepDown = aTerm.signalAt! - partitionedAt
  t.comment(`partitioned leader: work signalled ${stepDown} ms and stopped ${aTerm.stop! - partitionedAt} ms after the partition; the other took over after ${tookOver - partitionedAt} ms (lease 3 s, renew deadline 2 s, retry 0.3 s)`)
  t.ok(aTerm.stop !== undefined && aTerm.signalAt !== undefined, "a's work was told to stop, and stopped")
  t.ok(stepDown <= TIMING.renewDeadlineMs + 500, `stepped down within the renew deadline (${stepDown} ms)`)
  t.ok(aTerm.stop! < b.terms[0]!.start, `a's work stopped ${b.terms[0]!.start - aTerm.stop!} ms before b's began`)
  t.ok(tookOver - partitionedAt >= TIMING.leaseDurationMs - TIMING.retryPeriodMs, 'b waited out a lease duration')
  t.equal(both, 0, `never both leading, in ${samples} samples of enlist_leader`)
  t.equal(await leaderGauge(a), 0)
  t.equal(a.overruns, 0)

  // the partition heals: a finds b holding the lease and follows
  a.client.partitioned = false
  await new Promise((r) => setTimeout(r, 1000))
  t.notOk(a.elector.isLeader)
  t.ok(b.elector.isLeader)
  t.equal(store.lease?.spec.holderIdentity, 'b')
})

t.test('starting the work does not hold up renewals', async (t) => {
  const store = new LeaseStore()
  const client = new FakeClient(store)
  const e = new LeaderElector({
    client,
    namespace: 'n',
    name: 'l',
    identity: 'slow-starter',
    ...TIMING,
    log: silentLogger(),
    metrics: createMetrics({ defaultMetrics: false }),
    onStartedLeading: () => new Promise<void>(() => undefined), // e.g. waiting on a cache that never syncs
    onStoppedLeading: () => undefined,
  })
  e.start()
  await until('leading', () => e.isLeader)
  const rv = store.rv
  await new Promise((r) => setTimeout(r, 1500))
  t.ok(store.rv >= rv + 3, `renewed ${store.rv - rv} times in 1.5 s while the work was still starting`)
  await e.stop()
})

t.test('a clean stop releases the lease: the other replica leads at once', async (t) => {
  const store = new LeaseStore()
  const a = replica('a', store)
  const b = replica('b', store)
  a.elector.start()
  await until('a leads', () => a.elector.isLeader)
  b.elector.start()
  await new Promise((r) => setTimeout(r, 500))
  const stopped = Date.now()
  await a.elector.stop()
  t.ok(a.terms[0]!.stop! <= Date.now(), 'the work stopped before the release')
  await until('b leads', () => b.elector.isLeader)
  t.ok(Date.now() - stopped < TIMING.leaseDurationMs, `handed over in ${Date.now() - stopped} ms, under a lease duration`)
  await b.elector.stop()
})

t.test('work that will not stop before the lease could pass is reported (serve exits)', async (t) => {
  const store = new LeaseStore()
  const a = replica('a', store, { stopMs: 5000 })
  a.elector.start()
  await until('a leads', () => a.elector.isLeader)
  a.client.partitioned = true
  await until('the overrun', () => a.overruns > 0, 10_000)
  t.equal(a.overruns, 1)
  t.equal(await leaderGauge(a), 0)
  a.client.partitioned = false
  await a.elector.stop()
})

t.test('the timings must leave room to step down', async (t) => {
  const store = new LeaseStore()
  t.throws(() => new LeaderElector({ client: new FakeClient(store), namespace: 'n', name: 'l', identity: 'x', leaseDurationMs: 2000, renewDeadlineMs: 2000, retryPeriodMs: 100, log: silentLogger(), metrics: createMetrics({ defaultMetrics: false }), onStartedLeading: () => undefined, onStoppedLeading: () => undefined }), /retryPeriod < renewDeadline < leaseDuration/)
})
