// The nats backend end to end: enlist on a real control plane publishing to a three-server
// JetStream cluster (R3 stream and bucket) through TCP proxies the test can cut, and
// `enlist relay` applying the stream to a CMDB. Pods come and go while a server (the stream
// leader) is stopped, the link is partitioned, the whole cluster restarts, and enlist is down
// during a force delete. At the end every pod has its events, duplicates share their id, and
// the CMDB equals the live registered pods. Clusters sharing the NATS server keep their
// ledger entries apart (keys per cluster, claims on names), and the relay's rebuild leaves
// other clusters' CMDB entries alone.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { cmdbFor } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { checkEvents, createPod, deleteGracefully, forceDelete, liveRegistered, type SeenEvent, startRelay, waitForCmdb } from '../harness/events.js'
import { setPolicy } from '../harness/k8s.js'
import { register, runRegistrar } from '../harness/kubelet.js'
import { NATS_USERS, startNats } from '../harness/nats.js'
import { freePort, owned, waitFor } from '../harness/processes.js'
import { startTcpProxy } from '../harness/tcp-proxy.js'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { enlist as runEnlist } from '../helpers/cli.js'
import { tempDir } from '../helpers/temp.js'
import { installSigningKey } from '../helpers/signing.js'
import { startStatusProxy } from '../helpers/status-proxy.js'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { encodeEvent, registeredEvent } from '../../src/events/envelope.js'
import { Registry } from 'prom-client'
import type { RegistrationEvent } from '../../src/events/envelope.js'
import { silentLogger } from '../../src/log.js'
import { EventBackend, type LedgerEntry } from '../../src/registry/events/backend.js'
import { eventMetrics } from '../../src/registry/events/metrics.js'
import { CLAIMS_KEY_PREFIX, claimInBucket, KvLedger, readBucket } from '../../src/registry/nats/backend.js'
import { openBucket } from '../../src/registry/nats/stream.js'
import type { RegistryRecord } from '../../src/registry/record.js'

const CLUSTER = 'e2e'

const cp = await controlPlaneFor(t)
const nats = await owned(t, startNats({ size: 3 }), (n) => n.stop())
const proxies = await owned(t, Promise.all(nats.servers.map((s) => startTcpProxy(s.port))), (ps) => Promise.all(ps.map((p) => p.close())))
const natsUrl = proxies.map((p) => p.url('nats')).join(',')
const cmdb = await cmdbFor(t)

await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'enlist-system' } })
const secret = (name: string, data: Record<string, string>) =>
  cp.client.create('/api/v1/namespaces/enlist-system/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: data })
await secret('enlist-nats-credentials', { user: NATS_USERS.enlist.user, password: NATS_USERS.enlist.password })
await secret('enlist-registry-credentials', { user: NATS_USERS.enlist.user, password: 'wrong-password' })
await secret('enlist-amqp-credentials', { user: NATS_USERS.limited.user, password: NATS_USERS.limited.password })
// enlist signs every event with this cluster's key; the relay is given the same ring
const signing = await installSigningKey(cp, CLUSTER)

const backend = (credentialsFromSecret: string, url = natsUrl) => ({
  name: 'events',
  type: 'nats',
  url,
  allowInsecure: true, // the test servers speak in clear on loopback
  source: '/clusters/e2e',
  credentialsFromSecret,
  replicas: 3,
  timeoutSeconds: 3,
  retry: { initialDelayMs: 100, maxDelayMs: 1000 },
})
const policyWith = (credentialsFromSecret: string, url?: string) => ({
  apiVersion: 'enlist.io/v1alpha1',
  kind: 'Policy',
  // a shared backend needs the cluster's name: the mark on every event's data
  cluster: { name: CLUSTER },
  registrar: { registrationURL: `https://127.0.0.1:${enlistPort}/v1/registrations` },
  registry: { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend(credentialsFromSecret, url)], reconcileIntervalSeconds: 5 },
})
let enlistPort = 0
const enlist = await enlistFor(t, cp, {
  args: ['--backend-budget=4s'],
  policy: (p) => {
    p.cluster = { name: CLUSTER }
    p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend('enlist-registry-credentials')], reconcileIntervalSeconds: 5 }
  },
  optIn: ['shop'],
})
enlistPort = enlist.port

