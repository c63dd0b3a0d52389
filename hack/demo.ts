// `make demo`: a real control plane and a real node (containerd and kubelet v1.20.2) on this
// machine, enlist installed from its manifests and running as pods, a labelled namespace,
// an annotated Deployment whose pod waits for its database, registers, turns Ready and
// joins its Service, and is deregistered while its preStop hook drains it. Where this
// machine cannot run a node (no root, no cgroup v1), the same story on the kubelet
// stand-in. The last line sums it up:
//
//   demo: pod NS/NAME on node NODE (kubelet VERSION, RUNTIME://VERSION): registered N ms
//   after creation, Ready N ms, deregistered N ms after deletion
//
// DEMO_HOLD=1 keeps the cluster up at the end (the default on a terminal); Ctrl-C, then or
// at any time, stops everything and removes what it made.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { V1Container, V1Endpoints, V1Pod } from '@kubernetes/client-node'
import { parseAllDocuments, stringify } from 'yaml'
import type { Decision } from '../src/decision/status.js'
import { REGISTERED_CONDITION, REGISTRAR_CONTAINER } from '../src/names.js'
import { decodeRecord } from '../src/registry/record.js'
import { type NodeCluster, startNodeCluster } from '../test/harness/cluster.js'
import { type ControlPlane, startControlPlane } from '../test/harness/control-plane.js'
import { ENLIST_NS, installEnlistOnNode } from '../test/harness/enlist-pod.js'
import { startEnlist, type EnlistServer } from '../test/harness/enlist.js'
import { listPods, waitForPods } from '../test/harness/k8s.js'
import { runRegistrar, startPod, syncReady } from '../test/harness/kubelet.js'
import { realNodeSupport, supportLine } from '../test/harness/node-support.js'
import { onInterrupt, waitFor } from '../test/harness/processes.js'
import { observe } from '../test/harness/watch.js'

const REPO = new URL('../', import.meta.url).pathname
const tty = process.stdout.isTTY === true
const c = (code: string, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s)
const bold = (s: string) => c('1', s)
const dim = (s: string) => c('2', s)
const green = (s: string) => c('32', s)
const yellow = (s: string) => c('33', s)
const say = (s = '') => process.stdout.write(`${s}\n`)
let stepNo = 0
const step = (s: string) => say(`\n${bold(`[${++stepNo}/8]`)} ${bold(s)}`)
const item = (k: string, v: string) => say(`      ${dim(k.padEnd(18))} ${v}`)
const progress = (l: string) => say(dim(`      ${l.replace(/^\[(control-plane|images)\]\s*/, '')}`))
const ms = (from: number, to: number) => `${Math.round(to - from)} ms`
const cond = (p: V1Pod | undefined, type: string) => p?.status?.conditions?.find((x) => x.type === type)

interface Summary {
  pod: string
  node: string
  kubelet: string
  runtime: string
  registered: number
  ready: number
  deregistered: number
}
const finalLine = (s: Summary) =>
  `demo: pod ${s.pod} on node ${s.node} (kubelet ${s.kubelet}, ${s.runtime}): registered ${Math.round(s.registered)} ms after creation, Ready ${Math.round(s.ready)} ms, deregistered ${Math.round(s.deregistered)} ms after deletion`

// --- cleanup on every path ------------------------------------------------------------
const stops: Array<() => Promise<void>> = []
let cleaning: Promise<void> | undefined
const cleanup = (): Promise<void> =>
  (cleaning ??= (async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined)
  })())
// On stderr: the summary stays the last line of stdout.
onInterrupt(async () => {
  process.stderr.write('\nstopping and cleaning up ...\n')
  await cleanup()
  process.stderr.write('cleaned up: every process stopped, every temp dir and the node removed\n')
})

