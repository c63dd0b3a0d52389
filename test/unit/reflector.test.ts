// The reflector's pacing and recovery against a fake apiserver on a fake clock: whatever the
// apiserver does, it never storms (client-go's few requests per second at most), it relists
// only when it must, and its store and the pod cache's uid index stay right.
import t from 'tap'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { type CallOptions, DEFAULT_MAX_RESPONSE_BYTES, KubeApiError, type Query } from '../../src/kube/client.js'
import { POD_LIST_PAGE_SIZE } from '../../src/kube/pod-ref.js'
import { ManagedPods } from '../../src/kube/pods.js'
import { type ListWatchClient, PAGE_MAX_BYTES, PAGE_TARGET_BYTES, Reflector } from '../../src/kube/reflector.js'
import type { Clock } from '../../src/lib/backoff.js'
import { silentLogger } from '../../src/log.js'
import { createMetrics } from '../../src/metrics.js'

/** Virtual time: only sleeps move it. Past `until`, sleeps hold until the reflector stops. */
class FakeClock implements Clock {
  now_ = 0
  sleeps: number[] = []
  private reachedResolve!: () => void
  readonly reached = new Promise<void>((r) => (this.reachedResolve = r))
  constructor(readonly until: number) {}
  now(): number {
    return this.now_
  }
  advance(ms: number): void {
    this.now_ += ms
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return
    this.sleeps.push(ms)
    this.now_ += ms
    await new Promise((r) => setImmediate(r))
    if (this.now_ >= this.until) {
      this.reachedResolve()
      await new Promise<void>((r) => signal?.addEventListener('abort', () => r(), { once: true }))
    }
  }
}

type WatchMode = 'end-at-once' | 'gone' | 'throttled' | 'last-and-deliver' | 'hang' | 'refused'

interface Req {
  verb: 'LIST' | 'WATCH'
  at: number
  query: Query
}

/** An apiserver holding ConfigMaps (or pods), with a watch that does what `watchMode` says. */
class FakeApi implements ListWatchClient {
  readonly metrics = createMetrics({ defaultMetrics: false })
  requests: Req[] = []
  objects: Array<Record<string, unknown>> = []
  rv = 100
  watchMode: WatchMode = 'end-at-once'
  continueGone = false
  /** Answer this many continue requests with 410, then serve them. */
  continueGoneTimes = 0
  retryAfterMs = 5000
  onWatch?: (query: Query, emit: (e: unknown) => void) => void
  /** Every list answer: objects asked for, its size in bytes, and whether the client cut it. */
  pages: Array<{ limit: number; bytes: number; cut: boolean }> = []
  /** GETs of one object (a pod read again). */
  reads: string[] = []
  private readonly sizes = new WeakMap<object, number>()

  constructor(private readonly clock: FakeClock) {}

  async get<T>(path: string, query: Query = {}, opts?: CallOptions): Promise<T> {
    await new Promise((r) => setImmediate(r)) // as a real request, it yields to the event loop
    const one = this.objects.find((o) => path.endsWith(`/${(o.metadata as { name: string }).name}`))
    if (one) {
      this.reads.push(path)
      return structuredClone(one) as T
    }
    this.requests.push({ verb: 'LIST', at: this.clock.now(), query })
    if (query.continue !== undefined && (this.continueGone || this.continueGoneTimes-- > 0)) throw new KubeApiError(410, 'Expired', 'The provided continue parameter is too old', 'GET', path)
    const limit = Number(query.limit ?? 0)
    const from = Number(query.continue ?? 0)
    const items = limit ? this.objects.slice(from, from + limit) : this.objects
    const more = limit > 0 && from + limit < this.objects.length
    // as KubeClient reads an answer: cut past the cap (the call's, or the client's 64 MiB)
    const bytes = items.reduce((n, o) => n + this.size(o) + 1, 100)
    const cut = bytes > Math.min(opts?.maxBytes ?? Infinity, DEFAULT_MAX_RESPONSE_BYTES)
    this.pages.push({ limit, bytes, cut })
    if (cut) throw new KubeApiError(0, 'ResponseTooLarge', 'the answer exceeds the cap', 'GET', path)
    opts?.onBytes?.(bytes)
    return { metadata: { resourceVersion: String(this.rv), ...(more ? { continue: String(from + limit) } : {}) }, items } as T
  }

  private size(o: object): number {
    let n = this.sizes.get(o)
    if (n === undefined) this.sizes.set(o, (n = JSON.stringify(o).length))
    return n
  }

