// The relay's idempotency rules against a real HTTP CMDB (test/harness/cmdb.ts) through the
// http backend's client: any order of duplicates, redeliveries and late re-publishes leaves
// the CMDB holding exactly the pods with a registered and no deregistered event. Several
// clusters feeding one CMDB: a relay with --cluster skips the others' events, and its
// rebuild changes only its own cluster's entries.
import t from 'tap'
import { createHash } from 'node:crypto'
import type { KeyRing } from '../../src/decision/keyring.js'
import { deregisteredEvent, encodeEvent, registeredEvent, type RegistrationEvent } from '../../src/events/envelope.js'
import { signature, type SigningKey } from '../../src/events/signature.js'
import { HttpBackend } from '../../src/registry/http.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { applyEvent, RecentIds, rebuild, type Tombstones } from '../../src/relay/apply.js'
import { Relay, relayMetrics } from '../../src/relay/relay.js'
import type { DeadLetter, Delivery, EventSource } from '../../src/relay/source.js'
import { durableName, loadRelayKeys, relayFlags, validateRelayOptions } from '../../src/cli/relay.js'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { formatKeyRing } from '../../src/decision/keyring.js'
import { silentLogger } from '../../src/log.js'
import { startStatusProxy } from '../helpers/status-proxy.js'
import { tempDir } from '../helpers/temp.js'
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
/** The rings every test relay trusts: cluster a's, b's, and unmarked events'. */
const RING = { keys: [{ id: 'k1', secret: Buffer.alloc(32, 1), createdAt: 0, activeFrom: 0 }] }
const rings = new Map<string | undefined, KeyRing>([['a', RING], ['b', RING], [undefined, RING]])
const trusting = { allowUnsigned: false, ring: (c: string | undefined) => rings.get(c) }

interface Message {
  body: Buffer
  signature: string | undefined
}
/** Signed as enlist signs: over the exact bytes. */
const signed = (e: RegistrationEvent, key: SigningKey = RING.keys[0]!): Message => {
  const body = encodeEvent(e)
  return { body, signature: signature(body, key) }
}

