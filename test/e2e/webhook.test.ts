// The MutatingWebhookConfiguration from manifests/: what the apiserver does when enlist is
// down, and reinvocation next to another mutating webhook.
import t from 'tap'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { V1Pod } from '@kubernetes/client-node'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { podManifest } from '../harness/k8s.js'
import { makePki } from '../helpers/https.js'
import { missingItems } from '../helpers/corpus.js'

const cp = await controlPlaneFor(t)
const enlist = await enlistFor(t, cp, { optIn: ['shop'], plain: ['plain'] })

const pod = (name: string, annotations: Record<string, string> = {}, labels: Record<string, string> = {}) =>
  JSON.stringify(podManifest(name, { annotations, labels }))

t.test('reinvocation next to a webhook that changes the pod after enlist: nothing duplicated', async (t) => {
  // Another mutating webhook that adds a sidecar and a label, as service meshes do.
  const pki = await makePki()
  let calls = 0
  const other = https.createServer({ cert: pki.serving.cert, key: pki.serving.key }, (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      calls++
      const review = JSON.parse(body) as { request: { uid: string; object: V1Pod } }
      const p = review.request.object
      const ops: unknown[] = []
      if (!p.spec!.containers.some((c) => c.name === 'mesh-proxy')) ops.push({ op: 'add', path: '/spec/containers/-', value: { name: 'mesh-proxy', image: 'proxy:1' } })
      if (!p.metadata?.labels) ops.push({ op: 'add', path: '/metadata/labels', value: { mesh: 'on' } })
      else if (p.metadata.labels.mesh === undefined) ops.push({ op: 'add', path: '/metadata/labels/mesh', value: 'on' })
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true }
      if (ops.length > 0) Object.assign(response, { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }))
    })
  })
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => other.close(() => r())))
  const port = (other.address() as AddressInfo).port

  for (const name of ['zz-mesh', 'aa-mesh']) {
    await cp.client.create('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        {
          name: `${name}.example.com`,
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          reinvocationPolicy: 'IfNeeded',
          failurePolicy: 'Fail',
          clientConfig: { url: `https://127.0.0.1:${port}/mutate`, caBundle: Buffer.from(pki.ca.cert).toString('base64') },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          namespaceSelector: { matchLabels: { 'enlist.io/inject': 'enabled' } },
        },
      ],
    })
    const podName = `meshed-${name}`
    const r = await cp.kubectl(['create', '-n', 'shop', '-o', 'json', '-f', '-'], { input: pod(podName) })
    t.equal(r.code, 0, r.stderr)
    const got = JSON.parse(r.stdout) as V1Pod
    const appOnly = structuredClone(got)
    appOnly.spec!.containers = appOnly.spec!.containers.filter((c) => c.name !== 'mesh-proxy')
    t.same(missingItems(appOnly), [], `${name}: every item`)
    t.same(got.spec!.initContainers!.map((c) => c.name).filter((n) => n === 'enlist-registrar'), ['enlist-registrar'], `${name}: one registrar`)
    t.equal(got.spec!.volumes!.filter((v) => v.name === 'enlist-token').length, 1, `${name}: one token volume`)
    t.equal(got.spec!.readinessGates!.length, 1, `${name}: one readiness gate`)
    t.equal(got.spec!.containers.filter((c) => c.name === 'mesh-proxy').length, 1, `${name}: one sidecar`)
    for (const c of got.spec!.containers) {
      const names = (c.env ?? []).map((e) => e.name)
      t.equal(new Set(names).size, names.length, `${name}: no duplicate env in ${c.name}`)
    }
    // log lines are batched (flushed within 250 ms): wait for them, then for any stragglers
    await enlist.waitForLog('the admission line', (l) => l.msg === 'admission' && l.pod === podName)
    await new Promise((r) => setTimeout(r, 600))
    const lines = enlist.logs().filter((l) => l.msg === 'admission' && l.pod === podName)
    if (name === 'zz-mesh') {
      // enlist first, the mesh after it: enlist is called again and adds nothing
      t.same(lines.map((l) => l.reason), ['namespace-opt-in', 'already-injected'], 'reinvoked, and a no-op')
      t.notOk(got.spec!.containers.find((c) => c.name === 'mesh-proxy')!.env, 'a container added after enlist is not touched on reinvocation')
    } else {
      // the mesh first: its sidecar is there when enlist injects, so it gets the env too;
      // any reinvocation the apiserver makes after that is a no-op
      t.equal(lines[0]?.reason, 'namespace-opt-in')
      t.ok(lines.slice(1).every((l) => l.reason === 'already-injected'), 'later calls add nothing')
      t.equal(got.spec!.containers.find((c) => c.name === 'mesh-proxy')!.env?.length, 8)
    }
    await cp.client.delete(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`)
  }
  t.ok(calls >= 4, 'the other webhook was called')
})

t.test('SIGTERM: enlist exits 0', async (t) => {
  t.equal(await enlist.stop(), 0)
  t.match(enlist.logs().at(-1), { msg: 'stopped' })
})

t.test('with enlist down, labelled namespaces refuse pods; system namespaces and annotation opt-in do not', async (t) => {
  const refused = await cp.kubectl(['create', '-n', 'shop', '-f', '-'], { input: pod('while-down') })
  t.not(refused.code, 0, 'failurePolicy Fail: no uninjected pod slips into an enlisted namespace')
  t.match(refused.stderr, /failed calling webhook "namespace\.inject\.enlist\.io"/)

  const labelOptIn = await cp.kubectl(['create', '-n', 'plain', '-f', '-'], { input: pod('label-while-down', {}, { 'enlist.io/inject': 'true' }) })
  t.not(labelOptIn.code, 0, 'a pod labelled for injection is refused too')
  t.match(labelOptIn.stderr, /failed calling webhook "object\.inject\.enlist\.io"/)

  const annotated = await cp.kubectl(['create', '-n', 'plain', '-o', 'json', '-f', '-'], { input: pod('annotated-while-down', { 'enlist.io/inject': 'true' }) })
  t.equal(annotated.code, 0, 'failurePolicy Ignore for annotation-only opt-in, as documented')
  t.equal((JSON.parse(annotated.stdout) as V1Pod).metadata?.annotations?.['enlist.io/status'], undefined)

  for (const ns of ['kube-system', 'enlist-system', 'default']) {
    const r = await cp.kubectl(['create', '-n', ns, '-f', '-'], { input: pod(`sys-while-down-${ns}`) })
    t.equal(r.code, 0, `${ns} still accepts pods: ${r.stderr}`)
  }

  await enlist.restart()
  const back = await cp.kubectl(['create', '-n', 'shop', '-o', 'json', '-f', '-'], { input: pod('after-restart') })
  t.equal(back.code, 0)
  t.same(missingItems(JSON.parse(back.stdout) as V1Pod), [])
})