  async watch(path: string, query: Query, onEvent: (event: unknown) => void, signal: AbortSignal): Promise<void> {
    await new Promise((r) => setImmediate(r))
    this.requests.push({ verb: 'WATCH', at: this.clock.now(), query })
    this.onWatch?.(query, onEvent)
    switch (this.watchMode) {
      case 'end-at-once':
        return
      case 'gone':
        throw new KubeApiError(410, 'Expired', 'too old resource version', 'GET', path)
      case 'throttled':
        throw new KubeApiError(429, 'TooManyRequests', 'slow down', 'GET', path, this.retryAfterMs)
      case 'refused':
        throw new KubeApiError(0, 'ConnectionRefused', 'connect ECONNREFUSED', 'GET', path)
      case 'last-and-deliver':
        this.clock.advance(60_000)
        onEvent({ type: 'BOOKMARK', object: { metadata: { resourceVersion: String(++this.rv) } } })
        return
      case 'hang':
        // a stop may come before the watch began: an abort that already happened fires no event
        if (!signal.aborted) await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }))
    }
  }

  count(verb: 'LIST' | 'WATCH'): number {
    return this.requests.filter((r) => r.verb === verb).length
  }
}

const cm = (name: string, uid = `uid-${name}`, rv = '1'): Record<string, unknown> => ({ metadata: { name, namespace: 'n', uid, resourceVersion: rv } })

function setup(until: number, opts: { pageSize?: number } = {}) {
  const clock = new FakeClock(until)
  const api = new FakeApi(clock)
  api.objects = [cm('a'), cm('b'), cm('c')]
  const r = new Reflector<V1ConfigMap>({ client: api, log: silentLogger(), name: 'test', path: '/api/v1/configmaps', clock, pageSize: opts.pageSize })
  return { clock, api, r }
}

async function runUntil(r: Reflector<V1ConfigMap>, clock: FakeClock): Promise<void> {
  r.start()
  await clock.reached
  await r.stop()
}

t.test('watches that end at once: backed off and relisted, never a storm', async (t) => {
  const { clock, api, r } = setup(20_000)
  await runUntil(r, clock)
  const total = api.requests.length
  t.comment(`watches ending at once: ${total} requests in 20 s of virtual time (${api.count('LIST')} lists, ${api.count('WATCH')} watches); delays ${clock.sleeps.map((s) => (s / 1000).toFixed(1)).join(', ')} s`)
  t.ok(total <= 14, `${total} requests in 20 s, client-go's pace (the unfixed reflector made 18,201)`)
  t.ok(r.synced)
  t.equal(api.count('LIST'), api.count('WATCH'), 'each short watch is followed by a relist, as client-go does')
  clock.sleeps.forEach((s, i) => void t.ok(s >= Math.min(800 * 2 ** i, 30_000) && s < 2 * Math.min(800 * 2 ** i, 30_000), `delay ${i + 1}: ${Math.round(s)} ms, in [d, 2d) of 0.8 s doubling`))
  const failures = (await api.metrics.reflectorFailures.get()).values
  t.equal(failures.find((v) => v.labels.reason === 'short_watch')?.value, clock.sleeps.length, 'each counted as a short watch')
})

t.test('410 on every watch: a relist after a backoff each time', async (t) => {
  const { clock, api, r } = setup(20_000)
  api.watchMode = 'gone'
  await runUntil(r, clock)
  t.comment(`410 on every watch: ${api.requests.length} requests in 20 s`)
  t.ok(api.requests.length <= 14, `${api.requests.length} requests in 20 s (the unfixed reflector: 1,831)`)
  t.ok(clock.sleeps.length >= 3 && clock.sleeps.every((s) => s >= 800))
  t.ok(((await api.metrics.reflectorFailures.get()).values.find((v) => v.labels.reason === 'expired')?.value ?? 0) >= 3)
})

t.test('a continue token that expires starts the list over from its first page, never one unpaged list', async (t) => {
  const once = setup(20_000, { pageSize: 2 })
  once.api.objects = Array.from({ length: 7 }, (_, i) => cm(`o${i}`))
  once.api.continueGoneTimes = 1 // a compaction in the middle of one list
  once.api.watchMode = 'hang'
  once.r.start()
  while (!once.r.synced) await new Promise((res) => setImmediate(res))
  await once.r.stop()
  const pages = once.api.requests.filter((q) => q.verb === 'LIST').map((q) => [q.query.limit, q.query.continue])
  t.same(pages, [[2, undefined], [2, '2'], [2, undefined], [2, '2'], [2, '4'], [2, '6']], 'first page, expired continue, then the whole list again in pages')
  t.equal(once.r.size, 7, 'every object stored')
  t.equal(once.clock.sleeps.length, 0, 'started over at once: no backoff')

  // every continue expires (and every watch fails): bounded, and never an unpaged list
  const { clock, api, r } = setup(20_000, { pageSize: 2 })
  api.objects = Array.from({ length: 7 }, (_, i) => cm(`o${i}`))
  api.continueGone = true
  api.watchMode = 'gone'
  await runUntil(r, clock)
  t.comment(`410 on every continue and every watch: ${api.requests.length} requests in 20 s`)
  t.ok(api.requests.filter((q) => q.verb === 'LIST').every((q) => q.query.limit === 2), 'every list paged')
  t.ok(api.requests.length <= 30, `${api.requests.length} requests in 20 s (the unfixed reflector: 221,001 lists in 1 s)`)
})