/** examples/checkout.yaml, with its image replaced by the local test app: there is no registry here. */
function checkoutManifest(image: string): string {
  const docs = parseAllDocuments(readFileSync(join(REPO, 'examples/checkout.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: { template: { spec: { containers: V1Container[] } } } })
  for (const d of docs) {
    if (d.kind !== 'Deployment' || !d.spec) continue
    for (const ct of d.spec.template.spec.containers) {
      ct.image = image
      ct.imagePullPolicy = 'Never'
      ct.readinessProbe = { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 }
    }
  }
  return docs.map((d) => stringify(d)).join('---\n')
}

async function endpointsOf(cp: ControlPlane, name = 'checkout'): Promise<string> {
  const ep = await cp.client.get<V1Endpoints>(`/api/v1/namespaces/shop/endpoints/${name}`).catch(() => undefined)
  const ready = (ep?.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => `${a.ip}:${s.ports?.[0]?.port}`))
  const notReady = (ep?.subsets ?? []).flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip))
  return `Service ${name}: ready [${ready.join(', ')}]${notReady.length ? `, not ready [${notReady.join(', ')}]` : ''}`
}

function showInjected(pod: V1Pod): void {
  say(`      the pod ${bold(pod.metadata!.name!)} as enlist admitted it:`)
  const reg = pod.spec!.initContainers!.find((x) => x.name === REGISTRAR_CONTAINER)!
  const app = pod.spec!.containers[0]!
  const env = Object.fromEntries((reg.env ?? []).map((e) => [e.name, e.value]))
  const status = JSON.parse(pod.metadata!.annotations!['enlist.io/status']!) as { decision: Decision; seal: { key: string } }
  const d = status.decision
  item('init container', `${reg.name} (${reg.image}), first; non-root, read-only root fs, no capabilities`)
  item('  calls', String(env.ENLIST_REGISTRATION_URL))
  item('  waits for', d.dependsOn.join(', '))
  item('  registers as', `${d.service} with ${JSON.stringify(d.metadata)}`)
  item('  decided', `in enlist.io/status, sealed with key ${status.seal.key}: nothing in the pod spec can change it`)
  item('token volume', 'enlist-token: projected service-account token, audience enlist, registrar only')
  item('env (app)', (app.env ?? []).map((e) => e.name).join(' '))
  item('preStop (app)', JSON.stringify(app.lifecycle?.preStop))
  item('readiness gate', (pod.spec!.readinessGates ?? []).map((g) => g.conditionType).join(', '))
  item('labels', Object.entries(pod.metadata!.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(' '))
  item('enlist.io/status', dim(pod.metadata!.annotations!['enlist.io/status']!))
}

function showRecord(pod: V1Pod): void {
  const record = decodeRecord(pod.metadata!.annotations!['app.io/annotation']!)
  item('registry record', 'pod annotation app.io/annotation (base64 of {"k","v"} pairs) decodes to:')
  for (const l of JSON.stringify(record, null, 2).split('\n')) say(dim(`        ${l}`))
}

function whereNext(cp: ControlPlane, extra: string[]): void {
  step('Where to look next')
  const kc = cp.kubeconfig
  say(`      kubectl --kubeconfig ${kc} -n shop get pods -o yaml`)
  say(`      kubectl --kubeconfig ${kc} -n shop get events`)
  for (const l of extra) say(`      ${l}`)
  say(`      preview offline: npx enlist render -f examples/checkout.yaml --namespace-labels enlist.io/inject=enabled`)
  say(`      read on:         README.md, docs/policy.md, docs/install.md, docs/operations.md`)
  say(dim(`      (kubectl: ${cp.assets}/kubectl)`))
}

// --- on a real node --------------------------------------------------------------------
async function realNode(): Promise<Summary> {
  say(bold('enlist demo') + dim(' — a real kube-apiserver, kubelet v1.20.2 and containerd on this machine'))

  step('Control plane and a real node')
  const t0 = Date.now()
  const cluster: NodeCluster = await startNodeCluster({ log: progress })
  stops.push(() => cluster.stop())
  const { cp, node } = cluster
  item('apiserver', `${cp.server} (v1.20.2), with scheduler and controller manager`)
  item('node', `${node.name}: kubelet ${node.kubeletVersion}, ${node.runtimeVersion}, runc; pods in ${cluster.net.podCIDR}; up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  item('cluster DNS', `${cluster.net.hostIP}: Service names resolve as on any cluster`)

  step('Install enlist: kubectl apply -k manifests/overlays/self-managed')
  await installEnlistOnNode(cluster)
  for (const p of await listPods(cp, ENLIST_NS, 'app.kubernetes.io/name=enlist')) {
    item('pod', `${ENLIST_NS}/${p.metadata!.name} ${green(p.status!.phase!)} on ${p.spec!.nodeName} (${p.status!.containerStatuses?.[0]?.image}), ${p.status!.podIP}`)
  }
  item('webhook', 'MutatingWebhookConfiguration/enlist calls Service enlist-system/enlist; enlist wrote its own CA into the caBundle')

  step('A namespace that opts in, and the database checkout depends on')
  await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })
  item('namespace', 'shop, labelled enlist.io/inject=enabled')
  await cp.client.create('/api/v1/namespaces/shop/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' }, spec: { selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432, targetPort: 8080 }] } })
  item('service', 'db (port 5432), no pods yet')

  step('kubectl apply -f examples/checkout.yaml')
  say(dim(`      (its image swapped for the local test app ${cluster.images.app.ref}: there is no registry here)`))
  const pods = await observe<V1Pod>(cp.client, '/api/v1/namespaces/shop/pods', { labelSelector: 'app.kubernetes.io/name=checkout' })
  stops.push(async () => pods.stop())
  const applied = await cp.kubectl(['apply', '-n', 'shop', '-f', '-'], { input: checkoutManifest(cluster.images.app.ref) })
  if (applied.code !== 0) throw new Error(applied.stderr)
  for (const l of applied.stdout.trim().split('\n')) item('', l)
  const added = await waitFor('the checkout pod', async () => pods.seen.find((o) => o.type === 'ADDED'), 60_000, 50)
  const created = added.at
  const name = added.object.metadata!.name!
  showInjected(added.object)

  step(`The pod starts on ${node.name}; its registrar waits for db`)
  await waitFor('the registrar running', async () => pods.seen.find((o) => o.object.metadata?.name === name && o.object.status?.initContainerStatuses?.[0]?.state?.running), 120_000, 50)
  item('registrar', 'running: enlist holds its request (long-polling) until shop/db:5432 has a ready endpoint')
  const now = await cp.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/${name}`)
  item('pod IP', String(now.status?.podIP))
  item('app container', yellow(`not started (${now.status?.containerStatuses?.[0]?.state?.waiting?.reason})`))
  item('Ready', yellow('False') + dim(' (the registrar has not finished)'))
  item('endpoints', await endpointsOf(cp))
  await cp.kubectl(['create', 'deployment', 'db', '-n', 'shop', `--image=${cluster.images.app.ref}`])
  await cp.client.patch('/apis/apps/v1/namespaces/shop/deployments/db', {
    spec: { template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'app', imagePullPolicy: 'Never', readinessProbe: { httpGet: { path: '/', port: 8080 }, initialDelaySeconds: 2, periodSeconds: 1 } }] } } },
  }, 'application/strategic-merge-patch+json')
  item('db', 'kubectl create deployment db: starting, ready once its probe passes')

  step('db is ready: the registrar registers, the app starts, the pod turns Ready')
  const registered = await waitFor('registered', async () => pods.seen.find((o) => o.object.metadata?.name === name && cond(o.object, REGISTERED_CONDITION)?.status === 'True'), 120_000, 50)
  const ready = await waitFor('Ready', async () => pods.seen.find((o) => o.object.metadata?.name === name && cond(o.object, 'Ready')?.status === 'True'), 120_000, 50)
  const regLog = await cp.kubectl(['logs', '-n', 'shop', name, '-c', REGISTRAR_CONTAINER])
  for (const l of regLog.stdout.trim().split('\n').slice(-2)) say(dim(`      ${l}`))
  const regCond = cond(ready.object, REGISTERED_CONDITION)
  item('condition', `${REGISTERED_CONDITION}=${green('True')} (${regCond?.reason}: ${regCond?.message})`)
  const ids = Object.fromEntries([...(ready.object.status?.initContainerStatuses ?? []), ...(ready.object.status?.containerStatuses ?? [])].map((s) => [s.name, s.containerID?.replace('containerd://', '')]))
  const regExit = node.events().find((e) => e.topic === '/tasks/exit' && e.containerId === ids[REGISTRAR_CONTAINER] && !e.execId)
  const appStart = node.events().find((e) => e.topic === '/tasks/start' && e.containerId === ids.app)
  if (regExit && appStart) item('containerd', `registrar exited ${regExit.at.toISOString().slice(11, 23)}, app started ${appStart.at.toISOString().slice(11, 23)}`)
  item('Ready', green('True') + dim(` ${ms(created, ready.at)} after creation`))
  await waitFor('endpoints', async () => (await endpointsOf(cp)).includes(ready.object.status!.podIP!), 30_000)
  item('endpoints', green(await endpointsOf(cp)))
  showRecord(ready.object)

  step(`kubectl delete pod ${name}: enlist deregisters it while preStop drains it`)
  const deleting = Date.now()
  const del = cp.kubectl(['delete', 'pod', '-n', 'shop', name])
  const gone = await waitFor('deregistration', async () => pods.seen.find((o) => o.at >= deleting && o.object.metadata?.name === name && cond(o.object, REGISTERED_CONDITION)?.status === 'False'), 60_000, 50)
  const c2 = cond(gone.object, REGISTERED_CONDITION)
  item('condition', `${REGISTERED_CONDITION}=${yellow('False')} (${c2?.reason}: ${c2?.message}), ${ms(deleting, gone.at)} after the delete`)
  item('annotation', gone.object.metadata?.annotations?.['app.io/annotation'] === undefined ? 'the registry record is removed' : 'still there')
  item('endpoints', await endpointsOf(cp))
  const r = await del
  if (r.code !== 0) throw new Error(`kubectl delete: ${r.stderr}`)
  const appExit = node.events().find((e) => e.topic === '/tasks/exit' && e.containerId === ids.app && !e.execId)
  if (appExit) item('app stopped', `${ms(deleting, appExit.at.getTime())} after the delete, once the preStop hook had drained it`)
  const events = await cp.kubectl(['get', 'events', '-n', 'shop', '--sort-by=.lastTimestamp', '--field-selector', `involvedObject.name=${name}`, '-o', 'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}'])
  for (const l of events.stdout.trim().split('\n').filter((x) => /Registered|Deregistered/.test(x))) item('event', l)
  const replacement = (await listPods(cp, 'shop', 'app.kubernetes.io/name=checkout')).find((p) => !p.metadata?.deletionTimestamp)
  if (replacement) item('replacement', `${replacement.metadata?.name}: injected again (${replacement.spec?.initContainers?.[0]?.name})`)

  whereNext(cp, [
    `kubectl --kubeconfig ${cp.kubeconfig} -n ${ENLIST_NS} logs deploy/enlist`,
    `the node's logs: ${node.dir}/{kubelet,containerd,kube-proxy}.log`,
  ])
  return { pod: `shop/${name}`, node: node.name, kubelet: node.kubeletVersion, runtime: node.runtimeVersion, registered: registered.at - created, ready: ready.at - created, deregistered: gone.at - deleting }
}

