// The kubernetes backend in dubbo-go's layout on a real control plane: a consumer that works
// as dubbo-go's Kubernetes registry does (test/helpers/dubbo-go-consumer.ts) discovers the pods
// enlist registered beside a pod a dubbo-go provider wrote itself, and loses a pod exactly when
// enlist deregisters it (while the pod is still terminating).
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { startControlPlane } from '../harness/control-plane.js'
import { startEnlist } from '../harness/enlist.js'
import { runRegistrar, startPod } from '../harness/kubelet.js'
import { waitFor } from '../harness/processes.js'
import { startDubboGoConsumer } from '../helpers/dubbo-go-consumer.js'

const cp = await startControlPlane()
t.teardown(() => cp.stop())
const enlist = await startEnlist(cp, {
  policy: (p) => {
    p.registry = { backends: [{ name: 'dubbo-go', type: 'kubernetes', layout: 'dubbo' }], reconcileIntervalSeconds: 5 }
  },
})
t.teardown(() => enlist.stop())
await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })
const consumer = await startDubboGoConsumer(cp.client, 'shop')
t.teardown(() => consumer.stop())
const IFACE = 'com.acme.Orders'
const view = () => consumer.providers(IFACE).map((p) => `${p.host}:${p.port}`)

async function provider(name: string): Promise<V1Pod> {
  const created = await cp.client.create<V1Pod>('/api/v1/namespaces/shop/pods', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'orders' }, annotations: { 'enlist.io/metadata': JSON.stringify({ interface: IFACE, methods: 'get' }) } },
    spec: { containers: [{ name: 'app', image: 'orders:1', ports: [{ name: 'dubbo', containerPort: 20880 }] }] },
  })
  const pod = await startPod(cp, created)
  const run = await runRegistrar(cp, pod)
  if (run.code !== 0) throw new Error(`registrar exited ${run.code}: ${run.stdout}${run.stderr}`)
  return pod
}

t.test('dubbo-go consumers discover the pods enlist registered, beside one dubbo-go wrote', async (t) => {
  // a provider pod exactly as dubbo-go's own provider writes it (outside enlist: opted out)
  const url = `dubbo://10.9.9.9:20000/${IFACE}?anyhost=true&category=providers&dubbo=dubbo-provider-golang-1.5.0&interface=${IFACE}&methods=get&side=provider`
  const pairs = [{ k: `/dubbo/${IFACE}/providers`, v: '' }, { k: `/dubbo/${IFACE}/providers/${encodeURIComponent(url)}`, v: '' }]
  await cp.client.create('/api/v1/namespaces/shop/pods', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'go-provider',
      labels: { 'dubbo.io/label': 'dubbo.io.provider' },
      annotations: { 'enlist.io/inject': 'false', 'dubbo.io/annotation': Buffer.from(JSON.stringify(pairs)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_') },
    },
    spec: { containers: [{ name: 'app', image: 'go:1' }] },
  })
  const a = await provider('orders-a')
  const b = await provider('orders-b')
  const want = [`${a.status!.podIP}:20880`, `${b.status!.podIP}:20880`, '10.9.9.9:20000'].sort()
  await waitFor('the consumer sees three providers', async () => JSON.stringify(view()) === JSON.stringify(want), 30_000, 100)
  const enlisted = consumer.providers(IFACE).find((p) => p.host === a.status!.podIP)!
  t.match(enlisted.params, { interface: IFACE, methods: 'get', side: 'provider', application: 'orders' })
  const fresh = await cp.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/orders-a`)
  t.equal(fresh.metadata!.labels!['dubbo.io/label'], 'dubbo.io.provider', "dubbo-go's provider label")

  // a graceful delete: the pod lingers terminating, but the consumer drops it at once
  await cp.client.delete('/api/v1/namespaces/shop/pods/orders-a')
  await waitFor('the consumer lost orders-a', async () => !view().includes(`${a.status!.podIP}:20880`), 30_000, 100)
  const terminating = await cp.client.get<V1Pod>('/api/v1/namespaces/shop/pods/orders-a')
  t.ok(terminating.metadata!.deletionTimestamp, 'while the pod is still terminating')
  t.equal(terminating.metadata!.labels?.['dubbo.io/label'], undefined, 'the label went with the annotation')
  t.same(view(), [`${b.status!.podIP}:20880`, '10.9.9.9:20000'].sort(), 'nothing else changed')
})
