// The pod cache's slim view: every field the controller, the kubernetes backend and the
// key rotator read is kept, and gives the same answers as the whole pod; little else is.
// Code given a PodView cannot read a field the view lacks: the compiler refuses it (the
// expected-error lines below), so a field enlist starts reading later fails `make typecheck`
// until pod-view.ts keeps it, and this test then checks it is kept right.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { readFileSync } from 'node:fs'
import { goneReason } from '../../src/controller/registry-controller.js'
import { newKey } from '../../src/decision/keyring.js'
import { internedCount, MAX_VIEW_PORTS, opensWith, type PodView, recordDigest, revalidate, sealKeyOfView, viewOf } from '../../src/kube/pod-view.js'
import { admit } from '../../src/admission/review.js'
import { KubernetesBackend } from '../../src/registry/kubernetes.js'
import { registeredCondition } from '../../src/registration/condition.js'
import { buildRecord, encodeRecord } from '../../src/registry/record.js'
import type { KubeClient } from '../../src/kube/client.js'
import { applyOps, decodePatch, FACTS_ENABLED, makePolicy, TEST_KEYS } from '../helpers/fixtures.js'

const policy = makePolicy()
const typical = (JSON.parse(readFileSync(new URL('../../bench/fixtures/typical.json', import.meta.url), 'utf8')) as { request: { object: V1Pod } }).request.object

/** The typical fixture as enlist injects it, then running and registered, record written. */
function richPod(name = 'orders-1', uid = 'u-1'): V1Pod {
  const out = admit({ uid: 'r', kind: { kind: 'Pod' }, resource: { resource: 'pods' }, operation: 'CREATE', namespace: 'shop', object: typical }, policy, FACTS_ENABLED)
  const pod = applyOps(typical, decodePatch(out.response.patch))
  pod.metadata = { ...pod.metadata, name, namespace: 'shop', uid, resourceVersion: '42' }
  pod.spec = { ...pod.spec!, nodeName: 'node-7' }
  pod.spec.containers[0]!.ports = [{ name: 'http', containerPort: 8080, protocol: 'TCP', hostPort: 30080 }, { containerPort: 9090 }]
  pod.status = {
    phase: 'Running',
    podIP: '10.244.0.7',
    podIPs: [{ ip: '10.244.0.7' }, { ip: 'fd00::7' }],
    hostIP: '192.168.1.2',
    conditions: [
      { type: 'Ready', status: 'True' },
      { type: 'enlist.io/registered', status: 'True', reason: 'Registered', message: 'registered with kubernetes', lastTransitionTime: '2026-11-23T12:00:00Z' as never },
    ],
    containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'x', imageID: 'y' }],
  }
  const status = JSON.parse(pod.metadata.annotations!['enlist.io/status']!.replace(/,"seal":.*$/, '}')) as { decision: { service: string; metadata: Record<string, string> } }
  pod.metadata.annotations = { ...pod.metadata.annotations, 'app.io/annotation': encodeRecord(buildRecord(pod, status.decision, '2026-11-23T12:00:00Z')) }
  return pod
}

const opts = { ring: TEST_KEYS.ring, recordAnnotations: ['app.io/annotation'], recordLabels: ['app.io/label'] }

