// The advertise override and the Dubbo check at admission: pure, from a policy and a pod.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { parseAdvertise } from '../../src/admission/annotations.js'
import { resolveSettings } from '../../src/admission/settings.js'
import { loadPolicy } from '../../src/policy/load.js'

t.test('enlist.io/advertise: one mode for all, or backend=mode pairs', async (t) => {
  t.same(parseAdvertise('nodePort', ['zk', 'etcd']), { ok: true, value: { zk: 'nodePort', etcd: 'nodePort' } })
  t.same(parseAdvertise(' zk=nodePort, etcd=hostIP ', ['zk', 'etcd']), { ok: true, value: { zk: 'nodePort', etcd: 'hostIP' } })
  const bad = parseAdvertise('zk=public', ['zk'])
  t.equal(bad.ok, false)
  if (!bad.ok) t.equal(bad.error.message, 'annotation enlist.io/advertise: "zk=public" is invalid: "public" is not a mode; accepted: a mode for every backend ("podIP", "hostIP", "nodePort"), or backend=mode pairs separated by commas, e.g. "zookeeper=nodePort"')
  const unknown = parseAdvertise('consul=podIP', ['zk'])
  if (!unknown.ok) t.match(unknown.error.message, /"consul" is not a registry backend of this cluster \(zk\)/)
  else t.fail('accepted an unknown backend')
})

const policy = loadPolicy(`apiVersion: enlist.io/v1alpha1
kind: Policy
cluster: {name: test}
registry:
  backends:
  - {name: zk, type: zookeeper, connect: "zk:2181", allowInsecure: true, layout: dubbo}
tenancy: {interfaces: [{namespaces: ["*"], interfaces: ["*"]}]}
tenantOverrides: {allowed: [metadata, advertise]}
`)
const pod = (annotations: Record<string, string>, ports = [{ name: 'dubbo', containerPort: 20880 }]): V1Pod => ({
  metadata: { name: 'p', namespace: 'shop', annotations },
  spec: { containers: [{ name: 'app', image: 'x', ports }] },
})
const settle = (p: V1Pod) => resolveSettings(p, 'shop', { kind: 'Pod', name: 'p' }, policy, undefined)

t.test('a dubbo layout needs every pod to be a Dubbo provider, checked at admission', async (t) => {
  t.same(policy.dubboBackends, ['zk'], 'computed once per policy')
  const ok = settle(pod({ 'enlist.io/metadata': '{"interface":"com.acme.Orders"}', 'enlist.io/advertise': 'zk=nodePort' }))
  t.equal(ok.ok, true)
  if (ok.ok) t.same(ok.settings.advertise, { zk: 'nodePort' }, 'the override goes into the decision')
  const none = settle(pod({}))
  t.equal(none.ok, false)
  if (!none.ok) {
    t.match(none.error, { key: 'enlist.io/metadata' })
    t.match(none.error.message, /the registry backend zk registers every pod as a Dubbo provider: the metadata has no "interface"/)
  }
  const noPort = settle(pod({ 'enlist.io/metadata': '{"interface":"a.B"}' }, [{ name: 'http', containerPort: 80 }, { name: 'admin', containerPort: 81 }]))
  if (!noPort.ok) t.match(noPort.error.message, /cannot tell which port serves dubbo/)
  else t.fail('accepted a pod with no Dubbo port')
})
