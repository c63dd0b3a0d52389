// The kubernetes backend in dubbo-go's layout on a real control plane: a consumer that works
// as dubbo-go's Kubernetes registry does (test/helpers/dubbo-go-consumer.ts) discovers the pods
// enlist registered beside a pod a dubbo-go provider wrote itself, and loses a pod exactly when
// enlist deregisters it (while the pod is still terminating).
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { podPath, podsPath } from '../../src/kube/pod-ref.js'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { podManifest } from '../harness/k8s.js'
import { startRegistered } from '../harness/kubelet.js'
import { owned, waitFor } from '../harness/processes.js'
import { startDubboGoConsumer } from '../helpers/dubbo-go-consumer.js'
import { DUBBO_GO_PROVIDER } from '../helpers/dubbo-go-provider.js'

// an interface the dubbo-go provider below serves, so enlist's pods and its pod are providers of one
const IFACE = DUBBO_GO_PROVIDER.interfaces[1]!
const cp = await controlPlaneFor(t)
await enlistFor(t, cp, {
  policy: (p) => {
    p.registry = { backends: [{ name: 'dubbo-go', type: 'kubernetes', layout: 'dubbo' }], reconcileIntervalSeconds: 5 }
    p.tenancy = { interfaces: [{ namespaces: ['shop'], interfaces: [IFACE] }] }
  },
  optIn: ['shop'],
})
const consumer = await owned(t, startDubboGoConsumer(cp.client, 'shop'), (c) => c.stop())
const view = () => consumer.providers(IFACE).map((p) => `${p.host}:${p.port}`)

async function provider(name: string): Promise<V1Pod> {
  const created = await cp.client.create<V1Pod>(
    podsPath('shop'),
    podManifest(name, {
      labels: { app: 'orders' },
      annotations: { 'enlist.io/metadata': JSON.stringify({ interface: IFACE, methods: 'get' }) },
      containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }],
    }),
  )
  return startRegistered(cp, created)
}

t.test('dubbo-go consumers discover the pods enlist registered, beside one dubbo-go wrote', async (t) => {
  // a provider pod with the label and annotation dubbo-go itself wrote, from its own test data
  // (test/helpers/dubbo-go-provider.ts), outside enlist: opted out
  await cp.client.create(podsPath('shop'), {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'go-provider',
      labels: DUBBO_GO_PROVIDER.label,
      annotations: { 'enlist.io/inject': 'false', 'dubbo.io/annotation': DUBBO_GO_PROVIDER.annotation },
    },
    spec: { containers: [{ name: 'app', image: 'go:1' }] },
  })
  const a = await provider('orders-a')
  const b = await provider('orders-b')
  const want = [`${a.status!.podIP}:20880`, `${b.status!.podIP}:20880`, DUBBO_GO_PROVIDER.address].sort()
  await waitFor('the consumer sees three providers', async () => JSON.stringify(view()) === JSON.stringify(want), 30_000, 100)
  const enlisted = consumer.providers(IFACE).find((p) => p.host === a.status!.podIP)!
  t.match(enlisted.params, { interface: IFACE, methods: 'get', side: 'provider', application: 'orders' })
  const ordersA = podPath({ namespace: 'shop', pod: 'orders-a' })
  const fresh = await cp.client.get<V1Pod>(ordersA)
  t.equal(fresh.metadata!.labels!['dubbo.io/label'], 'dubbo.io.provider', "dubbo-go's provider label")

  // a graceful delete: the pod lingers terminating, but the consumer drops it at once
  await cp.client.delete(ordersA)
  await waitFor('the consumer lost orders-a', async () => !view().includes(`${a.status!.podIP}:20880`), 30_000, 100)
  const terminating = await cp.client.get<V1Pod>(ordersA)
  t.ok(terminating.metadata!.deletionTimestamp, 'while the pod is still terminating')
  t.equal(terminating.metadata!.labels?.['dubbo.io/label'], undefined, 'the label went with the annotation')
  t.same(view(), [`${b.status!.podIP}:20880`, DUBBO_GO_PROVIDER.address].sort(), 'nothing else changed')
})
