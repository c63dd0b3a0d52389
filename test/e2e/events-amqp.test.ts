// The amqp backend end to end: enlist on a real control plane publishing to RabbitMQ through
// a TCP proxy the test can cut, with the ledger in ConfigMaps, and `enlist relay` applying a
// durable queue to a CMDB. Pods come and go while the broker restarts, the link is
// partitioned, and enlist is down during a force delete. At the end every pod has its
// events, duplicates share their id, the ledger holds exactly the live registered pods, and
// the CMDB equals them.
import t from 'tap'
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node'
import amqp from 'amqplib'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { cmdbFor } from '../harness/cmdb.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { checkEvents, createPod, deleteGracefully, forceDelete, liveRegistered, type SeenEvent, startRelay, waitForCmdb } from '../harness/events.js'
import { setPolicy } from '../harness/k8s.js'
import { register, runRegistrar } from '../harness/kubelet.js'
import { freePort, owned, waitFor } from '../harness/processes.js'
import { RABBIT_USERS, startRabbitMq } from '../harness/rabbitmq.js'
import { startTcpProxy } from '../harness/tcp-proxy.js'
import { enlist as runEnlist } from '../helpers/cli.js'
import { tempDir } from '../helpers/temp.js'
import { installSigningKey } from '../helpers/signing.js'
import { startStatusProxy } from '../helpers/status-proxy.js'
import { encodeEvent, registeredEvent } from '../../src/events/envelope.js'

const CLUSTER = 'e2e'
const cp = await controlPlaneFor(t)
const rabbit = await owned(t, startRabbitMq(), (r) => r.stop())
const proxy = await owned(t, startTcpProxy(rabbit.port), (p) => p.close())
const cmdb = await cmdbFor(t)

await cp.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'enlist-system' } })
const secret = (name: string, data: Record<string, string>) =>
  cp.client.create('/api/v1/namespaces/enlist-system/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: data })
await secret('enlist-amqp-credentials', RABBIT_USERS.enlist)
await secret('enlist-registry-credentials', { username: RABBIT_USERS.enlist.username, password: 'wrong-password' })
await secret('enlist-nats-credentials', RABBIT_USERS.limited)
// enlist signs every event with this cluster's key; the relay is given the same ring
const signing = await installSigningKey(cp, CLUSTER)

const backend = (credentialsFromSecret: string, url = proxy.url('amqp')) => ({
  name: 'amqp',
  type: 'amqp',
  url,
  allowInsecure: true, // the test broker speaks in clear on loopback
  source: 'https://k8s.example.com/clusters/e2e',
  credentialsFromSecret,
  timeoutSeconds: 3,
  heartbeatSeconds: 5,
  retry: { initialDelayMs: 100, maxDelayMs: 1000 },
})
let port = 0
const policyWith = (credentialsFromSecret: string, url?: string) =>
  stringify({
    apiVersion: 'enlist.io/v1alpha1',
    kind: 'Policy',
    // a shared backend needs the cluster's name: the mark on every event's data
    cluster: { name: CLUSTER },
    registrar: { registrationURL: `https://127.0.0.1:${port}/v1/registrations` },
    registry: { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend(credentialsFromSecret, url)], reconcileIntervalSeconds: 5 },
  })
const enlist = await enlistFor(t, cp, {
  args: ['--backend-budget=4s'],
  policy: (p) => {
    p.cluster = { name: CLUSTER }
    p.registry = { backends: [{ name: 'kubernetes', type: 'kubernetes' }, backend('enlist-registry-credentials')], reconcileIntervalSeconds: 5 }
  },
  optIn: ['shop'],
})
port = enlist.port

const warning = async (re: RegExp) => {
  let last = ''
  try {
    return await waitFor(`a backend warning matching ${re}`, async () => {
      const r = await enlist.readyz() // the metrics listener's: readiness details never reach tenants
      last = JSON.stringify(r.warnings)
      return r.warnings.find((w) => w.check === 'backend amqp' && re.test(w.reason))
    }, 30_000, 200)
  } catch (err) {
    throw new Error(`${(err as Error).message}; last warnings: ${last}`, { cause: err })
  }
}

