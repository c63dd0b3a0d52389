// The relay's idempotency rules against a real HTTP CMDB (test/harness/cmdb.ts) through the
// http backend's client: any order of duplicates, redeliveries and late re-publishes leaves
// the CMDB holding exactly the pods with a registered and no deregistered event. Several
// clusters feeding one CMDB: a relay with --cluster skips the others' events, and its
// rebuild changes only its own cluster's entries.
import t from 'tap'
import { createHash } from 'node:crypto'
import { deregisteredEvent, registeredEvent, type RegistrationEvent } from '../../src/events/envelope.js'
import { HttpBackend } from '../../src/registry/http.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { applyEvent, RecentIds, rebuild, type Tombstones } from '../../src/relay/apply.js'
import { Relay, relayMetrics } from '../../src/relay/relay.js'
import type { Delivery, EventSource } from '../../src/relay/source.js'
import { durableName, relayFlags, validateRelayOptions } from '../../src/cli/relay.js'
import { parseFlags } from '../../src/cli/flags.js'
import { OptionError } from '../../src/lib/errors.js'
import { captureLogger } from '../helpers/fake-cluster.js'
import { startCmdb } from '../harness/cmdb.js'

const cmdb = await startCmdb()
t.teardown(() => cmdb.close())
const client = new HttpBackend({ name: 'cmdb', type: 'http', sweep: false, url: cmdb.url, allowInsecureHTTP: true, timeoutSeconds: 2, maxResponseBytes: 1 << 20, maxListPages: 10, caBundle: '', headersFromSecret: '', retry: { initialDelayMs: 10, maxDelayMs: 100 }, advertise: { mode: 'podIP', nodeAddressTypes: ['InternalIP'] } }, async () => ({}))
t.teardown(() => client.close())