// --- on the kubelet stand-in -----------------------------------------------------------
async function standIn(): Promise<Summary> {
  say(bold('enlist demo') + dim(' — a real kube-apiserver, etcd and kube-controller-manager on 127.0.0.1; the kubelet is the stand-in'))

  step('Control plane')
  const t0 = Date.now()
  const cp = await startControlPlane({ log: progress })
  stops.push(() => cp.stop())
  item('apiserver', `${cp.server} (v1.20 unless KUBEBUILDER_ASSETS says otherwise), up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  step('Install enlist from manifests/base and start it')
  const enlist: EnlistServer = await startEnlist(cp)
  stops.push(async () => void (await enlist.stop()))
  item('installed', 'Namespace, ServiceAccount, RBAC, policy ConfigMap, MutatingWebhookConfiguration')
  item('server', `${enlist.url} (running as ServiceAccount enlist-system/enlist)`)

  step('A namespace that opts in, and the database checkout depends on')
  await cp.namespace('shop', { 'enlist.io/inject': 'enabled' })
  item('namespace', 'shop, labelled enlist.io/inject=enabled')
  await cp.client.create('/api/v1/namespaces/shop/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' }, spec: { ports: [{ name: 'pg', port: 5432 }] } })
  item('service', 'db (port 5432), no ready endpoint yet')

  step('kubectl apply -f examples/checkout.yaml')
  const applied = await cp.kubectl(['apply', '-n', 'shop', '-f', join(REPO, 'examples/checkout.yaml')])
  if (applied.code !== 0) throw new Error(applied.stderr)
  for (const l of applied.stdout.trim().split('\n')) item('', l)
  let [pod] = await waitForPods(cp, 'shop', 'app.kubernetes.io/name=checkout')
  const created = Date.now()
  showInjected(pod!)

  step('The pod starts (the stand-in plays the kubelet); the registrar waits for db')
  pod = await startPod(cp, pod!)
  await syncReady(cp, pod)
  item('pod IP', pod.status!.podIP!)
  item('Ready', yellow('False') + dim(' (readiness gate enlist.io/registered not yet True)'))
  item('endpoints', await endpointsOf(cp))
  const registering = runRegistrar(cp, pod)
  await waitFor('the registrar held by the server', async () => /enlist_registrations_in_flight 1\b/.test(await enlist.metrics()), 30_000, 100)
  item('registrar', dim('long-polling: waiting for shop/db:5432 (no ready endpoints on port 5432)'))
  await cp.client.create('/api/v1/namespaces/shop/endpoints', {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'db' },
    subsets: [{ addresses: [{ ip: '10.244.9.9' }], ports: [{ name: 'pg', port: 5432 }] }],
  })
  item('db', 'now has a ready endpoint')

  step('enlist-registrar, run exactly as the kubelet would (its env, a token bound to the pod)')
  const run = await registering
  const registered = Date.now()
  for (const l of run.stdout.trim().split('\n')) say(dim(`      ${l}`))
  if (run.code !== 0) throw new Error(`the registrar exited ${run.code}`)
  pod = await syncReady(cp, pod)
  const ready = Date.now()
  const fresh = await cp.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`)
  const rc = cond(fresh, REGISTERED_CONDITION)
  item('condition', `${REGISTERED_CONDITION}=${green(String(rc?.status))} (${rc?.reason}: ${rc?.message})`)
  item('Ready', green('True'))
  await waitFor('endpoints', async () => (await endpointsOf(cp)).includes(pod!.status!.podIP!), 10_000)
  item('endpoints', green(await endpointsOf(cp)))
  showRecord(fresh)

  step('The pod goes: enlist deregisters it')
  const deleting = Date.now()
  await cp.client.delete(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`)
  const gone = await waitFor('deregistration', async () => {
    const p = await cp.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/${pod!.metadata!.name}`)
    return cond(p, REGISTERED_CONDITION)?.status === 'False' ? p : undefined
  })
  const deregistered = Date.now()
  const c2 = cond(gone, REGISTERED_CONDITION)
  item('condition', `${REGISTERED_CONDITION}=${yellow('False')} (${c2?.reason}: ${c2?.message})`)
  item('annotation', gone.metadata?.annotations?.['app.io/annotation'] === undefined ? 'removed' : 'still there')

  whereNext(cp, [`enlist's logs:   ${enlist.process.logFile}`, `its metrics:     curl --cacert ${enlist.pki.caFile} ${enlist.url}/metrics`])
  return { pod: `shop/${pod.metadata!.name}`, node: 'node-1', kubelet: 'stand-in', runtime: 'none://stand-in', registered: registered - created, ready: ready - created, deregistered: deregistered - deleting }
}

const support = realNodeSupport()
const hold = process.env.DEMO_HOLD ?? (tty ? '1' : '0')
say(dim(supportLine(support)))
;(support.ok ? realNode() : standIn())
  .then(async (summary) => {
    if (hold === '1') {
      say(`\n${bold('The cluster stays up for you to explore. Ctrl-C stops it and cleans up.')}\n`)
      say(finalLine(summary))
      await new Promise(() => undefined)
    }
    await cleanup()
    say(dim('\ncleaned up: every process stopped, every temp dir and the node removed\n'))
    say(finalLine(summary))
  })
  .catch(async (err: unknown) => {
    say(`\ndemo failed: ${(err as Error).message}`)
    await cleanup()
    process.exit(1)
  })
