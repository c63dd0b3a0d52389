// enlist on a real node: containerd, runc and kubelet v1.20.2 run the pods, enlist itself
// runs as pods of its Deployment from manifests/overlays/self-managed, the apiserver calls
// the webhook through its Service, registrars reach it through its Service by DNS name.
// Orders are proved from the runtime's own container events and from resourceVersions
// (etcd revisions: one write order for the whole cluster), never from sleeps.
// One cluster for the file; the node-lost case has its own (node-lost.test.ts).
import t from 'tap'
import type { V1Container, V1EndpointSubset, V1Endpoints, V1Job, V1Pod } from '@kubernetes/client-node'
import { ENV_REGISTRATION_URL } from '../../src/contract/registrar-env.js'
import { REGISTERED_CONDITION, REGISTRAR_CONTAINER, TOKEN_AUDIENCE, TOKEN_VOLUME } from '../../src/names.js'
import { podPath } from '../../src/kube/pod-ref.js'
import { decodeRecord } from '../../src/registry/record.js'
import { startCmdb, type Cmdb } from '../harness/cmdb.js'
import { type NodeCluster, startNodeCluster } from '../harness/cluster.js'
import { type EnlistOnNode, installEnlistOnNode } from '../harness/enlist-pod.js'
import { refOf } from '../harness/k8s.js'
import type { TaskEvent } from '../harness/node.js'
import { realNodeSupport, supportLine } from '../harness/node-support.js'
import { waitFor } from '../harness/processes.js'
import { observe } from '../harness/watch.js'

const DRAIN_SECONDS = 5 // the policy's default preStop.drainSeconds
const support = realNodeSupport()

const cond = (p: V1Pod, type: string) => p.status?.conditions?.find((c) => c.type === type)?.status
const readyIPs = (ep: V1Endpoints) => (ep.subsets ?? []).flatMap((s: V1EndpointSubset) => (s.addresses ?? []).map((a) => a.ip))
/** The runtime's id of a pod's container (init or app), from the kubelet's status. */
function containerId(p: V1Pod, name: string): string {
  const s = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].find((c) => c.name === name)
  const id = s?.containerID?.replace(/^containerd:\/\//, '')
  if (!id) throw new Error(`${p.metadata?.name} has no container ${name} yet`)
  return id
}
const app = (image: string, extra: Partial<V1Container> = {}): V1Container => ({
  name: 'app',
  image,
  imagePullPolicy: 'Never',
  ports: [{ name: 'http', containerPort: 8080 }],
  readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
  ...extra,
})
function deployment(name: string, container: V1Container, annotations: Record<string, string> = {}) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name }, annotations }, spec: { terminationGracePeriodSeconds: 30, containers: [container] } },
    },
  }
}

