// What a kubelet would do for a pod, since none runs here: bind it to the test node,
// report its IP, run the enlist-registrar init container as a process with the env and
// bound token the kubelet would give it, and compute Ready from the readiness gates.

import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { podPath } from '../../src/kube/pod-ref.js'
import { enlist, type Run } from '../helpers/cli.js'
import type { ControlPlane } from './control-plane.js'
import { createDeployment, deployment, getPod, refOf, requestToken } from './k8s.js'
import { tempDir } from '../helpers/temp.js'

let nextIp = 10

/** Binds the pod to node-1 and reports it Pending with an IP, init containers to run. */
export async function startPod(cp: ControlPlane, pod: V1Pod): Promise<V1Pod> {
  await cp.client.create(podPath(refOf(pod), 'binding'), {
    apiVersion: 'v1',
    kind: 'Binding',
    metadata: { name: pod.metadata!.name, namespace: pod.metadata!.namespace },
    target: { apiVersion: 'v1', kind: 'Node', name: 'node-1' },
  })
  const ip = `10.244.0.${nextIp++}`
  const now = new Date().toISOString()
  return cp.client.patch<V1Pod>(
    podPath(refOf(pod), 'status'),
    {
      status: {
        phase: 'Pending',
        podIP: ip,
        podIPs: [{ ip }],
        hostIP: '127.0.0.1',
        startTime: now,
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
          { type: 'Initialized', status: 'False', reason: 'ContainersNotInitialized', lastTransitionTime: now },
          { type: 'ContainersReady', status: 'False', lastTransitionTime: now },
          { type: 'Ready', status: 'False', lastTransitionTime: now },
        ],
      },
    },
    'application/strategic-merge-patch+json',
  )
}

/** The registrar's env as the kubelet resolves it (fieldRefs from the pod). */
export function resolveEnv(pod: V1Pod, c: V1Container): Record<string, string> {
  const out: Record<string, string> = {}
  const field = (path: string): string => {
    switch (path) {
      case 'metadata.name': return pod.metadata?.name ?? ''
      case 'metadata.namespace': return pod.metadata?.namespace ?? ''
      case 'metadata.uid': return pod.metadata?.uid ?? ''
      case 'status.podIP': return pod.status?.podIP ?? ''
      case 'status.podIPs': return (pod.status?.podIPs ?? []).map((x) => x.ip).join(',')
      case 'status.hostIP': return pod.status?.hostIP ?? ''
      case 'spec.nodeName': return pod.spec?.nodeName ?? ''
      case 'spec.serviceAccountName': return pod.spec?.serviceAccountName ?? ''
      default: return ''
    }
  }
  for (const e of c.env ?? []) out[e.name] = e.value ?? (e.valueFrom?.fieldRef ? field(e.valueFrom.fieldRef.fieldPath) : '')
  return out
}

/** A token bound to `pod`, as the kubelet projects it into the volume. */
export async function boundToken(cp: ControlPlane, pod: V1Pod, audience = 'enlist', expirationSeconds = 3600): Promise<string> {
  return requestToken(cp, pod.metadata!.namespace!, pod.spec?.serviceAccountName ?? 'default', {
    audiences: [audience],
    expirationSeconds,
    boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name, uid: pod.metadata!.uid },
  })
}

/** Runs enlist-registrar exactly as the pod spec says, with a bound token file. */
export async function runRegistrar(cp: ControlPlane, pod: V1Pod, opts: { env?: Record<string, string>; token?: string; timeoutMs?: number } = {}): Promise<Run> {
  const fresh = await getPod(cp, pod)
  const c = fresh.spec?.initContainers?.find((x) => x.name === 'enlist-registrar')
  if (!c) throw new Error(`${fresh.metadata?.name} has no enlist-registrar`)
  const dir = tempDir('enlist-token-')
  const tokenFile = join(dir, 'token')
  writeFileSync(tokenFile, opts.token ?? (await boundToken(cp, fresh)))
  const env = { ...resolveEnv(fresh, c), ENLIST_TOKEN_FILE: tokenFile, ...(opts.env ?? {}) }
  try {
    return await enlist([...(c.args ?? [])], { env, timeoutMs: opts.timeoutMs ?? 120_000 })
  } finally {
    rmSync(dir, { recursive: true, force: true }) // a credential: gone as soon as it is used
  }
}

/** Runs the registrar until it exits 0 (it retries 503s itself); throws when it does not. */
export async function register(cp: ControlPlane, pod: V1Pod, opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<void> {
  const run = await runRegistrar(cp, pod, opts)
  if (run.code !== 0) throw new Error(`registrar for ${pod.metadata!.name} exited ${run.code}: ${run.stdout.slice(-500)}${run.stderr.slice(-500)}`)
}

/** A created pod started (startPod) and registered (register); the started pod. */
export async function startRegistered(cp: ControlPlane, created: V1Pod, opts: { env?: Record<string, string> } = {}): Promise<V1Pod> {
  const pod = await startPod(cp, created)
  await register(cp, pod, opts)
  return pod
}

/** The pod of a new one-replica Deployment `name`, started and registered, through `registrationURL` when given. */
export async function registeredDeploymentPod(cp: ControlPlane, namespace: string, name: string, registrationURL?: string): Promise<V1Pod> {
  const [created] = await createDeployment(cp, namespace, deployment(name))
  return startRegistered(cp, created!, registrationURL ? { env: { ENLIST_REGISTRATION_URL: registrationURL } } : {})
}

/** After the init containers succeeded: containers run; Ready follows the readiness gates. */
export async function syncReady(cp: ControlPlane, pod: V1Pod): Promise<V1Pod> {
  const fresh = await getPod(cp, pod)
  const gates = (fresh.spec?.readinessGates ?? []).map((g) => g.conditionType)
  const conds = fresh.status?.conditions ?? []
  const gatesOk = gates.every((g) => conds.some((c) => c.type === g && c.status === 'True'))
  const now = new Date().toISOString()
  return cp.client.patch<V1Pod>(
    podPath(refOf(pod), 'status'),
    {
      status: {
        phase: 'Running',
        conditions: [
          { type: 'Initialized', status: 'True', lastTransitionTime: now },
          { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
          { type: 'Ready', status: gatesOk ? 'True' : 'False', reason: gatesOk ? undefined : 'ReadinessGatesNotReady', lastTransitionTime: now },
        ],
        containerStatuses: (fresh.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image, imageID: '', ready: true, restartCount: 0, started: true, state: { running: { startedAt: now } } })),
      },
    },
    'application/strategic-merge-patch+json',
  )
}