/** A pod UID for a short name (the http backend takes nothing else as a path). */
const U = (name: string): string => {
  const h = createHash('sha256').update(name).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`
}
const rec = (name: string, cluster?: string): RegistryRecord => ({ uid: U(name), namespace: 'shop', pod: `p-${name}`, service: 'orders', ip: '10.0.0.1', ips: ['10.0.0.1'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: '2026-11-23T10:00:00Z', advertised: { mode: 'podIP', address: '10.0.0.1', ports: [] }, ...(cluster ? { cluster } : {}) })
const reg = (uid: string) => registeredEvent('/c', rec(uid))
const dereg = (uid: string) => deregisteredEvent('/c', rec(uid), '2026-11-23T11:00:00Z')

function memoryTombstones(): Tombstones & { set: Set<string> } {
  const set = new Set<string>()
  return { set, has: async (uid) => set.has(uid), add: async (uid) => void set.add(uid) }
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs]
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]))
}

t.test('every order of registered, its duplicate and deregistered ends with the pod gone', async (t) => {
  const orders = permutations<RegistrationEvent>([reg('a'), reg('a'), dereg('a')])
  for (const order of orders) {
    cmdb.records.clear()
    const tombs = memoryTombstones()
    const recent = new RecentIds()
    for (const e of order) await applyEvent(e, client, tombs, recent)
    t.same([...cmdb.records.keys()], [], order.map((e) => e.type.split('.').pop()).join(' → '))
  }
})

t.test('a live pod\'s duplicates leave it registered once; a late duplicate after deregistration is stale', async (t) => {
  cmdb.records.clear()
  const tombs = memoryTombstones()
  const recent = new RecentIds()
  t.same(await applyEvent(reg('b'), client, tombs, recent), { kind: 'registered', outcome: 'applied' })
  t.same(await applyEvent(reg('b'), client, tombs, recent), { kind: 'registered', outcome: 'duplicate' }, 'a redelivery costs no CMDB call')
  t.same([...cmdb.records.keys()], [U('b')])
  t.same(await applyEvent(dereg('b'), client, tombs, recent), { kind: 'deregistered', outcome: 'applied' })
  // after a restart the relay has forgotten recent ids; the tombstone still holds
  t.same(await applyEvent(reg('b'), client, tombs, new RecentIds()), { kind: 'registered', outcome: 'stale' })
  t.same([...cmdb.records.keys()], [])
  t.same(await applyEvent(dereg('b'), client, tombs, new RecentIds()), { kind: 'deregistered', outcome: 'applied' }, 'deleting twice is fine (404 is done)')
})

t.test('two relays racing: a deregistration applied between the check and the PUT is undone', async (t) => {
  cmdb.records.clear()
  const tombs = memoryTombstones()
  // relay B applies the deregistration while relay A is between its check and its PUT
  const racing: Tombstones = {
    has: async (uid) => tombs.has(uid),
    add: (uid, at) => tombs.add(uid, at),
  }
  const cmdbA = {
    register: async (r: RegistryRecord) => {
      await applyEvent(deregisteredEvent('/c', r, '2026-11-23T11:00:00Z'), client, tombs, new RecentIds()) // B, first
      await client.register(r) // A's PUT lands after B's DELETE
    },
    deregister: (ref: { uid: string; namespace: string; pod: string }) => client.deregister(ref),
    list: () => client.list(),
  }
  t.same(await applyEvent(reg('c'), cmdbA, racing, new RecentIds()), { kind: 'registered', outcome: 'stale' })
  t.same([...cmdb.records.keys()], [], 'A looked again after its PUT and deleted')
})

t.test('many pods, shuffled with duplicates: the CMDB equals registered minus deregistered', async (t) => {
  cmdb.records.clear()
  const events: RegistrationEvent[] = []
  for (let i = 0; i < 40; i++) {
    events.push(reg(`p${i}`), reg(`p${i}`))
    if (i % 3 === 0) events.push(dereg(`p${i}`), dereg(`p${i}`))
  }
  // a fixed shuffle (no chance failures)
  let seed = 42
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[events[i], events[j]] = [events[j]!, events[i]!]
  }
  const tombs = memoryTombstones()
  const recent = new RecentIds(8) // small: most duplicates reach the CMDB again
  for (const e of events) await applyEvent(e, client, tombs, recent)
  const want = Array.from({ length: 40 }, (_, i) => i).filter((i) => i % 3 !== 0).map((i) => U(`p${i}`)).sort()
  t.same([...cmdb.records.keys()].sort(), want)
})

t.test('rebuild: PUT the snapshot, DELETE what it lacks, skip tombstoned', async (t) => {
  cmdb.records.clear()
  cmdb.records.set(U('ghost'), rec('ghost', 'c1') as unknown as Record<string, unknown>)
  cmdb.records.set(U('x1'), rec('x1', 'c1') as unknown as Record<string, unknown>)
  const tombs = memoryTombstones()
  tombs.set.add(U('x3'))
  let reads = 0
  const snapshot = async () => {
    reads++
    // the second read (after listing the CMDB) also holds x4, registered meanwhile
    return reads === 1 ? [rec('x1', 'c1'), rec('x2', 'c1'), rec('x3', 'c1')] : [rec('x1', 'c1'), rec('x2', 'c1'), rec('x4', 'c1')]
  }
  cmdb.records.set(U('x4'), rec('x4', 'c1') as unknown as Record<string, unknown>)
  t.same(await rebuild(snapshot, client, tombs, 'c1'), { put: 2, deleted: 1, stale: 1, skipped: 0 })
  t.same([...cmdb.records.keys()].sort(), ['x1', 'x2', 'x4'].map(U).sort(), 'ghost gone; x4, PUT by the live stream meanwhile, kept')
})

t.test('two source clusters, one CMDB: a rebuild changes only the entries carrying its cluster', async (t) => {
  cmdb.records.clear()
  const put = (r: RegistryRecord) => cmdb.records.set(r.uid, structuredClone(r) as unknown as Record<string, unknown>)
  // cluster a: a live pod, and a stale entry of a pod gone while the relay was down
  put(rec('a-live', 'a'))
  put(rec('a-stale', 'a'))
  // cluster b: its live pods, one of them in neither snapshot the relay of a reads
  put(rec('b-live', 'b'))
  put(rec('b-only-in-cmdb', 'b'))
  // written by an enlist before marks, or by someone else: unmarked
  put(rec('unmarked'))
  const before = structuredClone(Object.fromEntries(cmdb.records))
  const tombs = memoryTombstones()
  const sent = cmdb.requests.length

  // a's relay reads its own cluster's snapshot (nats: its keys only), or a snapshot holding
  // another cluster's records too (a shared bucket read whole): those are skipped
  const snapshotA = async () => [rec('a-live', 'a'), rec('a-new', 'a'), rec('b-live', 'b'), rec('legacy')]
  t.same(await rebuild(snapshotA, client, tombs, 'a'), { put: 2, deleted: 1, stale: 0, skipped: 2 })
  t.notOk(cmdb.records.has(U('a-stale')), "a's stale entry removed")
  t.same(cmdb.records.get(U('a-new')), rec('a-new', 'a'), "a's missing entry PUT, with its mark")
  for (const n of ['b-live', 'b-only-in-cmdb', 'unmarked']) t.same(cmdb.records.get(U(n)), before[U(n)], `${n}: left alone, byte for byte`)
  t.notOk(cmdb.records.has(U('legacy')), 'an unmarked snapshot record is not PUT by a relay of a named cluster')
  const deletes = cmdb.requests.slice(sent).filter((r) => r.method === 'DELETE').map((r) => r.path.split('/').pop())
  t.same(deletes, [U('a-stale')], 'the one DELETE was of its own cluster')

  // b's relay, in turn, leaves a's entries alone
  const afterA = structuredClone(Object.fromEntries(cmdb.records))
  t.same(await rebuild(async () => [rec('b-live', 'b')], client, tombs, 'b'), { put: 1, deleted: 1, stale: 0, skipped: 0 })
  t.notOk(cmdb.records.has(U('b-only-in-cmdb')))
  for (const n of ['a-live', 'a-new', 'unmarked']) t.same(cmdb.records.get(U(n)), afterA[U(n)], `${n}: left alone by b's rebuild`)

  // no cluster (a relay's first start without --cluster): PUT only, nothing deleted
  const count = cmdb.records.size
  t.same(await rebuild(async () => [rec('a-live', 'a')], client, tombs), { put: 1, deleted: 0, stale: 0, skipped: 0 })
  t.equal(cmdb.records.size, count, 'nothing removed')
})

