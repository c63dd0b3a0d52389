// Small helpers over the admin client for end-to-end tests.

import type { V1Pod } from '@kubernetes/client-node'
import type { ControlPlane } from './control-plane.js'
import { waitFor } from './processes.js'

export async function listPods(cp: ControlPlane, namespace: string, labelSelector?: string): Promise<V1Pod[]> {
  const l = await cp.client.get<{ items: V1Pod[] }>(`/api/v1/namespaces/${namespace}/pods`, { labelSelector })
  return l.items
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

export async function setPolicy(cp: ControlPlane, policyYaml: string): Promise<void> {
  await cp.client.patch(
    '/api/v1/namespaces/enlist-system/configmaps/enlist-policy',
    { data: { 'policy.yaml': policyYaml } },
    'application/merge-patch+json',
  )
}
