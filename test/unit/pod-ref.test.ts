// podRef and podRefOf: the one reference to a pod, from a reference-shaped value or a pod.
import t from 'tap'
import { podRef, podRefOf } from '../../src/kube/pod-ref.js'
import { buildRecord } from '../../src/registry/record.js'

t.test('a reference from a pod, a PodRef, and a registry record (which has a metadata field of its own)', async (t) => {
  const want = { namespace: 'shop', pod: 'orders-1', uid: 'u-1' }
  t.same(podRefOf({ metadata: { namespace: 'shop', name: 'orders-1', uid: 'u-1' } }), want, 'from a pod')
  const entry = { namespace: 'shop', pod: 'orders-1', uid: 'u-1', service: 'orders' }
  t.same(podRef(entry), want, 'from a PodRef with more: just the reference')
  const record = buildRecord({ metadata: { namespace: 'shop', name: 'orders-1', uid: 'u-1' }, status: { podIP: '10.0.0.1' } }, { service: 'orders', metadata: { name: 'tenant-chosen', uid: 'x' } }, '2025-01-01T00:00:00Z')
  t.same(podRef(record), want, "from a record: its own fields, never its metadata's")
})