/** An event source that delivers `events` once, in order, and records acks. */
function memorySource(events: RegistrationEvent[], snapshot: RegistryRecord[] = []): EventSource & { acked: string[] } {
  const acked: string[] = []
  const tombs = memoryTombstones()
  return {
    kind: 'nats',
    acked,
    open: async () => ({ created: false }),
    consume: async (handle: (d: Delivery) => Promise<void>) => {
      for (const e of events) {
        await handle({ body: Buffer.from(JSON.stringify(e)), storedAt: undefined, redelivered: false, working: () => undefined, ack: async () => void acked.push(e.id), requeue: () => undefined })
      }
    },
    stop: async () => undefined,
    snapshot: async () => snapshot,
    tombstones: () => tombs,
    pending: async () => 0,
    health: () => undefined,
    close: async () => undefined,
  }
}

t.test("a relay with --cluster acks and skips another cluster's events, counted and logged at debug; without it, applies them all", async (t) => {
  cmdb.records.clear()
  const events = [registeredEvent('/a', rec('ra', 'a')), registeredEvent('/b', rec('rb', 'b')), registeredEvent('/old', rec('ro')), deregisteredEvent('/b', rec('rb', 'b'), 'T')]
  const { log, lines } = captureLogger()
  const metrics = relayMetrics()
  const source = memorySource(events)
  const sent = cmdb.requests.length
  const relay = new Relay({ source, cmdb: client, log, metrics, rebuildOnCreate: false, cluster: 'a' })
  await relay.start()
  await relay.stop()
  t.same(source.acked, events.map((e) => e.id), 'every event acked, skipped ones included (never redelivered)')
  t.same([...cmdb.records.keys()].sort(), [U('ra'), U('ro')].sort(), "a's event and the unmarked one (an enlist before marks) applied; b's not")
  t.equal(cmdb.requests.slice(sent).filter((r) => r.path.endsWith(U('rb'))).length, 0, "no CMDB call for b's events")
  const m = await metrics.registry.metrics()
  t.match(m, /enlist_relay_events_total\{type="registered",result="other_cluster"\} 1/)
  t.match(m, /enlist_relay_events_total\{type="deregistered",result="other_cluster"\} 1/)
  t.match(m, /enlist_relay_events_total\{type="registered",result="applied"\} 2/)
  t.ok(lines.some((l) => l.msg === 'skipped an event of another cluster' && l.cluster === 'b' && l.level === 20), 'logged at debug, naming the cluster')

  cmdb.records.clear()
  const all = memorySource(events.slice(0, 3))
  const open = new Relay({ source: all, cmdb: client, log, metrics: relayMetrics(), rebuildOnCreate: false })
  await open.start()
  await open.stop()
  t.same([...cmdb.records.keys()].sort(), [U('ra'), U('rb'), U('ro')].sort(), 'without --cluster every event is applied')
})

t.test('relay flags: --rebuild requires --cluster (it deletes); --cluster is a cluster name; one consumer per cluster', async (t) => {
  const base = ['--source=nats', '--url=nats://127.0.0.1:4222', '--allow-insecure', `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http']
  const check = (...args: string[]) => () => validateRelayOptions(parseFlags(relayFlags, [...base, ...args], {}))
  t.throws(check('--rebuild'), new OptionError(
    "--rebuild requires --cluster: it deletes CMDB entries, and only those carrying the named cluster's mark are its to delete (other clusters may feed the same CMDB); accepted: --cluster=<the source cluster's policy cluster.name>",
  ))
  t.doesNotThrow(check('--rebuild', '--cluster=prod-eu-1'))
  t.doesNotThrow(check(), 'consuming without --cluster applies every event')
  t.throws(check('--cluster=Prod_EU'), { message: /^--cluster: "Prod_EU" is invalid; accepted: .*DNS-1123 label/ })
  t.throws(check('--cluster='), { message: /^--cluster: "" is invalid/ })
  t.equal(durableName(undefined, undefined), 'enlist-relay', 'as before without --cluster')
  t.equal(durableName(undefined, 'prod-eu-1'), 'enlist-relay-prod-eu-1', 'relays of two clusters never share a durable consumer or queue')
  t.equal(durableName('mine', 'prod-eu-1'), 'mine')
})
