// The relay's idempotency rules against a real HTTP CMDB (test/harness/cmdb.ts) through the
// http backend's client: any order of duplicates, redeliveries and late re-publishes leaves
// the CMDB holding exactly the pods with a registered and no deregistered event.
import t from 'tap'
import { createHash } from 'node:crypto'
import { deregisteredEvent, registeredEvent, type RegistrationEvent } from '../../src/events/envelope.js'
import { HttpBackend } from '../../src/registry/http.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { applyEvent, RecentIds, rebuild, type Tombstones } from '../../src/relay/apply.js'
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
const rec = (name: string): RegistryRecord => ({ uid: U(name), namespace: 'shop', pod: `p-${name}`, service: 'orders', ip: '10.0.0.1', ips: ['10.0.0.1'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: '2026-11-23T10:00:00Z', advertised: { mode: 'podIP', address: '10.0.0.1', ports: [] } })
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
  cmdb.records.set(U('ghost'), rec('ghost') as unknown as Record<string, unknown>)
  cmdb.records.set(U('x1'), rec('x1') as unknown as Record<string, unknown>)
  const tombs = memoryTombstones()
  tombs.set.add(U('x3'))
  let reads = 0
  const snapshot = async () => {
    reads++
    // the second read (after listing the CMDB) also holds x4, registered meanwhile
    return reads === 1 ? [rec('x1'), rec('x2'), rec('x3')] : [rec('x1'), rec('x2'), rec('x4')]
  }
  cmdb.records.set(U('x4'), rec('x4') as unknown as Record<string, unknown>)
  t.same(await rebuild(snapshot, client, tombs), { put: 2, deleted: 1, stale: 1 })
  t.same([...cmdb.records.keys()].sort(), ['x1', 'x2', 'x4'].map(U).sort(), 'ghost gone; x4, PUT by the live stream meanwhile, kept')
})