t.test('every kept field, and the same answers as the whole pod', async (t) => {
  const pod = richPod()
  const v = viewOf(pod, opts)
  t.same(v.metadata, { uid: 'u-1', namespace: 'shop', name: 'orders-1', resourceVersion: '42', labels: { 'app.io/label': 'app.io-value' } }, 'of the labels, only the discovery label enlist reads')
  t.equal(v.spec.nodeName, 'node-7')
  t.same(v.spec.containers[0]!.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP', hostPort: 30080 }, { containerPort: 9090 }])
  t.same(v.status, {
    phase: 'Running',
    podIP: '10.244.0.7',
    podIPs: [{ ip: '10.244.0.7' }, { ip: 'fd00::7' }],
    hostIP: '192.168.1.2',
    conditions: [{ type: 'enlist.io/registered', status: 'True', reason: 'Registered', lastTransitionTime: '2026-11-23T12:00:00Z' }],
  })
  t.match(v.enlist.sealed, { key: TEST_KEYS.signing.id, decision: { namespace: 'shop', serviceAccount: 'default', service: 'orders' } })
  t.equal(v.enlist.records['app.io/annotation'], recordDigest(pod.metadata!.annotations!['app.io/annotation']!))
  t.equal(sealKeyOfView(v), TEST_KEYS.signing.id)

  t.same(registeredCondition(v), registeredCondition(pod))
  t.same(buildRecord(v, v.enlist.sealed!.decision, 'T'), buildRecord(pod, v.enlist.sealed!.decision, 'T'), 'the same record from the view as from the pod')
  t.equal(goneReason(v), goneReason(pod))
  const deleting = { ...pod, metadata: { ...pod.metadata, deletionTimestamp: '2026-11-23T13:00:00Z' as never } }
  t.equal(goneReason(viewOf(deleting, opts)), 'the pod is terminating')
  t.equal(viewOf(deleting, opts).metadata.deletionTimestamp, '2026-11-23T13:00:00Z')
  t.equal(goneReason(viewOf({ ...pod, status: { ...pod.status, phase: 'Succeeded' } }, opts)), 'the pod has finished (Succeeded)')

  const single = viewOf({ ...pod, status: { ...pod.status, podIPs: [{ ip: '10.244.0.7' }] } }, opts)
  t.equal(single.status.podIPs, undefined, 'one IP is podIP: not kept twice')
  t.same(buildRecord(single, { service: 's', metadata: {} }, 'T').ips, ['10.244.0.7'])

  const whole = JSON.stringify({ ...pod, metadata: { ...pod.metadata, managedFields: undefined } }).length
  const slim = JSON.stringify(v).length
  t.ok(slim * 4 < whole, `a view of ${slim} bytes of JSON for a pod of ${whole}`)

  // The compiler keeps consumers to what the view has:
  // @ts-expect-error env is not kept
  void v.spec.containers[0]?.env
  // @ts-expect-error annotations are not kept, only digests of the record annotations
  void v.metadata.annotations
  // @ts-expect-error container statuses are not kept
  void v.status.containerStatuses
})

t.test('the kubernetes backend tells its own record from an edited one by the digest', async (t) => {
  const pod = richPod()
  const backend = new KubernetesBackend({ name: 'kubernetes', layout: 'enlist', dubboLabelValue: 'dubbo.io.provider' }, {} as KubeClient, policy.spec.discovery, { pods: () => [] })
  const v = viewOf(pod, opts)
  const record = buildRecord(pod, v.enlist.sealed!.decision, '2026-11-23T12:00:00Z')
  t.notOk(backend.drifted(v, record), 'enlist\'s own record')
  const edited = viewOf({ ...pod, metadata: { ...pod.metadata, annotations: { ...pod.metadata!.annotations, 'app.io/annotation': encodeRecord({ ...record, service: 'payments' }) } } }, opts)
  t.ok(backend.drifted(edited, record), 'an edited record')
  const unlabelled = viewOf({ ...pod, metadata: { ...pod.metadata, labels: { ...pod.metadata!.labels, 'app.io/label': 'other' } } }, opts)
  t.ok(backend.drifted(unlabelled, record), 'a changed discovery label')
  const listed = new KubernetesBackend({ name: 'kubernetes', layout: 'enlist', dubboLabelValue: 'dubbo.io.provider' }, {} as KubeClient, policy.spec.discovery, { pods: () => [v, viewOf({ ...pod, metadata: { ...pod.metadata, uid: 'u-2', name: 'bare', annotations: {} } }, opts)] })
  t.same(await listed.list(), [{ uid: 'u-1', namespace: 'shop', pod: 'orders-1' }], 'entries: the pods that carry a record')
})

t.test('replicas share their labels, ports and decision', async (t) => {
  const a = viewOf(richPod('orders-1', 'u-1'), opts)
  const b = viewOf(richPod('orders-2', 'u-2'), opts)
  t.equal(a.metadata.labels, b.metadata.labels)
  t.equal(a.spec.containers, b.spec.containers)
  t.equal(a.enlist.sealed!.decision, b.enlist.sealed!.decision)
  t.not(a.metadata.uid, b.metadata.uid)
})

t.test('seals are opened once; a key that arrives later, or is revoked, is taken into account', async (t) => {
  const pod = richPod()
  const early = viewOf(pod, { ...opts, ring: { keys: [newKey(Date.now(), Date.now())] } })
  t.equal(early.enlist.sealed, undefined, 'not opened: this replica lacks the key')
  t.equal(early.enlist.pending?.key, TEST_KEYS.signing.id)
  t.equal(sealKeyOfView(early), TEST_KEYS.signing.id, 'the rotator still sees the key named')
  t.ok(opensWith(early, TEST_KEYS.ring), 'the key arrived: the pod is to be read again')
  t.notOk(opensWith(early, { keys: [newKey(Date.now(), Date.now())] }), 'another key: not yet')
  t.same(early.enlist.pending, { key: TEST_KEYS.signing.id }, 'only the key id is kept, not the status text')

  const v = viewOf(pod, opts)
  revalidate(v, { keys: [newKey(Date.now(), Date.now())] })
  t.equal(v.enlist.sealed, undefined, 'its key was revoked: no decision any more')

  const forged: V1Pod = { ...pod, metadata: { ...pod.metadata, annotations: { ...pod.metadata!.annotations, 'enlist.io/status': pod.metadata!.annotations!['enlist.io/status']!.replace('"orders"', '"payments"') } } }
  const f = viewOf(forged, opts)
  t.equal(f.enlist.sealed, undefined, 'an edited status opens to nothing')
  t.equal(f.enlist.pending, undefined)
})


// --- issue 24, finding 2: a cache no tenant can grow -------------------------------------

/** A status that looks sealed, under a key id no replica holds (made up), padded to `bytes`. */
function madeUpStatus(bytes: number, i = 0): string {
  const body = JSON.stringify({ version: 'v1', decision: { namespace: 'evil', serviceAccount: 'default', service: 'orders', metadata: {}, dependsOn: [] }, pad: 'x'.repeat(bytes) }).slice(0, -1)
  return `${body},"seal":{"key":"kmadeup${i}-abc","mac":"${'A'.repeat(43)}"}}`
}

/** A look-alike: the managed label, `labels` more labels, a big status under a made-up key,
 *  in a namespace enlist never injected. Every label value is its own, so nothing is shared. */
function lookalike(i: number, labels: number, statusBytes: number): V1Pod {
  const l: Record<string, string> = { 'enlist.io/managed': 'true' }
  for (let j = 0; j < labels; j++) l[`l${j}.evil.example/k${j}`] = `v${i}-${j}`.padEnd(40, 'x')
  return {
    metadata: { name: `evil-${i}`, namespace: 'evil', uid: `evil-${i}`, resourceVersion: '7', labels: l, annotations: { 'enlist.io/status': madeUpStatus(statusBytes, i) } },
    spec: { containers: Array.from({ length: 20 }, (_, c) => ({ name: `c${c}`, image: 'x', ports: Array.from({ length: 50 }, (_, p) => ({ containerPort: 1000 + c * 50 + p + i })) })) },
    status: { phase: 'Running', podIP: '10.0.0.9' },
  }
}

t.test('a look-alike pod: its view does not grow with what it carries (4,000 labels, a 200 KB status)', async (t) => {
  const small = viewOf(lookalike(1, 0, 0), opts)
  const big = viewOf(lookalike(2, 4000, 200_000), opts)
  const bytes = (v: PodView): number => JSON.stringify(v).length
  t.comment(`view of a bare look-alike: ${bytes(small)} bytes of JSON; of one with 4,000 labels and a 200 KB status: ${bytes(big)}`)
  t.ok(bytes(big) <= bytes(small) + 16, `the same size whatever the pod carries (${bytes(big)} vs ${bytes(small)} bytes; the unfixed view kept every label and the status text: over 300,000)`)
  t.ok(bytes(big) < 600, `a few hundred bytes (${bytes(big)})`)
  t.same(big.metadata.labels, {}, 'no label enlist reads: none kept')
  t.same(big.enlist.pending, { key: 'kmadeup2-abc' }, 'of the status, only the key id it names')
  t.same(big.spec.containers, [], 'no seal of enlist\'s: its ports are never read, and not kept')
  t.equal(sealKeyOfView(big), 'kmadeup2-abc')
  // a key id longer than a key id can be is no key of enlist's
  const longKey = viewOf({ ...lookalike(3, 0, 0), metadata: { ...lookalike(3, 0, 0).metadata, annotations: { 'enlist.io/status': madeUpStatus(10).replace('kmadeup0-abc', 'k'.repeat(64)) } } }, opts)
  t.equal(longKey.enlist.pending, undefined)

  // a sealed pod keeps its ports, at most MAX_VIEW_PORTS
  const pod = richPod()
  pod.spec!.containers = Array.from({ length: 30 }, (_, c) => ({ name: `c${c}`, image: 'x', ports: Array.from({ length: 10 }, (_, p) => ({ containerPort: 2000 + c * 10 + p })) }))
  const sealed = viewOf(pod, opts)
  t.ok(sealed.enlist.sealed, 'sealed')
  t.equal(sealed.spec.containers.flatMap((c) => c.ports ?? []).length, MAX_VIEW_PORTS, `${MAX_VIEW_PORTS} ports kept of 300`)
})

t.test('the heap N look-alike views hold does not grow with what the pods carry', async (t) => {
  const { setFlagsFromString } = await import('node:v8')
  const { runInNewContext } = await import('node:vm')
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const settle = async (): Promise<number> => {
    for (let i = 0; i < 3; i++) {
      gc()
      await new Promise((r) => setImmediate(r))
    }
    return process.memoryUsage().heapUsed
  }
  const N = 100
  const held: PodView[] = []
  const before = await settle()
  for (let i = 0; i < N; i++) held.push(viewOf(lookalike(100 + i, 4000, 200_000), opts))
  const after = await settle()
  const perPod = (after - before) / N
  t.comment(`${N} views of look-alikes (4,000 labels, a 200 KB status each): ${Math.round((after - before) / 1024)} KiB of heap, ${Math.round(perPod)} bytes a pod`)
  t.ok(perPod < 4096, `under 4 KiB of heap a pod (${Math.round(perPod)} bytes; the unfixed cache held about 0.5 MB a pod)`)
  t.equal(held.length, N)

  // what the views shared is held only while they are: none of it outlives them
  held.length = 0
  const interned = internedCount()
  const sealed: PodView[] = []
  for (let i = 0; i < 200; i++) sealed.push(viewOf({ ...richPod(`o-${i}`, `u-${i}`), spec: { containers: [{ name: 'a', image: 'x', ports: [{ containerPort: 3000 + i }] }] } }, opts))
  t.ok(internedCount() >= interned + 200, 'each distinct port set interned')
  sealed.length = 0
  for (let i = 0; i < 50 && internedCount() > interned; i++) await settle()
  t.ok(internedCount() <= interned, `interned values of views dropped are collected (${internedCount()} held, ${interned} before; the unfixed interner kept 20,000)`)
})