t.test('bad configuration: said in policy validate, or in /readyz?verbose and metrics', async (t) => {
  const bad = await runEnlist(['policy', 'validate', '-'], {
    input: stringify({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', registry: { backends: [{ name: 'mq', type: 'amqp', url: 'amqp://guest:hunter2@mq:5672/', source: '/c', exchange: 'amq.topic' }] } }),
  })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /url: must not hold credentials/)
  t.match(bad.stderr, /exchange: "amq.topic" is reserved/)
  t.notMatch(bad.stderr + bad.stdout, /hunter2/)

  const auth = await warning(/authentication failed/)
  t.notMatch(auth.reason, /wrong-password/)
  t.match(await enlist.metrics(), /enlist_event_backend_up\{backend="amqp"\} 0/)

  // a user that may not declare the exchange
  await setPolicy(cp, policyWith('enlist-nats-credentials'))
  await warning(/permission denied/)

  // the right user, but no queue bound yet: publishing would lose the event, so it fails
  await setPolicy(cp, policyWith('enlist-amqp-credentials'))
  const pod = await createPod(cp, 'shop', 'early')
  const run = await runRegistrar(cp, pod, { timeoutMs: 10_000, env: { ENLIST_TIMEOUT_SECONDS: '5' } })
  t.not(run.code, 0, 'not registered while the event would be unroutable')
  const unroutable = await warning(/no queue is bound/)
  t.match(unroutable.reason, /routing key shop\.early\.registered|shop\.\w+\.registered/)
  t.match(await enlist.metrics(), /enlist_events_failed_total\{backend="amqp",type="registered",reason="unroutable"\} [1-9]/)
  await forceDelete(cp, pod)

  // a broker nobody answers at: known only by connecting
  await setPolicy(cp, policyWith('enlist-amqp-credentials', `amqp://127.0.0.1:${await freePort()}/`))
  const down = await warning(/ECONNREFUSED|refused/i)
  t.match(down.reason, /127\.0\.0\.1/, 'names where it tried')
  t.match(await enlist.metrics(), /enlist_event_backend_up\{backend="amqp"\} 0/)
  await setPolicy(cp, policyWith('enlist-amqp-credentials'))
  await waitFor('the backend up again', async () => /enlist_event_backend_up\{backend="amqp"\} 1/.test(await enlist.metrics()), 30_000, 200)
})

t.test('every pod\'s events arrive through a broker restart, a partition and an enlist outage; ledger and CMDB end right', async (t) => {
  // an observer queue sees everything published from now on
  const conn = await amqp.connect({ hostname: '127.0.0.1', port: rabbit.port, ...RABBIT_USERS.enlist })
  const obs = await conn.createChannel()
  obs.on('error', (err: Error) => t.fail(`observer channel: ${err.message}`))
  await obs.assertQueue('observer', { durable: true })
  await obs.bindQueue('observer', 'enlist.registrations', '#')
  await obs.close()
  await conn.close()

  const relay = await startRelay(cp, ['--source=amqp', `--url=${proxy.url('amqp')}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', '--timeout=3s', '--namespace=enlist-system', `--cluster=${CLUSTER}`, `--signing-keys-dir=${signing.dir}`], RABBIT_USERS.enlist)
  t.teardown(() => relay.stop())
  const pods = new Map<string, V1Pod>()
  const up = async (name: string) => {
    const p = await createPod(cp, 'shop', name)
    pods.set(name, p)
    await register(cp, p)
    return p
  }
  for (const n of ['a1', 'a2', 'a3', 'a4']) await up(n)
  await waitForCmdb(cmdb, () => liveRegistered(cp, 'shop'))

  // the CMDB down: the relay holds the event (no ack), says so, and applies it once it is back
  cmdb.down = true
  await up('a5')
  const held = await waitFor('the relay not ready', async () => {
    const r = await relay.readyz()
    return r.status === 503 && r.body.includes('cmdb: ') ? r.body : undefined
  }, 30_000, 200)
  t.match(held, /HTTP 503/)
  t.notOk(cmdb.records.has(pods.get('a5')!.metadata!.uid!))
  cmdb.down = false
  await waitForCmdb(cmdb, () => liveRegistered(cp, 'shop'))
  await waitFor('the relay ready again', async () => (await relay.readyz()).status === 200, 30_000, 200)

  // the broker restarts while a pod is deleted and another registers
  await rabbit.stopBroker()
  await deleteGracefully(cp, pods.get('a1')!)
  const b1 = up('b1')
  await rabbit.start()
  await b1

  // a partition between enlist (and the relay) and the broker
  proxy.cut('blackhole')
  const c1 = up('c1')
  await new Promise((r) => setTimeout(r, 4000))
  proxy.heal()
  await c1
  await deleteGracefully(cp, pods.get('a2')!)

  // enlist is down while a registered pod is force-deleted
  await enlist.stop()
  await forceDelete(cp, pods.get('a3')!)
  await enlist.restart()

  for (const n of ['a1', 'a2']) await forceDelete(cp, pods.get(n)!)
  await up('d1')

  await waitForCmdb(cmdb, () => liveRegistered(cp, 'shop'), 120_000)
  const live = await liveRegistered(cp, 'shop')
  const gone = new Set(['a1', 'a2', 'a3'].map((n) => pods.get(n)!.metadata!.uid!))
  const everRegistered = new Set([...pods.values()].map((p) => p.metadata!.uid!))

  // the ledger: exactly the live registered pods, spread over its shards
  const ledger = await waitFor('the ledger to hold the live pods', async () => {
    const cms = await cp.client.get<{ items: V1ConfigMap[] }>('/api/v1/namespaces/enlist-system/configmaps', { labelSelector: 'app.kubernetes.io/component=ledger' })
    const uids = new Set(cms.items.flatMap((c) => Object.keys(c.data ?? {})).map((k) => k.replace(/^amqp\./, '')))
    return uids.size === live.size && [...live].every((u) => uids.has(u)) ? cms.items : undefined
  }, 30_000, 250)
  t.ok(ledger.every((c) => /^enlist-ledger-\d\d$/.test(c.metadata!.name!)), 'shard names')

  // every event the observer queue got
  const conn2 = await amqp.connect({ hostname: '127.0.0.1', port: rabbit.port, ...RABBIT_USERS.enlist })
  const ch = await conn2.createChannel()
  const seen: SeenEvent[] = []
  for (;;) {
    const m = await ch.get('observer', { noAck: true })
    if (!m) break
    const body = JSON.parse(m.content.toString()) as Record<string, unknown>
    t.equal(m.properties.messageId, body.id, 'message_id is the event id')
    t.equal(m.properties.deliveryMode, 2, 'persistent')
    t.equal(m.fields.routingKey, `shop.${(body.data as { service: string }).service}.${String(body.type).split('.').pop()}`)
    seen.push({ id: String(body.id), type: String(body.type), uid: String((body.data as { uid: string }).uid), body })
  }
  await conn2.close()
  t.same(checkEvents(seen, everRegistered, gone), [], `${seen.length} events`)
  t.same(seen.filter((e) => (e.body.data as { cluster?: string }).cluster !== CLUSTER).map((e) => e.id), [], `every event's data carries the cluster's mark (${CLUSTER})`)

  const m = await relay.metrics()
  t.match(m, /enlist_relay_events_total\{type="registered",result="applied"\} [1-9]/)
  t.match(m, /enlist_relay_events_total\{type="deregistered",result="applied"\} [1-9]/)
  t.match(m, /enlist_relay_cmdb_failures_total [1-9]/)
  t.match(m, /enlist_relay_lag_seconds_count [1-9]/)
  t.equal(await relay.stop(), 0, 'SIGTERM: a graceful stop')

  // rebuild from the ledger: a CMDB restored from an old backup is made right
  cmdb.records.clear()
  // a stray of this cluster the snapshot lacks (a pod UID: nothing else is ever a path to DELETE)
  cmdb.records.set('0badc0de-0000-4000-8000-000000000001', { uid: '0badc0de-0000-4000-8000-000000000001', namespace: 'shop', pod: 'ghost', cluster: CLUSTER })
  // another source cluster's entry: never this relay's to delete
  const theirs = { uid: '0badc0de-0000-4000-8000-000000000002', namespace: 'shop', pod: 'theirs', cluster: 'dr' }
  cmdb.records.set(theirs.uid, structuredClone(theirs))
  const dir = tempDir('enlist-rebuild-')
  writeFileSync(join(dir, 'username'), RABBIT_USERS.enlist.username)
  writeFileSync(join(dir, 'password'), RABBIT_USERS.enlist.password)
  const rebuilt = await runEnlist(['relay', '--rebuild', '--source=amqp', `--url=${proxy.url('amqp')}`, `--cmdb-url=${cmdb.url}`, '--cmdb-allow-insecure-http', '--allow-insecure', `--credentials-dir=${dir}`, `--kubeconfig=${cp.kubeconfig}`, '--namespace=enlist-system', `--cluster=${CLUSTER}`], { timeoutMs: 60_000 })
  rmSync(dir, { recursive: true, force: true })
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  t.match(JSON.parse(rebuilt.stdout.trim().split('\n').pop()!), { rebuilt: true, put: live.size, deleted: 1 })
  t.same(new Set(cmdb.records.keys()), new Set([...live, theirs.uid]))
  t.same(cmdb.records.get(theirs.uid), theirs, "the other cluster's entry, byte for byte")
})

t.test('the relay never wedges and trusts no stranger: a 413 is dead-lettered and the next applied; an unsigned event is refused; replay re-applies', async (t) => {
  // self-contained: the backend with working credentials, whatever the tests before left
  await setPolicy(cp, policyWith('enlist-amqp-credentials'))
  const store = await cmdbFor(t)
  const front = await startStatusProxy(store.url)
  t.teardown(() => front.close())
  const queue = 'enlist-relay-dead-letters'
  const common = ['--source=amqp', `--url=${proxy.url('amqp')}`, '--cmdb-allow-insecure-http', '--allow-insecure', '--timeout=3s', '--namespace=enlist-system', `--cluster=${CLUSTER}`, `--queue=${queue}`]
  const relay = await startRelay(cp, [...common, `--cmdb-url=${front.url}`, '--no-initial-rebuild', `--signing-keys-dir=${signing.dir}`], RABBIT_USERS.enlist)
  t.teardown(() => relay.stop())

  const big = await createPod(cp, 'shop', 'dl-big')
  front.statuses.set(big.metadata!.uid!, 413)
  await register(cp, big)
  const next = await createPod(cp, 'shop', 'dl-next')
  await register(cp, next)
  await waitFor('the next event applied', async () => store.records.has(next.metadata!.uid!), 60_000, 200)
  t.notOk(store.records.has(big.metadata!.uid!))
  t.match(await relay.metrics(), /enlist_relay_dead_letters_total\{reason="cmdb_rejected"\} 1/)
  t.equal((await relay.readyz()).status, 200, 'the relay is ready: the CMDB is fine, the event was not')

  // a stranger with write on the exchange: a well-formed event, unsigned
  const conn = await amqp.connect({ hostname: '127.0.0.1', port: rabbit.port, ...RABBIT_USERS.enlist })
  t.teardown(() => conn.close().catch(() => undefined))
  const ch = await conn.createConfirmChannel()
  const forgedUid = '0badc0de-0000-4000-8000-0000000000f1'
  const forged = registeredEvent('/clusters/e2e', { uid: forgedUid, namespace: 'shop', pod: 'forged', service: 'orders', ip: '10.6.6.6', ips: ['10.6.6.6'], hostIP: 'h', node: 'n', ports: [], metadata: {}, registeredAt: new Date().toISOString(), advertised: { mode: 'podIP', address: '10.6.6.6', ports: [] }, cluster: CLUSTER })
  await new Promise<void>((resolve, reject) => ch.publish('enlist.registrations', 'shop.orders.registered', encodeEvent(forged), { persistent: true }, (err: unknown) => (err ? reject(err as Error) : resolve())))
  await waitFor('the unsigned event refused', async () => /enlist_relay_dead_letters_total\{reason="unsigned"\} 1/.test(await relay.metrics()), 30_000, 200)
  const after = await createPod(cp, 'shop', 'dl-after')
  await register(cp, after)
  await waitFor('applied after it', async () => store.records.has(after.metadata!.uid!), 60_000, 200)
  t.notOk(store.records.has(forgedUid), 'the unsigned event never reached the CMDB')
  t.equal((await ch.checkQueue(`${queue}.dead`)).messageCount, 2, 'two dead letters in the relay\'s dead-letter queue')
  t.equal(await relay.stop(), 0)

  front.statuses.clear()
  const creds = tempDir('enlist-replay-')
  writeFileSync(join(creds, 'username'), RABBIT_USERS.enlist.username)
  writeFileSync(join(creds, 'password'), RABBIT_USERS.enlist.password)
  const replay = ['relay', '--replay-dead-letters', ...common, `--cmdb-url=${front.url}`, `--credentials-dir=${creds}`, `--kubeconfig=${cp.kubeconfig}`, `--signing-keys-dir=${signing.dir}`]
  const r1 = await runEnlist(replay, { timeoutMs: 60_000 })
  t.equal(r1.code, 0, r1.stderr)
  t.same(JSON.parse(r1.stdout.trim().split('\n').pop()!), { replayed: 1, kept: 1 })
  t.ok(store.records.has(big.metadata!.uid!), 'the refused record applied once the CMDB takes it')
  t.notOk(store.records.has(forgedUid), 'the unsigned one is still refused')
  const r2 = await runEnlist([...replay, '--allow-unsigned'], { timeoutMs: 60_000 })
  rmSync(creds, { recursive: true, force: true })
  t.equal(r2.code, 0, r2.stderr)
  t.same(JSON.parse(r2.stdout.trim().split('\n').pop()!), { replayed: 1, kept: 0 })
  t.ok(store.records.has(forgedUid), '--allow-unsigned applies it')
  t.equal((await ch.checkQueue(`${queue}.dead`)).messageCount, 0, 'nothing left')
  await ch.close()
  for (const p of [big, next, after]) await forceDelete(cp, p)
})