t.test('429 and refused connections: back off (at least Retry-After) and watch again, without relisting', async (t) => {
  const { clock, api, r } = setup(60_000)
  api.watchMode = 'throttled'
  api.retryAfterMs = 7000
  await runUntil(r, clock)
  t.equal(api.count('LIST'), 1, 'the resourceVersion is still good: no relist')
  t.ok(clock.sleeps.every((s) => s >= 7000), `every wait honours Retry-After: ${clock.sleeps.map((s) => Math.round(s)).join(', ')} ms`)
  t.ok(api.count('WATCH') <= 10, `${api.count('WATCH')} watches in 60 s`)

  const b = setup(20_000)
  b.api.watchMode = 'refused'
  await runUntil(b.r, b.clock)
  t.equal(b.api.count('LIST'), 1)
  t.ok(b.api.count('WATCH') <= 8, `${b.api.count('WATCH')} watch attempts in 20 s against a refused connection`)
})

t.test('a watch that lasted and delivered is resumed at once from its resourceVersion', async (t) => {
  const { clock, api, r } = setup(10 * 60_000)
  api.watchMode = 'last-and-deliver'
  const seenRv: unknown[] = []
  api.onWatch = (q) => seenRv.push(q.resourceVersion)
  r.start()
  // ten healthy watches of a minute each: no sleeps, one list
  while (api.count('WATCH') < 10) await new Promise((res) => setImmediate(res))
  api.watchMode = 'hang'
  await new Promise((res) => setImmediate(res))
  await r.stop()
  t.equal(api.count('LIST'), 1, 'no relist')
  t.same(clock.sleeps, [], 'no backoff')
  t.same(seenRv.slice(0, 3), ['100', '101', '102'], 'each from the bookmark the last one delivered')
})

t.test('the backoff starts over only after two minutes without a failure', async (t) => {
  const { clock, api, r } = setup(Number.MAX_SAFE_INTEGER)
  r.start()
  while (clock.sleeps.length < 5) await new Promise((res) => setImmediate(res))
  const grown = clock.sleeps.at(-1)!
  // now healthy for ten minutes of watches, then failing again
  api.watchMode = 'last-and-deliver'
  while (api.count('WATCH') < 20) await new Promise((res) => setImmediate(res))
  api.watchMode = 'end-at-once'
  const before = clock.sleeps.length
  while (clock.sleeps.length < before + 1) await new Promise((res) => setImmediate(res))
  await r.stop()
  t.ok(grown >= 12_800, `grown to ${Math.round(grown)} ms while failing`)
  t.ok(clock.sleeps[before]! < 1600, `back to ${Math.round(clock.sleeps[before]!)} ms after a healthy stretch`)

  // but watches that end cleanly after a second or two, with nothing delivered, do not reset it
  const s = setup(Number.MAX_SAFE_INTEGER)
  s.api.onWatch = () => s.clock.advance(1500)
  s.r.start()
  while (s.api.count('WATCH') < 40) await new Promise((res) => setImmediate(res))
  await s.r.stop()
  t.equal(s.clock.sleeps.length, 0, 'a watch that lasted over a second is not a failure (client-go)')
})

/** Whether `p` settles within `turns` turns of the event loop: "at once" without a wall clock. */
async function settlesWithin(p: Promise<unknown>, turns: number): Promise<boolean> {
  let settled = false
  void p.then(() => (settled = true))
  for (let i = 0; i < turns && !settled; i++) await new Promise((res) => setImmediate(res))
  return settled
}

