// Leader election against an in-memory Lease API whose calls can hang (a partition): the
// leader steps down, and its work has stopped, before another replica can take the lease;
// never two leaders at once; a clean stop hands over at once; a stuck stop is caught. And the
// election itself: an expired lease taken over, a renewed one never, renewals, a lease
// lost to another holder, and 409s on update and on create.
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
  /** Calls by verb. */
  readonly verbs = { get: 0, create: 0, replace: 0 }
  /** The next this many replaces fail with 409 Conflict (another writer got in between). */
  conflicts = 0
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
    this.verbs.get++
    return this.call(opts, () => {
      if (!this.store.lease) throw new KubeApiError(404, 'NotFound', 'no lease', 'GET', 'lease')
      return structuredClone(this.store.lease) as T
    })
  }

  create<T>(_path: string, body: unknown, _q?: unknown, opts?: CallOptions): Promise<T> {
    this.verbs.create++
    return this.call(opts, () => {
      if (this.store.lease) throw new KubeApiError(409, 'AlreadyExists', 'exists', 'POST', 'lease')
      this.store.lease = { ...(structuredClone(body) as Lease) }
      this.store.lease.metadata.resourceVersion = String(++this.store.rv)
      return structuredClone(this.store.lease) as T
    })
  }

  replace<T>(_path: string, body: unknown, opts?: CallOptions): Promise<T> {
    this.verbs.replace++
    return this.call(opts, () => {
      if (this.conflicts > 0) {
        this.conflicts--
        throw new KubeApiError(409, 'Conflict', 'the object has been modified', 'PUT', 'lease')
      }
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

/** A replica started on a free lease and leading; stopped with the test. */
async function leading(t: { teardown(fn: () => unknown): void }, name: string, store: LeaseStore): Promise<Replica> {
  const r = replica(name, store)
  r.elector.start()
  t.teardown(() => r.elector.stop())
  await until(`${name} leads`, () => r.elector.isLeader)
  return r
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

  // enlist_leader of both, sampled through the handover: when, and whether both were 1
  const samples: Array<{ at: number; both: boolean }> = []
  const sampler = setInterval(() => {
    void Promise.all([leaderGauge(a), leaderGauge(b)]).then(([x, y]) => samples.push({ at: Date.now(), both: x === 1 && y === 1 }))
  }, 10)
  t.teardown(() => clearInterval(sampler))

  const rv = store.rv
  await until('a few renewals', () => store.rv >= rv + 3)
  const partitionedAt = Date.now()
  a.client.partitioned = true
  await until('b takes over', () => b.elector.isLeader)
  const tookOver = Date.now()
  await until('samples after the takeover', () => samples.filter((s) => s.at > tookOver).length >= 5)
  clearInterval(sampler)

  const aTerm = a.terms[0]!
  const stepDown = aTerm.signalAt! - partitionedAt
  t.comment(`partitioned leader: work signalled ${stepDown} ms and stopped ${aTerm.stop! - partitionedAt} ms after the partition; the other took over after ${tookOver - partitionedAt} ms (lease 3 s, renew deadline 2 s, retry 0.3 s)`)
  t.ok(aTerm.stop !== undefined && aTerm.signalAt !== undefined, "a's work was told to stop, and stopped")
  // order, not elapsed time (a busy machine stretches every interval): a stepped down, and its
  // work stopped, before b began to lead
  t.ok(aTerm.signalAt! <= aTerm.stop! && aTerm.stop! < b.terms[0]!.start, `a stepped down and its work stopped ${b.terms[0]!.start - aTerm.stop!} ms before b's began`)
  // a lower bound: load only lengthens it
  t.ok(tookOver - partitionedAt >= TIMING.leaseDurationMs - TIMING.retryPeriodMs, 'b waited out a lease duration')
  const during = samples.filter((s) => s.at >= partitionedAt && s.at <= tookOver).length
  t.ok(samples.length > 0 && during > 0, `enlist_leader sampled ${samples.length} times, ${during} of them between the partition and the takeover`)
  t.equal(samples.filter((s) => s.both).length, 0, `never both leading, in ${samples.length} samples of enlist_leader`)
  t.equal(await leaderGauge(a), 0)
  t.equal(a.overruns, 0)

  // the partition heals: a finds b holding the lease and follows (after two more attempts of
  // its own, not after a fixed wait)
  a.client.partitioned = false
  const gets = a.client.verbs.get
  await until('a tries twice after the partition heals', () => a.client.verbs.get >= gets + 2)
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
  // renewals, counted, rather than so many in a wall-clock window: a held-up elector never renews
  await until('three renewals while the work is still starting', () => store.rv >= rv + 3)
  t.ok(store.rv >= rv + 3, `renewed ${store.rv - rv} times while the work was still starting`)
  await e.stop()
})

t.test('a clean stop releases the lease: the other replica leads at once', async (t) => {
  const store = new LeaseStore()
  const a = replica('a', store)
  const b = replica('b', store)
  a.elector.start()
  await until('a leads', () => a.elector.isLeader)
  b.elector.start()
  await until('b has found the lease held', () => b.client.verbs.get >= 2)
  const stopped = Date.now()
  await a.elector.stop()
  t.ok(a.terms[0]!.stop! <= Date.now(), 'the work stopped before the release')
  t.equal(store.lease?.spec.holderIdentity, null, 'the lease released')
  // at once: b leads on its next attempt or the one after (one may have read the lease before
  // the release), where waiting out the lease would take leaseDuration / retryPeriod = 10
  const gets = b.client.verbs.get
  await until('b leads', () => b.elector.isLeader)
  t.ok(b.client.verbs.get - gets <= 2, `handed over after ${b.client.verbs.get - gets} attempts of b's (${Date.now() - stopped} ms), not a lease duration's`)
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

/** Another replica's lease, as it would have written it; `renew` moves its renewTime on. */
function foreignLease(store: LeaseStore, holder: string, durationSeconds: number, transitions = 4): { renew: () => void } {
  const now = new Date().toISOString()
  store.lease = {
    metadata: { name: 'enlist-controller', namespace: 'enlist-system', resourceVersion: String(++store.rv) },
    spec: { holderIdentity: holder, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: transitions },
  }
  return {
    renew: () => {
      if (store.lease?.spec.holderIdentity !== holder) return
      store.lease = { ...store.lease, metadata: { ...store.lease.metadata, resourceVersion: String(++store.rv) }, spec: { ...store.lease.spec, renewTime: new Date().toISOString() } }
    },
  }
}

t.test('a lease its holder stopped renewing is taken over, after a whole lease duration observed', async (t) => {
  const store = new LeaseStore()
  foreignLease(store, 'crashed', 1) // its holder is gone: nobody renews it
  const a = replica('a', store)
  const started = Date.now()
  a.elector.start()
  t.teardown(() => a.elector.stop())
  await until('a leads', () => a.elector.isLeader, 5000)
  const took = Date.now() - started
  t.ok(took >= 1000, `waited out the lease's own duration (1 s) on its own clock before taking it (${took} ms)`)
  t.equal(store.lease?.spec.holderIdentity, 'a', 'a holds the lease')
  t.equal(store.lease?.spec.leaseTransitions, 5, 'a transition counted')
  t.equal(store.lease?.spec.leaseDurationSeconds, 3, 'a writes its own lease duration')
  t.ok(Date.parse(String(store.lease?.spec.acquireTime)) >= started, 'acquireTime is the takeover, not the old holder\'s')
  t.equal(a.terms.length, 1, 'the leader-only work started once')
  t.equal(await leaderGauge(a), 1, 'enlist_leader is 1')
})

t.test('a lease its holder keeps renewing is never taken, however long the wait', async (t) => {
  const store = new LeaseStore()
  const other = foreignLease(store, 'other', 1)
  const renewing = setInterval(other.renew, 200)
  t.teardown(() => clearInterval(renewing))
  const a = replica('a', store)
  a.elector.start()
  t.teardown(() => a.elector.stop())
  // eight reads of a's, 300 ms apart: over two lease durations of the holder's, counted by a's
  // own attempts rather than a wall-clock sleep a busy machine could cut short of them
  await until('a has read the lease eight times', () => a.client.verbs.get >= 8)
  t.notOk(a.elector.isLeader, 'a does not lead')
  t.equal(a.terms.length, 0, 'its leader-only work never started')
  t.equal(store.lease?.spec.holderIdentity, 'other', 'the holder keeps its lease')
  t.equal(a.client.verbs.replace, 0, 'a never tried to write the lease')
  t.ok(a.client.verbs.get >= 5, `a kept watching it (${a.client.verbs.get} reads)`)
  t.equal(await leaderGauge(a), 0)

  // the holder stops renewing: now a takes over
  clearInterval(renewing)
  await until('a leads once the renewals stop', () => a.elector.isLeader, 5000)
  t.equal(store.lease?.spec.holderIdentity, 'a')
})

t.test('a leader renews: renewTime moves on, acquireTime and transitions stay, the work is not restarted', async (t) => {
  const store = new LeaseStore()
  const a = await leading(t, 'a', store)
  const first = structuredClone(store.lease!.spec)
  const renewTimes = new Set<unknown>([first.renewTime])
  const rv = store.rv
  await until('four renewals', () => {
    renewTimes.add(store.lease!.spec.renewTime)
    return store.rv >= rv + 4
  })
  t.ok(renewTimes.size >= 4, `renewTime moved on with each renewal (${renewTimes.size} values in ${store.rv - rv} renewals)`)
  t.equal(store.lease!.spec.acquireTime, first.acquireTime, 'acquireTime kept')
  t.equal(store.lease!.spec.leaseTransitions, 0, 'no transition counted for renewals')
  t.equal(store.lease!.spec.holderIdentity, 'a')
  t.ok(a.elector.isLeader)
  t.equal(a.terms.length, 1, 'the work started once')
  t.equal(a.terms[0]!.signalAt, undefined, 'and was never told to stop')
  t.equal((await a.metrics.leaderRenewFailures.get()).values[0]?.value ?? 0, 0, 'no renew failures')
})

t.test('a leader that finds another holder on the lease steps down and leaves it to them', async (t) => {
  const store = new LeaseStore()
  const a = await leading(t, 'a', store)
  // someone else wrote the lease (an operator, or a replica that judged it expired)
  const usurper = foreignLease(store, 'usurper', 3, 7)
  const renewing = setInterval(usurper.renew, 200)
  t.teardown(() => clearInterval(renewing))
  const usurped = Date.now()
  const attempts = a.client.verbs.replace + a.client.verbs.get
  await until('a steps down', () => !a.elector.isLeader, 5000)
  // counted in a's calls, not in milliseconds: its next renewal (a read, perhaps a write in
  // flight) finds the other holder; waiting out the renew deadline would take six more
  const calls = a.client.verbs.replace + a.client.verbs.get - attempts
  t.ok(calls <= 3, `at its next renewal (${calls} calls, ${Date.now() - usurped} ms), not at the renew deadline (2 s)`)
  await until('the work stopped', () => a.terms[0]?.stop !== undefined, 2000)
  t.ok(a.terms[0]!.signalAt !== undefined, 'the leader-only work was signalled')
  t.ok(a.terms[0]!.stop! >= a.terms[0]!.signalAt!, 'and then stopped')
  t.equal(await leaderGauge(a), 0, 'enlist_leader is 0')
  const replaces = a.client.verbs.replace
  const reads = a.client.verbs.get
  await until('a has read the lease three more times', () => a.client.verbs.get >= reads + 3)
  t.equal(store.lease?.spec.holderIdentity, 'usurper', "a left the other holder's lease alone")
  t.equal(a.client.verbs.replace, replaces, 'and wrote nothing to it')
  t.equal(a.terms.length, 1, 'and did not start leading again')
  t.equal(a.overruns, 0)
})

t.test('a 409 on a renewal is not a lost lease: the leader reads it again and renews', async (t) => {
  const store = new LeaseStore()
  const a = await leading(t, 'a', store)
  const replaces = a.client.verbs.replace
  a.client.conflicts = 2
  await until('the two conflicts answered', () => a.client.conflicts === 0 && a.client.verbs.replace >= replaces + 2)
  const rv = store.rv
  await until('a renewal after them', () => store.rv > rv)
  t.ok(a.elector.isLeader, 'still leading')
  t.equal(a.terms.length, 1, 'the work was not restarted')
  t.equal(a.terms[0]!.signalAt, undefined, 'nor told to stop')
  t.equal(store.lease?.spec.holderIdentity, 'a')
  t.equal((await a.metrics.leaderRenewFailures.get()).values[0]?.value ?? 0, 0, 'a conflict is not counted as a renew failure')
})

t.test('two replicas creating the lease at once: one wins, the other (409) follows', async (t) => {
  const store = new LeaseStore()
  const a = replica('a', store)
  const b = replica('b', store)
  a.elector.start()
  b.elector.start()
  t.teardown(() => Promise.all([a.elector.stop(), b.elector.stop()]))
  await until('someone leads', () => a.elector.isLeader || b.elector.isLeader)
  t.equal(a.client.verbs.create + b.client.verbs.create, 2, 'both tried to create it')
  const reads = a.client.verbs.get + b.client.verbs.get
  await until('both have read the lease again', () => a.client.verbs.get + b.client.verbs.get >= reads + 4)
  t.equal([a, b].filter((r) => r.elector.isLeader).length, 1, 'exactly one leads')
  const leader = a.elector.isLeader ? a : b
  const follower = leader === a ? b : a
  t.equal(store.lease?.spec.holderIdentity, leader.name, 'the lease names the leader')
  t.equal(follower.terms.length, 0, "the follower's work never started")
  t.equal((await follower.metrics.leaderRenewFailures.get()).values[0]?.value ?? 0, 0, 'losing the race to create is no failure')
  t.equal(store.lease?.spec.leaseTransitions, 0)
})
