// The nats backend end to end: enlist on a real control plane publishing to a three-server
// JetStream cluster (R3 stream and bucket) through TCP proxies the test can cut, and
// `enlist relay` applying the stream to a CMDB. Pods come and go while a server (the stream
// leader) is stopped, the link is partitioned, the whole cluster restarts, and enlist is down
// during a force delete. At the end every pod has its events, duplicates share their id, and
// the CMDB equals the live registered pods.
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
  registrar: { registrationURL: `https://127.0.0.1:${enlistPort}/v1/registrations` },
  registry: { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend(credentialsFromSecret, url)], reconcileIntervalSeconds: 5 },
})
let enlistPort = 0
const enlist = await enlistFor(t, cp, {
  args: ['--backend-budget=4s'],
  policy: (p) => {
    p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend('enlist-registry-credentials')], reconcileIntervalSeconds: 5 }
  },
  optIn: ['shop'],
})
enlistPort = enlist.port

const readyz = async () => {
  const { request } = await import('../helpers/https.js')
  return (await request(`${enlist.url}/readyz?verbose`, { ca: enlist.pki.ca.cert })).json<{ warnings: Array<{ check: string; reason: string }> }>()
}

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
  const relay = await startRelay(cp, ['--source=nats', `--url=${natsUrl}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', '--timeout=3s'], {
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
  t.equal(live.size, everRegistered.size - gone.size)

  const m = await relay.metrics()
  t.match(m, /enlist_relay_events_total\{type="registered",result="applied"\} [1-9]/)
  t.match(m, /enlist_relay_events_total\{type="deregistered",result="applied"\} [1-9]/)
  t.match(await enlist.metrics(), /enlist_events_acked_total\{backend="events",type="deregistered",duplicate="false"\} [1-9]/)

  // rebuild: a CMDB that lost everything (a restore gone wrong) is made right from the snapshot
  t.equal(await relay.stop(), 0, 'SIGTERM: a graceful stop')
  cmdb.records.clear()
  // a stray the snapshot lacks (a pod UID: nothing else is ever a path to DELETE)
  cmdb.records.set('0badc0de-0000-4000-8000-000000000001', { uid: '0badc0de-0000-4000-8000-000000000001', namespace: 'shop', pod: 'ghost' })
  const dir = tempDir('enlist-rebuild-')
  writeFileSync(join(dir, 'user'), NATS_USERS.enlist.user)
  writeFileSync(join(dir, 'password'), NATS_USERS.enlist.password)
  const rebuilt = await runEnlist(['relay', '--rebuild', '--source=nats', `--url=${natsUrl}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', `--credentials-dir=${dir}`], { timeoutMs: 60_000 })
  rmSync(dir, { recursive: true, force: true })
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  t.match(JSON.parse(rebuilt.stdout.trim().split('\n').pop()!), { rebuilt: true, put: live.size, deleted: 1 })
  t.same(new Set(cmdb.records.keys()), live, 'the CMDB equals the live registered pods again')
})
