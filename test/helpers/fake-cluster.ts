// What the registration service and the controller run on in unit tests: the fake apiserver
// (fake-kube.ts) and in-memory backends (fake-registry.ts) behind the real collaborators: the
// decision keys' KeyStore reading their Secret, ManagedPods (a reflector over the fake), the
// real BackendSet with the real kubernetes backend, EventRecorder, metrics. Pods are made as
// admission leaves them: labelled managed, their decision sealed into enlist.io/status.

import type { V1Pod } from '@kubernetes/client-node'
import pino, { type Logger } from 'pino'
import { type DecisionKey, formatKeyRing, KEYRING_KEY, newKey } from '../../src/decision/keyring.js'
import { KeyStore } from '../../src/decision/keys.js'
import { type Decision, STATUS_VERSION, statusText } from '../../src/decision/status.js'
import { EventRecorder } from '../../src/kube/events.js'
import { ManagedPods } from '../../src/kube/pods.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { DECISION_KEYS_SECRET, INSTALL_NAMESPACE, MANAGED_LABEL, REGISTERED_CONDITION, STATUS_ANNOTATION } from '../../src/names.js'
import type { BackendSet } from '../../src/registry/backend-set.js'
import { recordAnnotationsOf, recordLabelsOf } from '../../src/registry/kubernetes.js'
import { fakeToken, FakeKube, podAt, runningPod } from './fake-kube.js'
import { FakeBackend, fakeRegistry } from './fake-registry.js'

export type LogLine = Record<string, unknown> & { msg?: string; level?: number }

/** A pino logger whose lines are kept, parsed, in `lines`. */
export function captureLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) })
  return { log, lines }
}

export interface FakeCluster {
  kube: FakeKube
  metrics: Metrics
  log: Logger
  logs: LogLine[]
  keys: KeyStore
  /** The key admission seals with. */
  signing: DecisionKey
  pods: ManagedPods
  registry: BackendSet
  /** The in-memory backends, after the kubernetes one. */
  backends: FakeBackend[]
  events: EventRecorder
  /** The annotation the kubernetes backend writes the record into. */
  recordAnnotation: string
  stop(): Promise<void>
}

export async function fakeCluster(o: { backends?: string[]; kubernetes?: boolean; sweepOff?: string[] } = {}): Promise<FakeCluster> {
  const kube = new FakeKube()
  const metrics = createMetrics({ defaultMetrics: false })
  const { log, lines } = captureLogger()
  const signing = newKey(Date.now() - 1000, Date.now() - 1000)
  kube.put(`/api/v1/namespaces/${INSTALL_NAMESPACE}/secrets/${DECISION_KEYS_SECRET}`, {
    apiVersion: 'v1',
    kind: 'Secret',
    data: { [KEYRING_KEY]: Buffer.from(formatKeyRing({ keys: [signing] })).toString('base64') },
  })
  const keys = new KeyStore(kube.client, INSTALL_NAMESPACE, DECISION_KEYS_SECRET, log, metrics)
  const pods = new ManagedPods(kube, log, { ring: () => keys.ring })
  keys.onChange((ring) => pods.keysChanged(ring))
  const backends = (o.backends ?? ['cmdb', 'etcd']).map((n) => new FakeBackend(n))
  const { registry, policy } = await fakeRegistry({ client: kube.client, pods, metrics, log, backends, kubernetes: o.kubernetes, sweepOff: o.sweepOff })
  pods.setRecordAnnotations(recordAnnotationsOf(policy.spec))
  pods.setRecordLabels(recordLabelsOf(policy.spec))
  keys.start()
  if (!(await keys.reflector.waitForSync())) throw new Error('fake cluster: the key store did not sync')
  pods.start()
  if (!(await pods.reflector.waitForSync())) throw new Error('fake cluster: the pod cache did not sync')
  const events = new EventRecorder(kube.client, log, 'test')
  return {
    kube,
    metrics,
    log,
    logs: lines,
    keys,
    signing,
    pods,
    registry,
    backends,
    events,
    recordAnnotation: policy.spec.discovery.annotation,
    async stop() {
      await Promise.all([pods.stop(), keys.stop()])
      await registry.close()
    },
  }
}

/** The enlist.io/status text admission writes for `decision`, sealed with `key`. */
export function sealedStatus(decision: Decision, key: DecisionKey | undefined): string {
  return statusText(
    {
      version: STATUS_VERSION,
      policy: '0123456789abcdef',
      decision,
      injected: { initContainers: ['enlist-registrar'], volumes: ['enlist-token'], env: {}, preStop: [], readinessGates: [REGISTERED_CONDITION], labels: [MANAGED_LABEL] },
      kept: [],
    },
    key,
  )
}

export interface EnlistedPod {
  pod: V1Pod
  path: string
  uid: string
  /** Its bound token, known to the fake's TokenReview. */
  token: string
  decision: Decision
}

let pods = 0

/**
 * A pod admission injected (managed label, sealed decision) and the kubelet started, stored
 * in the fake apiserver, with a bound token. `status` replaces the sealed annotation (null:
 * no annotation at all); `decision` amends what is sealed.
 */
export function enlistedPod(
  c: FakeCluster,
  o: { namespace?: string; name?: string; serviceAccount?: string; decision?: Partial<Decision>; status?: string | null; annotations?: Record<string, string>; managed?: boolean; ip?: string } = {},
): EnlistedPod {
  const namespace = o.namespace ?? 'shop'
  const name = o.name ?? `orders-${++pods}`
  const serviceAccount = o.serviceAccount ?? 'orders'
  const decision: Decision = { namespace, serviceAccount, service: 'orders', metadata: { interface: 'com.acme.Orders', group: 'g1' }, dependsOn: [], ...o.decision }
  const annotations = { ...o.annotations }
  if (o.status === undefined) annotations[STATUS_ANNOTATION] = sealedStatus(decision, c.signing)
  else if (o.status !== null) annotations[STATUS_ANNOTATION] = o.status
  const path = podAt(namespace, name)
  const pod = c.kube.put(path, runningPod({ namespace, name, serviceAccount, labels: o.managed === false ? { app: 'orders' } : { app: 'orders', [MANAGED_LABEL]: 'true' }, annotations, ip: o.ip }))
  const uid = pod.metadata!.uid!
  const token = fakeToken(`${namespace}/${name}`)
  c.kube.tokens.set(token, { namespace, serviceAccount, pod: name, uid })
  return { pod, path, uid, token, decision }
}

/** The pod's enlist.io/registered condition, as the fake apiserver holds it. */
export function conditionOf(c: FakeCluster, path: string): { status: string; reason?: string; message?: string; lastTransitionTime?: string } | undefined {
  return c.kube.peek<V1Pod>(path)?.status?.conditions?.find((x) => x.type === REGISTERED_CONDITION) as ReturnType<typeof conditionOf>
}

/** The Events recorded about a pod, by reason. */
export function eventsOf(c: FakeCluster, uid: string): Array<{ type: string; reason: string; message: string }> {
  return c.kube
    .all<{ involvedObject: { uid: string }; type: string; reason: string; message: string }>('events')
    .filter((e) => e.involvedObject.uid === uid)
    .map((e) => ({ type: e.type, reason: e.reason, message: e.message }))
}

/** Polls until `fn` is true (or throws after `ms`). */
export async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Value of a counter or gauge for the labels given (0 when never set). */
export async function metricValue(m: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  const v = (await m.get()).values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want))
  return v?.value ?? 0
}

export { fakeToken, podAt }
