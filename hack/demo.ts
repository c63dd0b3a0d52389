// `make demo`: a real control plane on loopback with enlist installed from manifests/,
// a labelled namespace, an annotated Deployment, the injected pod, its registration (run
// as the kubelet would run the init container), the readiness gate opening, and
// deregistration when the pod goes. Cleans up on exit or Ctrl-C.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { V1Endpoints, V1Pod } from '@kubernetes/client-node'
import type { Decision } from '../src/decision/status.js'
import { decodeRecord } from '../src/registry/record.js'
import { startControlPlane, type ControlPlane } from '../test/harness/control-plane.js'
import { startEnlist, type EnlistServer } from '../test/harness/enlist.js'
import { listPods, waitForPods } from '../test/harness/k8s.js'
import { runRegistrar, startPod, syncReady } from '../test/harness/kubelet.js'
import { waitFor } from '../test/harness/processes.js'

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

let cp: ControlPlane | undefined
let enlist: EnlistServer | undefined
let cleaning: Promise<void> | undefined
const cleanup = (): Promise<void> =>
  (cleaning ??= (async () => {
    await enlist?.stop().catch(() => undefined)
    await cp?.stop().catch(() => undefined)
  })())
process.on('SIGINT', () => {
  say('\nstopping and cleaning up ...')
  void cleanup().then(() => process.exit(130))
})

async function main(): Promise<void> {
  say(bold('enlist demo') + dim(' — a real kube-apiserver, etcd and kube-controller-manager on 127.0.0.1'))

  step('Control plane')
  const t0 = Date.now()
  cp = await startControlPlane({ log: (l) => say(dim(`      ${l.replace(/^\[control-plane\]\s*/, '')}`)) })
  item('apiserver', `${cp.server} (v1.20 unless KUBEBUILDER_ASSETS says otherwise), up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  step('Install enlist from manifests/base and start it')
  enlist = await startEnlist(cp)
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
  showInjected(pod!)

  step('The pod starts (the test node stands in for a kubelet); the registrar waits for db')
  pod = await startPod(cp, pod!)
  await syncReady(cp, pod)
  item('pod IP', pod.status!.podIP!)
  item('Ready', yellow('False') + dim(' (readiness gate enlist.io/registered not yet True)'))
  item('endpoints', await endpointsOf(cp))
  const registering = runRegistrar(cp, pod)
  await new Promise((r) => setTimeout(r, 1500))
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
  for (const l of run.stdout.trim().split('\n')) say(dim(`      ${l}`))
  if (run.code !== 0) throw new Error(`the registrar exited ${run.code}`)
  pod = await syncReady(cp, pod)
  const registered = await cp.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`)
  const cond = registered.status?.conditions?.find((x) => x.type === 'enlist.io/registered')
  item('condition', `enlist.io/registered=${green(String(cond?.status))} (${cond?.reason}: ${cond?.message})`)
  item('Ready', green('True'))
  await waitFor('endpoints', async () => (await endpointsOf(cp!)).includes(pod!.status!.podIP!), 10_000)
  item('endpoints', green(await endpointsOf(cp)))
  const record = decodeRecord(registered.metadata!.annotations!['app.io/annotation']!)
  item('registry record', 'pod annotation app.io/annotation (base64 of {"k","v"} pairs) decodes to:')
  for (const l of JSON.stringify(record, null, 2).split('\n')) say(dim(`        ${l}`))

  step('The pod goes: enlist deregisters it')
  await cp.client.delete(`/api/v1/namespaces/shop/pods/${pod.metadata!.name}`)
  const gone = await waitFor('deregistration', async () => {
    const p = await cp!.client.get<V1Pod>(`/api/v1/namespaces/shop/pods/${pod!.metadata!.name}`)
    return p.status?.conditions?.find((x) => x.type === 'enlist.io/registered')?.status === 'False' ? p : undefined
  })
  const c2 = gone.status?.conditions?.find((x) => x.type === 'enlist.io/registered')
  item('condition', `enlist.io/registered=${yellow('False')} (${c2?.reason}: ${c2?.message})`)
  item('annotation', gone.metadata?.annotations?.['app.io/annotation'] === undefined ? 'removed' : 'still there')
  const events = await cp.kubectl(['get', 'events', '-n', 'shop', '--sort-by=.lastTimestamp', '--field-selector', `involvedObject.name=${pod.metadata!.name}`, '-o', 'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}'])
  for (const l of events.stdout.trim().split('\n').filter((x) => /Registered|Deregistered/.test(x))) item('event', l)
  const replacement = (await listPods(cp, 'shop', 'app.kubernetes.io/name=checkout')).find((p) => !p.metadata?.deletionTimestamp)
  if (replacement) item('replacement', `${replacement.metadata?.name}: injected again (${replacement.spec?.initContainers?.[0]?.name})`)

  step('Where to look next')
  const kc = cp.kubeconfig
  say(`      kubectl --kubeconfig ${kc} -n shop get pods -o yaml`)
  say(`      kubectl --kubeconfig ${kc} -n shop get events`)
  say(`      enlist's logs:   ${enlist.process.logFile}`)
  say(`      its metrics:     curl --cacert ${enlist.pki.caFile} ${enlist.url}/metrics`)
  say(`      preview offline: node dist/cli/main.js render -f examples/checkout.yaml --namespace-labels enlist.io/inject=enabled`)
  say(`      read on:         README.md, docs/policy.md, docs/install.md, docs/operations.md`)
  say(dim(`      (kubectl: ${cp.assets}/kubectl)`))
}

function showInjected(pod: V1Pod): void {
  say(`      the pod ${bold(pod.metadata!.name!)} as enlist admitted it:`)
  const reg = pod.spec!.initContainers!.find((x) => x.name === 'enlist-registrar')!
  const app = pod.spec!.containers[0]!
  const status = JSON.parse(pod.metadata!.annotations!['enlist.io/status']!) as { decision: Decision; seal: { key: string } }
  const d = status.decision
  item('init container', `${reg.name} (${reg.image}), first; non-root, read-only root fs, no capabilities`)
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

async function endpointsOf(cp: ControlPlane): Promise<string> {
  const ep = await cp.client.get<V1Endpoints>('/api/v1/namespaces/shop/endpoints/checkout').catch(() => undefined)
  const ready = (ep?.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => `${a.ip}:${s.ports?.[0]?.port}`))
  const notReady = (ep?.subsets ?? []).flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip))
  return `Service checkout: ready [${ready.join(', ')}]${notReady.length ? `, not ready [${notReady.join(', ')}]` : ''}`
}

const hold = process.env.DEMO_HOLD ?? (tty ? '1' : '0')
main()
  .then(async () => {
    if (hold === '1') {
      say(`\n${bold('The cluster stays up for you to explore. Ctrl-C stops it and cleans up.')}`)
      await new Promise(() => undefined)
    }
    await cleanup()
    say(green('\ndemo complete; cleaned up'))
  })
  .catch(async (err: unknown) => {
    say(`\ndemo failed: ${(err as Error).message}`)
    if (enlist) say(dim(readFileSync(enlist.process.logFile, 'utf8').split('\n').slice(-10).join('\n')))
    await cleanup()
    process.exit(1)
  })