t.test('a stop during a backoff or a hanging watch returns at once', async (t) => {
  const { clock, api, r } = setup(Number.MAX_SAFE_INTEGER)
  api.watchMode = 'hang'
  r.start()
  while (api.count('WATCH') < 1) await new Promise((res) => setImmediate(res))
  const stopped = r.stop()
  t.ok(await settlesWithin(stopped, 20), 'a hanging watch: stop() settles within a few turns of the event loop')
  t.same([clock.now(), clock.sleeps, api.count('WATCH')], [0, [], 1], 'with no time passed, no backoff and no other watch')

  // a backoff that would last until the stop: the clock holds every sleep past `until` (0)
  const b = setup(0)
  b.r.start()
  await b.clock.reached
  t.equal(b.clock.sleeps.length, 1, 'backing off after a short watch')
  const watches = b.api.count('WATCH')
  t.ok(await settlesWithin(b.r.stop(), 20), 'during a backoff: stop() settles within a few turns too')
  t.equal(b.api.count('WATCH'), watches, 'and watches no more')
})

t.test('a relist that finds a namesake with another uid: the old pod is deleted, the uid index is right', async (t) => {
  const clock = new FakeClock(Number.MAX_SAFE_INTEGER)
  const api = new FakeApi(clock)
  const pod = (uid: string, rv: string) => ({ metadata: { name: 'web-0', namespace: 'shop', uid, resourceVersion: rv, labels: { 'enlist.io/managed': 'true' } } })
  api.objects = [pod('uid-old', '5')]
  api.watchMode = 'hang'
  const pods = new ManagedPods(api, silentLogger(), { ring: () => undefined })
  // the reflector inside uses the real clock; make the first watch fail after the swap
  const events: string[] = []
  pods.on({ add: (p) => events.push(`add ${p.metadata?.uid}`), update: (p) => events.push(`update ${p.metadata?.uid}`), delete: (p) => events.push(`delete ${p.metadata?.uid}`) })
  pods.start()
  t.teardown(() => pods.stop())
  while (!pods.synced) await new Promise((res) => setImmediate(res))
  t.equal(pods.byUid('uid-old')?.metadata?.name, 'web-0')
  // while the watch was down the StatefulSet pod was deleted and made again
  api.objects = [pod('uid-new', '9')]
  api.watchMode = 'gone'
  while (!events.includes('add uid-new')) await new Promise((res) => setTimeout(res, 20))
  t.same(events, ['add uid-old', 'delete uid-old', 'add uid-new'], 'a delete of the old pod and an add of the new, never an update')
  t.equal(pods.byUid('uid-old'), undefined, 'the old uid no longer maps to the new pod')
  t.equal(pods.byUid('uid-new')?.metadata.resourceVersion, '9')
})

t.test('the pod cache lists in pages of POD_LIST_PAGE_SIZE, not 500: a page of injected pods is parsed whole', async (t) => {
  const api = new FakeApi(new FakeClock(Number.MAX_SAFE_INTEGER))
  api.objects = Array.from({ length: 2 * POD_LIST_PAGE_SIZE + 1 }, (_, i) => ({ metadata: { name: `web-${i}`, namespace: 'shop', uid: `uid-${i}`, resourceVersion: '5', labels: { 'enlist.io/managed': 'true' } } }))
  api.watchMode = 'hang'
  const pods = new ManagedPods(api, silentLogger(), { ring: () => undefined })
  pods.start()
  while (!pods.synced) await new Promise((res) => setImmediate(res))
  const lists = api.requests.filter((q) => q.verb === 'LIST')
  t.same(lists.map((q) => q.query.limit), [POD_LIST_PAGE_SIZE, POD_LIST_PAGE_SIZE, POD_LIST_PAGE_SIZE], 'three pages for 201 pods')
  t.ok(POD_LIST_PAGE_SIZE <= 100, `${POD_LIST_PAGE_SIZE} pods a page`)
  t.ok(pods.byUid(`uid-${2 * POD_LIST_PAGE_SIZE}`), 'the last page stored')
  await pods.stop()
})

