// Small helpers over the admin client for end-to-end tests.

import type { V1Container, V1Pod, V1PodCondition } from '@kubernetes/client-node'
import { podPath, type PodRef, podRefOf, podsPath } from '../../src/kube/pod-ref.js'
import type { ControlPlane } from './control-plane.js'
import { parse, stringify } from 'yaml'
import { waitFor } from './processes.js'

/** The pod's reference (src/kube/pod-ref.ts), for podPath() and the like. */
export function refOf(p: V1Pod): PodRef {
  return podRefOf({ metadata: { namespace: p.metadata!.namespace!, name: p.metadata!.name!, uid: p.metadata!.uid ?? '' } })
}

/** The pod as the apiserver has it now. */
export function getPod(cp: ControlPlane, p: V1Pod): Promise<V1Pod> {
  return cp.client.get<V1Pod>(podPath(refOf(p)))
}

export async function listPods(cp: ControlPlane, namespace: string, labelSelector?: string): Promise<V1Pod[]> {
  const l = await cp.client.get<{ items: V1Pod[] }>(podsPath(namespace), { labelSelector })
  return l.items
}

/** A bare Pod: one container `app` (of `image`, nginx by default) unless `containers` says otherwise. */
export function podManifest(name: string, opts: { labels?: Record<string, string>; annotations?: Record<string, string>; image?: string; containers?: V1Container[] } = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: opts.labels, annotations: opts.annotations },
    spec: { containers: opts.containers ?? [{ name: 'app', image: opts.image ?? 'nginx' }] },
  }
}

/** The enlist.io/registered condition enlist sets on the pods it registers. */
export function registeredCondition(p: V1Pod): V1PodCondition | undefined {
  return p.status?.conditions?.find((c) => c.type === 'enlist.io/registered')
}

/** Waits until the pod's enlist.io/registered condition has `status`; the pod then. */
export function waitForRegisteredCondition(cp: ControlPlane, p: V1Pod, status: 'True' | 'False', what: string, timeoutMs = 30_000): Promise<V1Pod> {
  return waitFor(what, async () => {
    const fresh = await getPod(cp, p)
    return registeredCondition(fresh)?.status === status ? fresh : undefined
  }, timeoutMs)
}

/** A ServiceAccount token from a TokenRequest with `spec` (audiences, expiry, a bound object). */
export async function requestToken(cp: ControlPlane, namespace: string, serviceAccount: string, spec: Record<string, unknown>): Promise<string> {
  const tr = await cp.client.create<{ status: { token: string } }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec,
  })
  return tr.status.token
}

export async function waitForPods(cp: ControlPlane, namespace: string, labelSelector: string, count = 1, timeoutMs = 30_000): Promise<V1Pod[]> {
  return waitFor(
    `${count} pod(s) ${labelSelector} in ${namespace}`,
    async () => {
      const pods = await listPods(cp, namespace, labelSelector)
      return pods.length >= count ? pods : undefined
    },
    timeoutMs,
    100,
  )
}

export function deployment(name: string, opts: { labels?: Record<string, string>; annotations?: Record<string, string>; replicas?: number; containers?: unknown[] } = {}) {
  const labels = { app: name, ...(opts.labels ?? {}) }
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels, annotations: opts.annotations ?? {} },
        spec: { containers: opts.containers ?? [{ name: 'app', image: 'nginx:1.27', ports: [{ name: 'http', containerPort: 80 }] }] },
      },
    },
  }
}

export async function createDeployment(cp: ControlPlane, namespace: string, d: ReturnType<typeof deployment>): Promise<V1Pod[]> {
  await cp.client.create(`/apis/apps/v1/namespaces/${namespace}/deployments`, d)
  return waitForPods(cp, namespace, `app=${d.metadata.name}`, d.spec.replicas)
}

/** Replaces the policy. A test cluster is named `e2e` at install (test/harness/enlist.ts), and
 *  enlist refuses a policy that renames a running cluster: a policy without a cluster name gets
 *  that one, so tests need not repeat it. */
export async function setPolicy(cp: ControlPlane, policyYaml: string): Promise<void> {
  let doc: unknown
  try {
    doc = parse(policyYaml)
  } catch {
    doc = undefined // a test of a broken policy: sent as it is
  }
  const named = doc !== null && typeof doc === 'object' && !Array.isArray(doc) && !('cluster' in doc)
  const text = named ? stringify({ ...(doc as Record<string, unknown>), cluster: { name: 'e2e' } }) : policyYaml
  await cp.client.patch(
    '/api/v1/namespaces/enlist-system/configmaps/enlist-policy',
    { data: { 'policy.yaml': text } },
    'application/merge-patch+json',
  )
}