const readyz = () => enlist.readyz() // the metrics listener's: readiness details never reach tenants

t.test('bad configuration: said in policy validate, or in /readyz?verbose and metrics', async (t) => {
  const bad = await runEnlist(['policy', 'validate', '-'], {
    input: stringify({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', registry: { backends: [{ name: 'ev', type: 'nats', url: 'nats://u:p@host:4222', source: 'not a uri', stream: 'a.b', subjectPrefix: 'x.*' }] } }),
  })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /url: must not hold credentials/)
  t.match(bad.stderr, /source: "not a uri" is not a URI reference/)
  t.match(bad.stderr, /stream: "a.b" is not a JetStream stream name/)
  t.match(bad.stderr, /subjectPrefix: "x.\*" is not a subject prefix/)
  t.notMatch(bad.stderr + bad.stdout, /:p@/, 'the password is not echoed')

  // wrong password: known only by connecting
  const auth = await waitFor('the auth failure in /readyz?verbose', async () => (await readyz()).warnings.find((w) => w.check === 'backend events' && /authorization/i.test(w.reason)), 30_000, 200)
  t.notMatch(auth.reason, /wrong-password/)
  t.match(await enlist.metrics(), /enlist_event_backend_up\{backend="events"\} 0/)

  // a user that may not publish the events: connected, but every publish is refused
  await setPolicy(cp, stringify(policyWith('enlist-amqp-credentials')))
  const pod = await createPod(cp, 'shop', 'denied')
  const run = await runRegistrar(cp, pod, { timeoutMs: 8000, env: { ENLIST_TIMEOUT_SECONDS: '4' } })
  t.not(run.code, 0, 'the registration is not answered without the broker\'s ack')
  const perm = await waitFor('the permission failure in /readyz?verbose', async () => (await readyz()).warnings.find((w) => w.check === 'backend events' && /permission/i.test(w.reason)), 30_000, 200)
  t.match(perm.reason, /enlist\.registrations/)
  t.match(await enlist.metrics(), /enlist_events_failed_total\{backend="events",type="registered",reason="\w+"\} [1-9]/)
  await forceDelete(cp, pod)

  // a broker nobody answers at: known only by connecting
  await setPolicy(cp, stringify(policyWith('enlist-nats-credentials', `nats://127.0.0.1:${await freePort()}`)))
  await waitFor('the unreachable broker in /readyz?verbose', async () => (await readyz()).warnings.find((w) => w.check === 'backend events' && /connection refused/i.test(w.reason)), 30_000, 200)
  t.match(await enlist.metrics(), /enlist_event_backend_up\{backend="events"\} 0/)

  await setPolicy(cp, stringify(policyWith('enlist-nats-credentials')))
  await waitFor('the backend healthy', async () => !(await readyz()).warnings.some((w) => w.check === 'backend events'), 30_000, 200)
  t.match(await enlist.metrics(), /enlist_event_backend_up\{backend="events"\} 1/)
})

t.test('every pod\'s events arrive through failover, partition, restarts and an enlist outage; the CMDB ends right', async (t) => {
  const relay = await startRelay(cp, ['--source=nats', `--url=${natsUrl}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', '--timeout=3s', `--cluster=${CLUSTER}`, `--signing-keys-dir=${signing.dir}`], {
    user: NATS_USERS.enlist.user,
    password: NATS_USERS.enlist.password,
  })
  t.teardown(() => relay.stop())
  const pods = new Map<string, V1Pod>()
  const up = async (name: string) => {
    const p = await createPod(cp, 'shop', name)
    await register(cp, p)
    pods.set(name, p)
    return p
  }
  for (const n of ['a1', 'a2', 'a3', 'a4']) await up(n)
  await waitForCmdb(cmdb, () => liveRegistered(cp, 'shop'))

  // the stream's leader goes away while pods come and go
  const admin = await connect({ servers: nats.servers.map((s) => s.url), user: NATS_USERS.enlist.user, pass: NATS_USERS.enlist.password })
  t.teardown(() => admin.close())
  const jsm = await jetstreamManager(admin)
  const leaderName = (await jsm.streams.info('ENLIST_REGISTRATIONS')).cluster?.leader
  const leader = nats.servers.find((s) => s.name === leaderName)!
  t.ok(leader, `stream leader ${leaderName}`)
  await leader.stop('SIGKILL')
  await up('b1')
  await deleteGracefully(cp, pods.get('a1')!)
  await up('b2')
  await leader.start()

  // a partition between enlist (and the relay) and every server
  for (const p of proxies) p.cut('blackhole')
  const c1 = createPod(cp, 'shop', 'c1').then(async (p) => {
    pods.set('c1', p)
    await register(cp, p)
  })
  await new Promise((r) => setTimeout(r, 4000))
  for (const p of proxies) p.heal()
  await c1

  // the whole cluster restarts while a pod is being deleted
  await Promise.all(nats.servers.map((s) => s.stop()))
  await deleteGracefully(cp, pods.get('a2')!)
  await Promise.all(nats.servers.map((s) => s.start()))

  // enlist is down while a registered pod is force-deleted
  await enlist.stop()
  await forceDelete(cp, pods.get('a3')!)
  await enlist.restart()

  // the terminating pods finally go
  for (const n of ['a1', 'a2']) await forceDelete(cp, pods.get(n)!)
  await up('d1')

  await waitForCmdb(cmdb, () => liveRegistered(cp, 'shop'), 120_000)
  const live = await liveRegistered(cp, 'shop')
  const gone = new Set(['a1', 'a2', 'a3'].map((n) => pods.get(n)!.metadata!.uid!))
  const everRegistered = new Set([...pods.values()].map((p) => p.metadata!.uid!))

  // every event in the stream, from the start
  const js = jetstream(admin)
  const consumer = await js.consumers.get('ENLIST_REGISTRATIONS', { deliver_policy: DeliverPolicy.All })
  const seen: SeenEvent[] = []
  const want = (await jsm.streams.info('ENLIST_REGISTRATIONS')).state.messages
  const iter = await consumer.consume()
  for await (const m of iter) {
    const body = m.json<Record<string, unknown>>()
    t.equal(m.headers?.get('Nats-Msg-Id'), body.id, 'the message id is the event id')
    seen.push({ id: String(body.id), type: String(body.type), uid: String((body.data as { uid: string }).uid), body })
    if (seen.length >= want) break
  }
  await iter.close()
  t.same(checkEvents(seen, everRegistered, gone), [], `${seen.length} events`)
  t.same(seen.filter((e) => (e.body.data as { cluster?: string }).cluster !== CLUSTER).map((e) => e.id), [], `every event's data carries the cluster's mark (${CLUSTER})`)
  t.equal(live.size, everRegistered.size - gone.size)

  const m = await relay.metrics()
  t.match(m, /enlist_relay_events_total\{type="registered",result="applied"\} [1-9]/)
  t.match(m, /enlist_relay_events_total\{type="deregistered",result="applied"\} [1-9]/)
  t.match(await enlist.metrics(), /enlist_events_acked_total\{backend="events",type="deregistered",duplicate="false"\} [1-9]/)

  // rebuild: a CMDB that lost everything (a restore gone wrong) is made right from the snapshot
  t.equal(await relay.stop(), 0, 'SIGTERM: a graceful stop')
  cmdb.records.clear()
  // a stray of this cluster the snapshot lacks (a pod UID: nothing else is ever a path to DELETE)
  cmdb.records.set('0badc0de-0000-4000-8000-000000000001', { uid: '0badc0de-0000-4000-8000-000000000001', namespace: 'shop', pod: 'ghost', cluster: CLUSTER })
  // another source cluster's entry, and an unmarked one: never this relay's to delete
  const others = {
    '0badc0de-0000-4000-8000-000000000002': { uid: '0badc0de-0000-4000-8000-000000000002', namespace: 'shop', pod: 'theirs', cluster: 'dr' },
    '0badc0de-0000-4000-8000-000000000003': { uid: '0badc0de-0000-4000-8000-000000000003', namespace: 'shop', pod: 'unmarked' },
  }
  for (const [uid, r] of Object.entries(others)) cmdb.records.set(uid, structuredClone(r))
  const dir = tempDir('enlist-rebuild-')
  writeFileSync(join(dir, 'user'), NATS_USERS.enlist.user)
  writeFileSync(join(dir, 'password'), NATS_USERS.enlist.password)
  const args = ['relay', '--rebuild', '--source=nats', `--url=${natsUrl}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', `--credentials-dir=${dir}`]
  const unscoped = await runEnlist(args, { timeoutMs: 60_000 })
  t.equal(unscoped.code, 2, 'a rebuild deletes: it is refused without the cluster whose entries it may delete')
  t.match(unscoped.stderr, /--rebuild requires --cluster/)
  const rebuilt = await runEnlist([...args, `--cluster=${CLUSTER}`], { timeoutMs: 60_000 })
  rmSync(dir, { recursive: true, force: true })
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  t.match(JSON.parse(rebuilt.stdout.trim().split('\n').pop()!), { rebuilt: true, put: live.size, deleted: 1 })
  t.same(new Set(cmdb.records.keys()), new Set([...live, ...Object.keys(others)]), "the CMDB holds the live registered pods again, and the others' entries")
  for (const [uid, r] of Object.entries(others)) t.same(cmdb.records.get(uid), r, `${r.pod}: left alone, byte for byte`)
})

t.test('clusters sharing the bucket: entries under each cluster\'s name, unmarked old keys left alone, claims on names', async (t) => {
  const nc = await connect({ servers: nats.servers.map((s) => s.url), user: NATS_USERS.enlist.user, pass: NATS_USERS.enlist.password })
  t.teardown(() => nc.close())
  const bucket = 'enlist-shared'
  const settings = { stream: 'ENLIST_REGISTRATIONS', subjectPrefix: 'enlist.registrations', bucket, replicas: 3, maxAgeHours: 1, duplicateWindowSeconds: 120, timeoutMs: 5000 }
  const kv = await openBucket(nc, settings, true)
  const js = jetstream(nc)
  const jsm = await js.jetstreamManager()
  const ready = async () => ({ js, jsm, kv })
  const published: RegistrationEvent[] = []
  const broker = { publish: async (e: RegistrationEvent) => (published.push(e), { duplicate: false }), health: () => undefined, close: async () => undefined }
  const metrics = eventMetrics(new Registry())
  const backendOf = (cluster: string) =>
    new EventBackend({ name: 'events', type: 'nats', source: `/clusters/${cluster}`, cluster, broker, ledger: new KvLedger(bucket, cluster, 5000, ready), metrics, log: silentLogger(), claim: (self, takeOver) => claimInBucket(ready, self, takeOver, 5000) })
  const a = backendOf('a')
  const b = backendOf('b')
  const U = (n: number) => `5ba7ed00-0000-4000-8000-${String(n).padStart(12, '0')}`
  const rec = (n: number, cluster?: string): RegistryRecord => ({ uid: U(n), namespace: 'shop', pod: `p-${n}`, service: 'orders', ip: '10.0.0.1', ips: ['10.0.0.1'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: '2026-11-23T10:00:00Z', advertised: { mode: 'podIP', address: '10.0.0.1', ports: [] }, ...(cluster ? { cluster } : {}) })

  await a.register(rec(1, 'a'))
  await b.register(rec(2, 'b'))
  // kept by an enlist before keys were per cluster: the bare pod UID
  const legacy = (n: number): LedgerEntry => ({ state: 'registered', data: rec(n) })
  await kv.put(U(3), JSON.stringify(legacy(3))) // its pod is gone
  await kv.put(U(4), JSON.stringify(legacy(4))) // its pod lives in cluster a
  const keys = async () => (await readBucket(js, bucket, 10_000)).map((e) => `${e.cluster ?? '-'}.${e.uid}`).sort()
  t.same(await keys(), [`-.${U(3)}`, `-.${U(4)}`, `a.${U(1)}`, `b.${U(2)}`], 'each cluster\'s entries under its name')

  const byUid = (l: Array<{ uid: string; cluster: string | undefined }>) => l.map((e) => `${e.uid}:${e.cluster ?? 'unmarked'}`).sort()
  t.same(byUid(await a.list()), [`${U(1)}:a`, `${U(3)}:unmarked`, `${U(4)}:unmarked`], 'a lists its own and the unmarked ones, never b\'s')
  t.same(byUid(await b.list()), [`${U(2)}:b`, `${U(3)}:unmarked`, `${U(4)}:unmarked`])

  // a's pod 1 goes: its deregistration publishes for a's pod only, marked
  published.length = 0
  await a.deregister(rec(1))
  t.same(published.map((e) => [e.id, e.data.cluster]), [[`${U(1)}.deregistered`, 'a']])
  t.same(await keys(), [`-.${U(3)}`, `-.${U(4)}`, `b.${U(2)}`], "b's entry and the unmarked ones untouched")

  // a live pod of a whose entry is unmarked (the UID is its key): registered again, it moves under a's name
  await a.register(rec(4, 'a'))
  t.same(await keys(), [`-.${U(3)}`, `a.${U(4)}`, `b.${U(2)}`], 'moved under the mark, the old key gone')
  // adoption of the gone pod's unmarked entry: its deregistration is published, with a's mark
  published.length = 0
  await a.adopt((await a.list()).find((e) => e.uid === U(3))!, undefined)
  t.same(published.map((e) => [e.id, e.data.cluster]), [[`${U(3)}.deregistered`, 'a']])
  t.same(await keys(), [`a.${U(4)}`, `b.${U(2)}`])
  await t.rejects(a.adopt({ uid: U(2), namespace: 'shop', pod: 'p-2', cluster: 'b' }, undefined), /carries cluster b's mark/)

  // the relay of one cluster reads that cluster's keys alone
  t.same((await readBucket(js, bucket, 10_000, 'b.*')).map((e) => e.uid), [U(2)])

  // claims: the first cluster of a name holds it; another of the same name is refused, until it takes over
  const self = { name: 'a', uid: 'kube-system-uid-1' }
  t.match(await a.claim!(self, false), { held: true, created: true })
  t.match(await a.claim!(self, false), { held: true, created: false }, 'held again: nothing written')
  t.match(await a.claim!({ name: 'a', uid: 'kube-system-uid-2' }, false), { held: false, holder: { name: 'a', uid: 'kube-system-uid-1' } }, 'a second cluster named a is refused')
  t.match(await a.claim!({ name: 'a', uid: 'kube-system-uid-2' }, true), { held: true, created: true }, 'taken over (enlist claim --take-over)')
  t.match(await a.claim!(self, false), { held: false, holder: { uid: 'kube-system-uid-2' } }, 'the first is refused now')
  t.match(await b.claim!({ name: 'b', uid: 'kube-system-uid-3' }, false), { held: true, created: true }, 'another name: its own claim')
  t.ok((await kv.get(`${CLAIMS_KEY_PREFIX}.a`))?.string().includes('kube-system-uid-2'), 'the claim is a key of the bucket')
  t.same(await keys(), [`a.${U(4)}`, `b.${U(2)}`], 'claims are never read as ledger entries')
})

t.test('the relay never wedges and trusts no stranger: a 413 is dead-lettered and the next applied; an unsigned event is refused; replay re-applies', async (t) => {
  // self-contained: the backend with working credentials, whatever the tests before left
  await setPolicy(cp, stringify(policyWith('enlist-nats-credentials')))
  const store = await cmdbFor(t)
  const front = await startStatusProxy(store.url)
  t.teardown(() => front.close())
  const consumer = 'enlist-relay-dead-letters'
  const common = ['--source=nats', `--url=${natsUrl}`, '--cmdb-allow-insecure-http', '--allow-insecure', '--timeout=3s', `--cluster=${CLUSTER}`, `--consumer=${consumer}`]
  const relay = await startRelay(cp, [...common, `--cmdb-url=${front.url}`, '--no-initial-rebuild', `--signing-keys-dir=${signing.dir}`], { user: NATS_USERS.enlist.user, password: NATS_USERS.enlist.password })
  t.teardown(() => relay.stop())

  // the CMDB refuses one record for good (413: say its metadata is too large)
  const big = await createPod(cp, 'shop', 'dl-big')
  front.statuses.set(big.metadata!.uid!, 413)
  await register(cp, big)
  const next = await createPod(cp, 'shop', 'dl-next')
  await register(cp, next)
  await waitFor('the next event applied', async () => store.records.has(next.metadata!.uid!), 60_000, 200)
  t.notOk(store.records.has(big.metadata!.uid!))
  t.match(await relay.metrics(), /enlist_relay_dead_letters_total\{reason="cmdb_rejected"\} 1/)
  // (the relay's logger batches its writes: the line may follow the metric by a moment)
  await waitFor('a log line naming the event', async () => relay.process.lines.some((l) => l.includes('dead-letter place') && l.includes(big.metadata!.uid!)), 15_000, 100)
  t.pass('a log line names the event')
  t.equal((await relay.readyz()).status, 200, 'the relay is ready: the CMDB is fine, the event was not')

  // a stranger with publish rights on the stream: a well-formed event, unsigned
  const nc = await connect({ servers: nats.servers.map((s) => s.url), user: NATS_USERS.enlist.user, pass: NATS_USERS.enlist.password })
  t.teardown(() => nc.close())
  const forgedUid = '0badc0de-0000-4000-8000-0000000000f0'
  const forged = registeredEvent('/clusters/e2e', { uid: forgedUid, namespace: 'shop', pod: 'forged', service: 'orders', ip: '10.6.6.6', ips: ['10.6.6.6'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: new Date().toISOString(), advertised: { mode: 'podIP', address: '10.6.6.6', ports: [] }, cluster: CLUSTER })
  const h = natsHeaders()
  h.set('Content-Type', 'application/cloudevents+json')
  await jetstream(nc).publish('enlist.registrations.shop.orders.registered', encodeEvent(forged), { headers: h })
  await waitFor('the unsigned event refused', async () => /enlist_relay_dead_letters_total\{reason="unsigned"\} 1/.test(await relay.metrics()), 30_000, 200)
  const after = await createPod(cp, 'shop', 'dl-after')
  await register(cp, after)
  await waitFor('applied after it', async () => store.records.has(after.metadata!.uid!), 60_000, 200)
  t.notOk(store.records.has(forgedUid), 'the unsigned event never reached the CMDB')

  // the dead letters are kept, with the signature header enlist sent
  const jsm = await jetstreamManager(nc)
  const dead = await jsm.streams.info('ENLIST_REGISTRATIONS_DEAD')
  t.equal(dead.state.messages, 2, 'two dead letters')
  const first = await jsm.streams.getMessage('ENLIST_REGISTRATIONS_DEAD', { seq: dead.state.first_seq })
  t.match(first!.header.get('Enlist-Signature'), /^keyid=[a-z0-9-]+,sig=/, 'kept with the signature enlist sent')
  t.match(first!.header.get('Enlist-Dead-Letter-Reason'), /^cmdb_rejected: the CMDB answered HTTP 413/)
  t.equal(await relay.stop(), 0)

  // the CMDB is fixed: each dead letter re-applied once; the unsigned one stays
  front.statuses.clear()
  const creds = tempDir('enlist-replay-')
  writeFileSync(join(creds, 'user'), NATS_USERS.enlist.user)
  writeFileSync(join(creds, 'password'), NATS_USERS.enlist.password)
  const replay = ['relay', '--replay-dead-letters', ...common, `--cmdb-url=${front.url}`, `--credentials-dir=${creds}`, `--signing-keys-dir=${signing.dir}`]
  const r1 = await runEnlist(replay, { timeoutMs: 60_000 })
  t.equal(r1.code, 0, r1.stderr)
  t.same(JSON.parse(r1.stdout.trim().split('\n').pop()!), { replayed: 1, kept: 1 })
  t.ok(store.records.has(big.metadata!.uid!), 'the refused record applied once the CMDB takes it')
  t.notOk(store.records.has(forgedUid), 'the unsigned one is still refused')
  // an admin who decides to accept it
  const r2 = await runEnlist([...replay, '--allow-unsigned'], { timeoutMs: 60_000 })
  rmSync(creds, { recursive: true, force: true })
  t.equal(r2.code, 0, r2.stderr)
  t.same(JSON.parse(r2.stdout.trim().split('\n').pop()!), { replayed: 1, kept: 0 })
  t.ok(store.records.has(forgedUid), '--allow-unsigned applies it')
  t.equal((await jsm.streams.info('ENLIST_REGISTRATIONS_DEAD')).state.messages, 0, 'nothing left')
  for (const p of [big, next, after]) await forceDelete(cp, p)
})