function memorySource(events: Array<RegistrationEvent | Message>, snapshot: RegistryRecord[] = []): EventSource & { acked: string[]; dead: Array<DeadLetter & { id: string }> } {
  const acked: string[] = []
  const dead: Array<DeadLetter & { id: string }> = []
  const tombs = memoryTombstones()
  const idOf = (body: Uint8Array) => {
    try {
      return String((JSON.parse(Buffer.from(body).toString()) as { id?: unknown }).id ?? '?')
    } catch {
      return '?'
    }
  }
  return {
    kind: 'nats',
    acked,
    dead,
    open: async () => ({ created: false }),
    consume: async (handle: (d: Delivery) => Promise<void>) => {
      for (const x of events) {
        const m = 'body' in x ? x : signed(x)
        const id = idOf(m.body)
        await handle({
          body: m.body,
          signature: m.signature,
          storedAt: undefined,
          redelivered: false,
          working: () => undefined,
          ack: async () => void acked.push(id),
          requeue: () => undefined,
          deadLetter: async (reason) => {
            dead.push({ id, body: m.body, signature: m.signature, reason })
            acked.push(id)
          },
        })
      }
    },
    stop: async () => undefined,
    snapshot: async () => snapshot,
    tombstones: () => tombs,
    replayDeadLetters: async (apply) => {
      const r = { replayed: 0, kept: 0 }
      for (const d of dead.splice(0)) {
        if (await apply(d)) r.replayed++
        else {
          dead.push(d)
          r.kept++
        }
      }
      return r
    },
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
  const relay = new Relay({ source, cmdb: client, log, metrics, rebuildOnCreate: false, cluster: 'a', ...trusting })
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
  const open = new Relay({ source: all, cmdb: client, log, metrics: relayMetrics(), rebuildOnCreate: false, ...trusting })
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

// --- issue 24: the relay never wedges and trusts no stranger ------------------------------

const proxy = await startStatusProxy(cmdb.url)
t.teardown(() => proxy.close())
const viaProxy = new HttpBackend({ name: 'cmdb', type: 'http', sweep: false, url: proxy.url, allowInsecureHTTP: true, timeoutSeconds: 2, maxResponseBytes: 1 << 20, maxListPages: 10, caBundle: '', headersFromSecret: '', retry: { initialDelayMs: 10, maxDelayMs: 100 }, advertise: { mode: 'podIP', nodeAddressTypes: ['InternalIP'] } }, async () => ({}))
t.teardown(() => viaProxy.close())

t.test('a CMDB answer about the event (400, 413, 415, 422) dead-letters it, and the next event is applied', async (t) => {
  for (const status of [400, 413, 415, 422]) {
    cmdb.records.clear()
    proxy.statuses.clear()
    proxy.statuses.set(U(`big-${status}`), status)
    const events = [registeredEvent('/a', rec(`big-${status}`, 'a')), registeredEvent('/a', rec(`next-${status}`, 'a'))]
    const { log, lines } = captureLogger()
    const metrics = relayMetrics()
    const source = memorySource(events)
    const relay = new Relay({ source, cmdb: viaProxy, log, metrics, rebuildOnCreate: false, cluster: 'a', ...trusting })
    await relay.start()
    await relay.stop()
    t.same(source.dead.map((d) => [d.id, d.reason]), [[events[0]!.id, `cmdb_rejected: the CMDB answered HTTP ${status}`]], `${status}: the refused event is a dead letter`)
    t.same(source.acked, events.map((e) => e.id), `${status}: both acked: nothing holds the stream`)
    t.same([...cmdb.records.keys()], [U(`next-${status}`)], `${status}: the next event applied`)
    t.match(await metrics.registry.metrics(), /enlist_relay_dead_letters_total\{reason="cmdb_rejected"\} 1/)
    t.ok(lines.some((l) => l.level === 50 && /dead-letter place/.test(String(l.msg)) && l.id === events[0]!.id), 'an error log line names the event')
    t.same(relay.problems(), ['stopping'], 'no CMDB problem reported: the CMDB is fine')
  }
})

t.test('answers about the CMDB itself (401, 403, 429, 503) hold the event and retry, never dead-letter it', async (t) => {
  for (const status of [401, 403, 429, 503]) {
    cmdb.records.clear()
    proxy.statuses.clear()
    proxy.statuses.set(U(`held-${status}`), status)
    const metrics = relayMetrics()
    const source = memorySource([registeredEvent('/a', rec(`held-${status}`, 'a'))])
    const relay = new Relay({ source, cmdb: viaProxy, log: silentLogger(), metrics, rebuildOnCreate: false, cluster: 'a', ...trusting })
    await relay.start()
    await new Promise((r) => setTimeout(r, 700))
    t.same(source.acked, [], `${status}: not acked while the CMDB refuses`)
    t.same(source.dead, [], `${status}: not a dead letter`)
    t.match(relay.problems().join(), new RegExp(`cmdb: .*HTTP ${status}`), `${status}: reported not ready`)
    proxy.statuses.clear()
    await new Promise((r) => setTimeout(r, 1500))
    await relay.stop()
    t.same(source.acked, [registeredEvent('/a', rec(`held-${status}`, 'a')).id], `${status}: applied once the CMDB is back`)
    t.match(await metrics.registry.metrics(), /enlist_relay_cmdb_failures_total [1-9]/)
  }
})

t.test('unsigned, badly signed and forged events are dead-lettered; --allow-unsigned applies them', async (t) => {
  cmdb.records.clear()
  proxy.statuses.clear()
  const good = registeredEvent('/a', rec('good', 'a'))
  const unsigned: Message = { body: encodeEvent(registeredEvent('/a', rec('unsigned', 'a'))), signature: undefined }
  const otherKey = signed(registeredEvent('/a', rec('stranger', 'a')), { id: 'k1', secret: Buffer.alloc(32, 9) })
  const tampered = signed(registeredEvent('/a', rec('tampered', 'a')))
  tampered.body = Buffer.from(tampered.body.toString().replace('10.0.0.1', '10.6.6.6'))
  const unknownId = signed(registeredEvent('/a', rec('unknown-id', 'a')), { id: 'k9', secret: Buffer.alloc(32, 1) })
  const malformed: Message = { body: encodeEvent(registeredEvent('/a', rec('malformed', 'a'))), signature: 'sig=abc' }
  // signed with b's key but claiming cluster c, which the relay has no keys for
  const noRing = signed(registeredEvent('/c', rec('no-ring', 'c')))
  const deregForged: Message = { body: encodeEvent(deregisteredEvent('/a', rec('good', 'a'), 'T')), signature: undefined }
  const junk: Message = { body: Buffer.from('{"not":"an event"}'), signature: undefined }
  const all = [good, unsigned, otherKey, tampered, unknownId, malformed, noRing, deregForged, junk]
  const metrics = relayMetrics()
  const source = memorySource(all)
  const relay = new Relay({ source, cmdb: viaProxy, log: silentLogger(), metrics, rebuildOnCreate: false, ...trusting })
  await relay.start()
  await relay.stop()
  t.same([...cmdb.records.keys()], [U('good')], 'only the signed event reached the CMDB; the forged deregistration did not delete it')
  const reasons = Object.fromEntries(source.dead.map((d) => [d.id.split('.')[0] === '?' ? 'junk' : d.id, d.reason]))
  const id = (m: Message) => String((JSON.parse(m.body.toString()) as { id: string }).id)
  t.match(reasons, {
    [id(unsigned)]: /^unsigned: no Enlist-Signature header/,
    [id(otherKey)]: /^bad_signature: the signature does not match the body \(key k1\)/,
    [id(tampered)]: /^bad_signature: the signature does not match/,
    [id(unknownId)]: /^bad_signature: key k9 is not among cluster a's signing keys/,
    [id(malformed)]: /^bad_signature: the Enlist-Signature header is not keyid=/,
    [id(noRing)]: /^bad_signature: the relay has no signing keys for cluster c/,
    [id(deregForged)]: /^unsigned/,
    junk: /^invalid: not an enlist registration event/,
  })
  t.equal(source.dead.length, 8)
  t.equal(source.acked.length, all.length, 'every message acked: none holds the stream')
  const m = await metrics.registry.metrics()
  t.match(m, /enlist_relay_dead_letters_total\{reason="unsigned"\} 2/)
  t.match(m, /enlist_relay_dead_letters_total\{reason="bad_signature"\} 5/)
  t.match(m, /enlist_relay_dead_letters_total\{reason="invalid"\} 1/)

  // the relay of an admin who chose so: every well-formed event applied
  cmdb.records.clear()
  const open = memorySource([unsigned, otherKey])
  const lax = new Relay({ source: open, cmdb: viaProxy, log: silentLogger(), metrics: relayMetrics(), rebuildOnCreate: false, allowUnsigned: true, ring: () => undefined })
  await lax.start()
  await lax.stop()
  t.same([...cmdb.records.keys()].sort(), [U('unsigned'), U('stranger')].sort(), '--allow-unsigned applies them')
  t.same(open.dead, [])
})

t.test('rotation: every key of the ring verifies, the newest active one signs', async (t) => {
  const { verify } = await import('../../src/events/signature.js')
  const { signingKey } = await import('../../src/events/signature.js')
  const old = { id: 'k-old', secret: Buffer.alloc(32, 2), createdAt: 0, activeFrom: 0 }
  const next = { id: 'k-new', secret: Buffer.alloc(32, 3), createdAt: 1000, activeFrom: 2000 }
  const ring = { keys: [old, next] }
  t.equal(signingKey(ring, 1500).id, 'k-old', 'before its activeFrom the new key does not sign')
  t.equal(signingKey(ring, 2500).id, 'k-new')
  const body = Buffer.from('{"x":1}')
  t.match(verify(body, signature(body, old), ring, 'a'), { ok: true, keyid: 'k-old' }, 'events signed before the rotation still verify')
  t.match(verify(body, signature(body, next), ring, 'a'), { ok: true, keyid: 'k-new' })
  t.throws(() => signingKey({ keys: [next] }, 1500), /no key of the ring is active yet/)
})

t.test('--replay-dead-letters applies each once the CMDB is fixed; those that fail again stay', async (t) => {
  cmdb.records.clear()
  proxy.statuses.clear()
  proxy.statuses.set(U('r1'), 413)
  proxy.statuses.set(U('r2'), 422)
  const unsigned: Message = { body: encodeEvent(registeredEvent('/a', rec('r3', 'a'))), signature: undefined }
  const source = memorySource([registeredEvent('/a', rec('r1', 'a')), registeredEvent('/a', rec('r2', 'a')), unsigned])
  const metrics = relayMetrics()
  const relay = new Relay({ source, cmdb: viaProxy, log: silentLogger(), metrics, rebuildOnCreate: false, cluster: 'a', ...trusting })
  await relay.start()
  await relay.stop()
  t.equal(source.dead.length, 3)
  t.same([...cmdb.records.keys()], [])

  proxy.statuses.delete(U('r1')) // the CMDB was fixed for r1 only
  t.same(await relay.replayDeadLetters(), { replayed: 1, kept: 2 })
  t.same([...cmdb.records.keys()], [U('r1')])
  t.same(source.dead.map((d) => d.id).sort(), [`${U('r2')}.registered`, `${U('r3')}.registered`].sort(), 'the others stay, each tried once')
  t.same(await relay.replayDeadLetters(), { replayed: 0, kept: 2 }, 'a second replay tries them again')

  proxy.statuses.clear()
  const lax = new Relay({ source, cmdb: viaProxy, log: silentLogger(), metrics, rebuildOnCreate: false, cluster: 'a', allowUnsigned: true, ring: () => undefined })
  t.same(await lax.replayDeadLetters(), { replayed: 2, kept: 0 }, 'fixed, and the unsigned one accepted by --allow-unsigned')
  t.same([...cmdb.records.keys()].sort(), [U('r1'), U('r2'), U('r3')].sort())
  t.same(source.dead, [])
  t.match(await metrics.registry.metrics(), /enlist_relay_dead_letters_replayed_total\{result="applied"\} 3/)
})

t.test('relay flags: signing keys are required unless --allow-unsigned; replay and rebuild one at a time', async (t) => {
  const base = ['--source=nats', '--url=nats://127.0.0.1:4222', '--allow-insecure', `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http']
  const dir = tempDir('enlist-relay-keys-')
  const flags = (...args: string[]) => {
    const o = parseFlags(relayFlags, [...base, `--signing-keys-dir=${dir}`, ...args], {})
    validateRelayOptions(o)
    return o
  }
  t.throws(() => flags('--rebuild', '--replay-dead-letters', '--cluster=a'), { message: '--rebuild and --replay-dead-letters: one at a time' })
  await t.rejects(loadRelayKeys(flags(), silentLogger()), { message: /^--signing-keys-dir: no signing keys in .*: mount the source cluster's Secret enlist-event-signing-key/ })
  await t.resolves(loadRelayKeys(flags('--allow-unsigned'), silentLogger()), 'an admin may choose to accept unsigned events')
  writeFileSync(join(dir, 'b.json'), formatKeyRing(RING))
  await t.rejects(loadRelayKeys(flags('--cluster=a'), silentLogger()), { message: /no a\.json in .* for --cluster=a/ })
  writeFileSync(join(dir, 'a.json'), formatKeyRing(RING))
  const keys = await loadRelayKeys(flags('--cluster=a'), silentLogger())
  t.equal(keys.ring('a')?.keys[0]?.id, 'k1')
  t.equal(keys.ring(undefined), undefined, 'unmarked events: only with _unmarked.json')
  writeFileSync(join(dir, 'a.json'), '{"keys":[{"id":"k1","secret":"c2hvcnQ="}]}')
  await t.rejects(loadRelayKeys(flags('--cluster=a'), silentLogger()), { message: /a\.json: keyring\.json keys\[0\] \(k1\): secret must be base64 of at least 32 bytes/ })
  mkdirSync(join(dir, '..data'))
  writeFileSync(join(dir, 'Not_A_Cluster.json'), formatKeyRing(RING))
  await t.rejects(loadRelayKeys(flags(), silentLogger()), { message: /Not_A_Cluster\.json: the file name must be <cluster name>\.json or _unmarked\.json/ })
})

t.test('a cluster name written by two kube-system UIDs is reported (a broker holds no claim on names)', async (t) => {
  cmdb.records.clear()
  proxy.statuses.clear()
  const from = (name: string, uid: string) => signed(registeredEvent('/a', { ...rec(name, 'a'), clusterUID: uid }))
  const metrics = relayMetrics()
  const lines: Array<Record<string, unknown>> = []
  const { pino } = await import('pino')
  const log = pino({ level: 'error' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
  const source = memorySource([from('first', 'uid-1'), from('second', 'uid-1'), from('third', 'uid-2'), from('fourth', 'uid-2')])
  const relay = new Relay({ source, cmdb: viaProxy, log, metrics, rebuildOnCreate: false, ...trusting })
  await relay.start()
  await relay.stop()
  t.equal(cmdb.records.size, 4, 'signed events are applied all the same')
  t.match(await metrics.registry.metrics(), /enlist_relay_cluster_name_conflicts_total\{cluster="a"\} 1/, 'counted once, when the second UID appears')
  t.match(lines, [{ cluster: 'a', clusterUIDs: ['uid-1', 'uid-2'], msg: /two clusters share a name, or a DR cluster took it over/ }])
})