async function scenarios(): Promise<void> {
  // Several minutes on a loaded two-core machine: a cluster, enlist's rollout, seven pods.
  t.setTimeout(20 * 60_000)
  const c: NodeCluster = await startNodeCluster({ log: (l) => t.comment(l) })
  t.teardown(() => c.stop())
  const cmdb: Cmdb = await startCmdb('/api/v1/instances', c.net.hostIP)
  t.teardown(() => cmdb.close())
  const enlist: EnlistOnNode = await installEnlistOnNode(c, {
    policy: (p) => {
      p.registry = {
        backends: [
          { name: 'kubernetes', type: 'kubernetes' },
          { name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, timeoutSeconds: 5 },
        ],
        reconcileIntervalSeconds: 60,
      }
    },
  })
  await c.cp.namespace('shop', { 'enlist.io/inject': 'enabled' })
  const events = () => c.node.events()
  const firstEvent = (pred: (e: TaskEvent) => boolean) => events().find(pred)
  const puts = (uid: string) => cmdb.requests.filter((r) => r.method === 'PUT' && r.path.endsWith(`/${uid}`))
  const deletes = (uid: string) => cmdb.requests.filter((r) => r.method === 'DELETE' && r.path.endsWith(`/${uid}`))

  t.test('enlist runs as pods of its Deployment, from its image, and the apiserver reaches it through the Service', async (t) => {
    const pods = (await c.cp.client.get<{ items: V1Pod[] }>('/api/v1/namespaces/enlist-system/pods', { labelSelector: 'app.kubernetes.io/name=enlist' })).items
    t.equal(pods.length, 2, 'two replicas, as manifests/base says')
    for (const p of pods) {
      t.equal(p.spec?.nodeName, c.node.name, `${p.metadata?.name} runs on the real node`)
      t.match(p.status?.containerStatuses?.[0], { ready: true, image: /enlist:0\.1\.0$/, imageID: /^sha256:/ }, 'from the imported image')
    }
    const hook = await c.cp.client.get<{ webhooks: Array<{ clientConfig: { service?: { name: string }; url?: string } }> }>('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/enlist')
    t.ok(hook.webhooks.every((w) => w.clientConfig.service?.name === 'enlist' && !w.clientConfig.url), 'every webhook entry names the Service, none a URL')
    t.match(await enlist.logs(), /"msg":"became leader: starting the controller"/, 'one replica leads the controller')
    const node = await c.cp.kubectl(['exec', '-n', 'enlist-system', pods[0]!.metadata!.name!, '--', '/nodejs/bin/node', '--version'])
    t.match(node.stdout, /^v24\./, `the pods run Node.js 24 (kubectl exec, through the kubelet): ${node.stdout.trim()}${node.stderr}`)
    const sh = await c.cp.kubectl(['exec', '-n', 'enlist-system', pods[0]!.metadata!.name!, '--', '/bin/sh', '-c', 'true'])
    t.not(sh.code, 0, 'and have no shell')
  })

  let web: V1Pod | undefined
  t.test('a Deployment: the registrar runs first, reaches enlist through its Service, and the app starts only after registration', async (t) => {
    await c.cp.client.create('/api/v1/namespaces/shop/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } })
    const podsSeen = await observe<V1Pod>(c.cp.client, '/api/v1/namespaces/shop/pods', { labelSelector: 'app=web' })
    const endpointsSeen = await observe<V1Endpoints>(c.cp.client, '/api/v1/namespaces/shop/endpoints', { fieldSelector: 'metadata.name=web' })
    t.teardown(() => {
      podsSeen.stop()
      endpointsSeen.stop()
    })
    await c.cp.client.create('/apis/apps/v1/namespaces/shop/deployments', deployment('web', app(c.images.app.ref), { 'enlist.io/metadata': '{"interface":"com.acme.Web"}' }))
    const pod = await waitFor('the web pod Ready', async () => podsSeen.seen.map((o) => o.object).reverse().find((p) => cond(p, 'Ready') === 'True'), 120_000, 100)
    web = pod
    const uid = pod.metadata!.uid!

    // the registrar: first, from enlist's image, with the projected token, exited 0
    const reg = pod.spec!.initContainers![0]!
    t.equal(reg.name, REGISTRAR_CONTAINER, 'the first init container is the registrar')
    t.match(reg.image, /enlist:0\.1\.0$/, 'from enlist\'s image')
    const tokenVolume = pod.spec!.volumes!.find((v) => v.name === TOKEN_VOLUME)
    t.equal(tokenVolume?.projected?.sources?.[0]?.serviceAccountToken?.audience, TOKEN_AUDIENCE, 'a projected token for audience enlist')
    t.ok(reg.volumeMounts?.some((m) => m.name === TOKEN_VOLUME), 'mounted into the registrar')
    t.match(pod.status?.initContainerStatuses?.[0], { name: REGISTRAR_CONTAINER, state: { terminated: { exitCode: 0, reason: 'Completed' } } }, 'it ran to completion, exit 0')
    const logs = await c.cp.kubectl(['logs', '-n', 'shop', pod.metadata!.name!, '-c', REGISTRAR_CONTAINER])
    t.match(logs.stdout, /"msg":"registered","attempt":1,"service":"web"/, 'registered at the first attempt')

    // through the Service: the default URL's name, resolved by the cluster DNS to its ClusterIP
    const url = reg.env?.find((e) => e.name === ENV_REGISTRATION_URL)?.value
    t.equal(url, 'https://enlist.enlist-system.svc:443/v1/registrations', 'the policy default, unchanged')
    const svc = await c.cp.client.get<{ spec: { clusterIP: string } }>('/api/v1/namespaces/enlist-system/services/enlist')
    t.ok(
      c.dns.queries.some((q) => q.from === pod.status!.podIP && q.name === 'enlist.enlist-system.svc.cluster.local' && q.answer === svc.spec.clusterIP),
      `the pod (${pod.status!.podIP}) resolved enlist.enlist-system.svc to the ClusterIP ${svc.spec.clusterIP}`,
    )

    // the order, from containerd's events and the CMDB's clock: registered < registrar exits < app starts
    const registrarExit = firstEvent((e) => e.topic === '/tasks/exit' && e.containerId === containerId(pod, REGISTRAR_CONTAINER) && !e.execId)
    const appStart = firstEvent((e) => e.topic === '/tasks/start' && e.containerId === containerId(pod, 'app'))
    const registered = puts(uid)[0]
    t.ok(registrarExit && appStart && registered, 'the events and the registration are there')
    t.equal(registrarExit?.exitStatus, 0, 'the registrar exited 0')
    t.ok(registered!.at <= registrarExit!.at.getTime(), `registered (${new Date(registered!.at).toISOString()}) before the registrar exited (${registrarExit!.at.toISOString()})`)
    t.ok(registrarExit!.at.getTime() <= appStart!.at.getTime(), `the app started (${appStart!.at.toISOString()}) after the registrar exited`)
    const record = decodeRecord(pod.metadata!.annotations!['app.io/annotation']!)
    t.match(record, { uid, ip: pod.status!.podIP, node: c.node.name, hostIP: c.net.nodeIP, metadata: { interface: 'com.acme.Web' } }, 'the record: the real pod IP, node and host IP')

    // Ready only after the condition; in the Service's endpoints only after Ready
    const versions = podsSeen.seen.filter((o) => o.object.metadata?.uid === uid)
    const firstRv = (pred: (p: V1Pod) => boolean) => versions.find((o) => pred(o.object))?.rv ?? Infinity
    const registeredRv = firstRv((p) => cond(p, REGISTERED_CONDITION) === 'True')
    const readyRv = firstRv((p) => cond(p, 'Ready') === 'True')
    t.ok(registeredRv < readyRv, `enlist.io/registered=True (rv ${registeredRv}) was written before Ready=True (rv ${readyRv})`)
    t.notOk(versions.some((o) => cond(o.object, 'Ready') === 'True' && cond(o.object, REGISTERED_CONDITION) !== 'True'), 'no version is Ready without the condition')
    const inEndpoints = await waitFor('the pod in the Service endpoints', async () => endpointsSeen.seen.find((o) => readyIPs(o.object).includes(pod.status!.podIP!)), 30_000, 100)
    t.ok(inEndpoints.rv > readyRv, `in the endpoints (rv ${inEndpoints.rv}) only after Ready (rv ${readyRv})`)
  })

  t.test('a dependency on a real Service holds registration until its endpoints are ready', async (t) => {
    await c.cp.namespace('backend')
    await c.cp.client.create('/api/v1/namespaces/backend/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' }, spec: { selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432, targetPort: 8080 }] } })
    const dbSeen = await observe<V1Endpoints>(c.cp.client, '/api/v1/namespaces/backend/endpoints', { fieldSelector: 'metadata.name=db' })
    const podsSeen = await observe<V1Pod>(c.cp.client, '/api/v1/namespaces/shop/pods', { labelSelector: 'app=checkout' })
    t.teardown(() => {
      dbSeen.stop()
      podsSeen.stop()
    })
    await c.cp.client.create('/apis/apps/v1/namespaces/shop/deployments', deployment('checkout', app(c.images.app.ref), { 'enlist.io/depends-on': 'backend/db:5432' }))
    const waiting = await waitFor(
      'the checkout registrar waiting for backend/db',
      async () => {
        const p = podsSeen.seen.at(-1)?.object
        if (!p?.status?.initContainerStatuses?.[0]?.state?.running) return undefined
        const l = await c.cp.kubectl(['logs', '-n', 'shop', p.metadata!.name!, '-c', REGISTRAR_CONTAINER])
        return /"msg":"waiting for dependencies".*backend\/db:5432/.test(l.stdout) ? p : undefined
      },
      120_000,
      500,
    )
    t.equal(cond(waiting, REGISTERED_CONDITION), undefined, 'not registered while db has no ready endpoint')
    t.match(waiting.status?.containerStatuses?.[0], { name: 'app', state: { waiting: { reason: 'PodInitializing' } } }, 'the app has not started')

    // db comes up, and becomes ready only after its probe passes
    await c.cp.client.create('/apis/apps/v1/namespaces/backend/deployments', deployment('db', app(c.images.app.ref, { readinessProbe: { httpGet: { path: '/', port: 8080 }, initialDelaySeconds: 2, periodSeconds: 1 } })))
    const ready = await waitFor('checkout Ready', async () => podsSeen.seen.map((o) => o.object).reverse().find((p) => cond(p, 'Ready') === 'True'), 120_000, 100)
    const dbReadyRv = dbSeen.seen.find((o) => readyIPs(o.object).length > 0)?.rv ?? Infinity
    const registeredRv = podsSeen.seen.find((o) => o.object.metadata?.uid === ready.metadata?.uid && cond(o.object, REGISTERED_CONDITION) === 'True')?.rv ?? -1
    t.ok(dbSeen.seen.some((o) => (o.object.subsets ?? []).some((s) => (s.notReadyAddresses ?? []).length > 0)), 'db was running but not ready first')
    t.ok(registeredRv > dbReadyRv, `registered (rv ${registeredRv}) only after db had a ready endpoint (rv ${dbReadyRv})`)
  })

  t.test('a Job: its pod runs to completion and is deregistered', async (t) => {
    await c.cp.client.create('/apis/batch/v1/namespaces/shop/jobs', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'nightly' },
      spec: {
        backoffLimit: 0,
        template: { metadata: { labels: { app: 'nightly' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'work', image: c.images.app.ref, imagePullPolicy: 'Never', command: ['sh', '-c', 'echo working; sleep 1'] }] } },
      },
    })
    const job = await waitFor('the Job complete', async () => {
      const j = await c.cp.client.get<V1Job>('/apis/batch/v1/namespaces/shop/jobs/nightly')
      return (j.status?.succeeded ?? 0) >= 1 ? j : undefined
    }, 120_000, 500)
    t.equal(job.status?.failed ?? 0, 0, 'no pod failed')
    const [pod] = (await c.cp.client.get<{ items: V1Pod[] }>('/api/v1/namespaces/shop/pods', { labelSelector: 'app=nightly' })).items
    t.equal(pod?.status?.phase, 'Succeeded', 'its pod Succeeded')
    t.equal(puts(pod!.metadata!.uid!).length >= 1, true, 'it was registered while it ran')
    await waitFor('deregistered', async () => deletes(pod!.metadata!.uid!).length > 0 && !cmdb.records.has(pod!.metadata!.uid!), 60_000, 200)
    const done = await waitFor('the condition False', async () => {
      const p = await c.cp.client.get<V1Pod>(podPath(refOf(pod!)))
      return cond(p, REGISTERED_CONDITION) === 'False' ? p : undefined
    }, 60_000, 200)
    t.equal(done.metadata?.annotations?.['app.io/annotation'], undefined, 'its record is gone from the pod too')
  })

  t.test('kubectl delete: the preStop hook holds the app for the drain while enlist deregisters and endpoints drop it', async (t) => {
    const pod = web!
    const uid = pod.metadata!.uid!
    const appId = containerId(pod, 'app')
    const endpointsSeen = await observe<V1Endpoints>(c.cp.client, '/api/v1/namespaces/shop/endpoints', { fieldSelector: 'metadata.name=web' })
    t.teardown(() => endpointsSeen.stop())
    const before = Date.now()
    // kubectl waits until the pod is gone, as a user sees it
    const del = await c.cp.kubectl(['delete', 'pod', '-n', 'shop', pod.metadata!.name!])
    t.equal(del.code, 0, `kubectl delete pod ${pod.metadata!.name}: ${del.stderr}`)
    const hookStart = firstEvent((e) => e.topic === '/tasks/exec-started' && e.containerId === appId && e.at.getTime() >= before - 1000)
    const hookExit = hookStart && firstEvent((e) => e.topic === '/tasks/exit' && e.execId === hookStart.execId)
    const appExit = firstEvent((e) => e.topic === '/tasks/exit' && e.containerId === appId && !e.execId)
    t.ok(hookStart, 'the kubelet ran the preStop exec in the app container')
    t.equal(hookExit?.exitStatus, 0, 'the hook (sh -c "sleep 5") succeeded')
    const drained = hookExit!.at.getTime() - hookStart!.at.getTime()
    t.ok(drained >= DRAIN_SECONDS * 1000 - 100, `the hook held the container ${drained} ms (drain ${DRAIN_SECONDS} s)`)
    t.ok(appExit && appExit.at.getTime() >= hookExit!.at.getTime(), 'the app was stopped only after the hook')
    const deregistered = deletes(uid)[0]
    t.ok(deregistered && deregistered.at < appExit!.at.getTime(), 'deregistered while the app was still draining')
    t.notOk(cmdb.records.has(uid), 'the CMDB entry is gone')
    const dropped = endpointsSeen.seen.find((o) => !readyIPs(o.object).includes(pod.status!.podIP!))
    t.ok(dropped && dropped.at < appExit!.at.getTime(), 'the endpoints dropped the pod before the app stopped')
  })

  t.test('an app image without a shell: the exec preStop fails and the app is stopped at once (no drain)', async (t) => {
    await c.cp.client.create('/apis/apps/v1/namespaces/shop/deployments', deployment('bare', app(c.images.appNoShell.ref)))
    const pod = await waitFor('the bare pod Ready', async () => {
      const [p] = (await c.cp.client.get<{ items: V1Pod[] }>('/api/v1/namespaces/shop/pods', { labelSelector: 'app=bare' })).items
      return p && cond(p, 'Ready') === 'True' ? p : undefined
    }, 120_000, 200)
    const hook = pod.spec!.containers[0]!.lifecycle?.preStop?.exec?.command
    t.same(hook, ['/bin/sh', '-c', `sleep ${DRAIN_SECONDS}`], 'v1.20 gets the exec form (the sleep action needs 1.30)')
    const appId = containerId(pod, 'app')
    const before = Date.now()
    const del = await c.cp.kubectl(['delete', 'pod', '-n', 'shop', pod.metadata!.name!])
    t.equal(del.code, 0, `kubectl delete pod ${pod.metadata!.name}: ${del.stderr}`)
    const appExit = firstEvent((e) => e.topic === '/tasks/exit' && e.containerId === appId && !e.execId)
    t.ok(appExit, 'the app stopped')
    const held = appExit!.at.getTime() - before
    t.ok(held < DRAIN_SECONDS * 1000, `stopped ${held} ms after the delete: no drain`)
    t.notOk(firstEvent((e) => e.topic === '/tasks/exec-started' && e.containerId === appId), 'no hook process ever started: there is no /bin/sh')
    const ev = await waitFor('the FailedPreStopHook event', async () => {
      const r = await c.cp.kubectl(['get', 'events', '-n', 'shop', '--field-selector', `involvedObject.name=${pod.metadata!.name},reason=FailedPreStopHook`, '-o', 'jsonpath={.items[*].message}'])
      return r.stdout.trim() || undefined
    }, 30_000, 500)
    t.match(ev, /\/bin\/sh/, `the kubelet says why: ${ev}`)
    await waitFor('deregistered', async () => deletes(pod.metadata!.uid!).length > 0, 30_000, 200)
  })
}

if (support.ok) await scenarios()
else t.test('enlist on a real node', { skip: supportLine(support) }, async () => undefined)