t.test('list pages adapt to the bytes of the last page: pages of huge pods stay far under the answer cap', async (t) => {
  const api = new FakeApi(new FakeClock(Number.MAX_SAFE_INTEGER))
  const MiB = 1024 * 1024
  const big = 'x'.repeat(MiB) // shared: the fake measures, never copies
  const pod = (i: number, huge: boolean) => ({ metadata: { name: `p-${String(i).padStart(4, '0')}`, namespace: 'evil', uid: `uid-${i}`, resourceVersion: '5', labels: { 'enlist.io/managed': 'true' }, annotations: huge ? { pad: big } : {} } })
  // small pods, then a tenant's 1 MiB ones (listed in a row: one namespace), then small again
  api.objects = [...Array.from({ length: 50 }, (_, i) => pod(i, false)), ...Array.from({ length: 150 }, (_, i) => pod(50 + i, true)), ...Array.from({ length: 50 }, (_, i) => pod(200 + i, false))]
  api.watchMode = 'hang'
  const pods = new ManagedPods(api, silentLogger(), { ring: () => undefined })
  pods.start()
  for (let i = 0; i < 2000 && !pods.synced; i++) await new Promise((res) => setImmediate(res))
  const read = api.pages.filter((p) => !p.cut)
  t.comment(`pages (objects asked, MiB, cut): ${api.pages.map((p) => `${p.limit}:${(p.bytes / MiB).toFixed(1)}${p.cut ? '(cut)' : ''}`).join(' ')}`)
  t.ok(pods.synced, 'listed (the unfixed reflector asked 100 pods of 1 MiB at a time: past the 64 MiB cap, every list failed)')
  t.equal(pods.size, 250, 'every pod stored')
  t.ok(read.every((p) => p.bytes <= PAGE_MAX_BYTES), `no page read passed ${PAGE_MAX_BYTES / MiB} MiB (largest ${(Math.max(...read.map((p) => p.bytes)) / MiB).toFixed(1)} MiB)`)
  t.ok(api.pages.every((p) => p.bytes <= DEFAULT_MAX_RESPONSE_BYTES || p.cut), 'none passed the 64 MiB answer cap unread')
  t.ok(api.pages.every((p) => p.limit >= 1 && p.limit <= POD_LIST_PAGE_SIZE), `between 1 and ${POD_LIST_PAGE_SIZE} pods a page`)
  const hugePages = read.filter((p) => p.bytes > 2 * MiB)
  t.ok(hugePages.length > 0 && hugePages.slice(1).every((p) => p.bytes <= PAGE_TARGET_BYTES + MiB), 'once the huge pods were seen, their pages kept to about PAGE_TARGET_BYTES')
  t.ok(api.pages.filter((p) => p.cut).length <= 4, `few pages cut, each where pods grew from one page to the next (${api.pages.filter((p) => p.cut).length})`)
  t.equal(read.at(-1)!.limit, POD_LIST_PAGE_SIZE, 'small pods again: back to full pages')
  await pods.stop()

  // a single object is read whatever its size (up to the client's cap): never asked for fewer than one
  const lone = new FakeApi(new FakeClock(Number.MAX_SAFE_INTEGER))
  lone.objects = [pod(1, false), { ...pod(2, true), metadata: { ...pod(2, true).metadata, annotations: { pad: 'y'.repeat(20 * MiB) } } }]
  lone.watchMode = 'hang'
  const r = new Reflector<V1ConfigMap>({ client: lone, log: silentLogger(), name: 'lone', path: '/api/v1/pods', pageSize: 100 })
  r.start()
  for (let i = 0; i < 2000 && !r.synced; i++) await new Promise((res) => setImmediate(res))
  t.equal(r.size, 2, `a 20 MiB object listed alone (pages: ${lone.pages.map((p) => `${p.limit}${p.cut ? ' cut' : ''}`).join(', ')})`)
  await r.stop()
})

t.test('a seal whose key arrives later: the pod is read again, not kept whole meanwhile', async (t) => {
  const { sealedStatus } = await import('../helpers/fake-cluster.js')
  const { TEST_KEYS } = await import('../helpers/fixtures.js')
  const api = new FakeApi(new FakeClock(Number.MAX_SAFE_INTEGER))
  const status = sealedStatus({ namespace: 'shop', serviceAccount: 'orders', service: 'orders', metadata: {}, dependsOn: [] }, TEST_KEYS.signing)
  api.objects = [{ metadata: { name: 'web-0', namespace: 'shop', uid: 'uid-0', resourceVersion: '5', labels: { 'enlist.io/managed': 'true' }, annotations: { 'enlist.io/status': status } } }]
  api.watchMode = 'hang'
  const held: { ring?: typeof TEST_KEYS.ring } = {}
  const pods = new ManagedPods(api, silentLogger(), { ring: () => held.ring })
  pods.start()
  while (!pods.synced) await new Promise((res) => setImmediate(res))
  t.same(pods.byUid('uid-0')?.enlist.pending, { key: TEST_KEYS.signing.id }, 'no key yet: only its id')
  held.ring = TEST_KEYS.ring
  pods.keysChanged(TEST_KEYS.ring)
  await pods.settled()
  t.same(api.reads, ['/api/v1/namespaces/shop/pods/web-0'], 'read again once')
  t.equal(pods.byUid('uid-0')?.enlist.sealed?.decision.service, 'orders', 'and its seal opened')
  pods.keysChanged(TEST_KEYS.ring)
  await pods.settled()
  t.equal(api.reads.length, 1, 'a seal already open is not read again')
  await pods.stop()
})
