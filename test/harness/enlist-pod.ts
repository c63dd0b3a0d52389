// enlist installed on a real node as a user installs it: `kubectl apply` of an overlay
// (self-managed by default: it makes its own CA and serving certificate), its Deployment
// running enlist's image as pods, the apiserver calling the webhook through the Service,
// registrars reaching it through the Service by its DNS name. The only edits are what
// v1.20 and the test need: the PodDisruptionBudget as policy/v1beta1 (v1.20 serves no
// policy/v1), and the policy's registry backends when a test adds one.

import { join } from 'node:path'
import type { V1Deployment, V1Endpoints } from '@kubernetes/client-node'
import { parse, parseAllDocuments, stringify } from 'yaml'
import type { NodeCluster } from './cluster.js'
import { waitFor } from './processes.js'
import { kustomize } from './kustomize.js'

const REPO = new URL('../../', import.meta.url).pathname
export const ENLIST_NS = 'enlist-system'

export interface EnlistOnNode {
  objects: Array<Record<string, unknown>>
  /** Every enlist pod's log, as `kubectl logs` gives it (through the kubelet). */
  logs(): Promise<string>
}

export interface InstallOptions {
  /** An overlay under manifests/ (default overlays/self-managed). */
  overlay?: string
  /** Edits the installed policy (a parsed policy.yaml). */
  policy?: (p: Record<string, unknown>) => void
  timeoutMs?: number
}

export async function installEnlistOnNode(c: NodeCluster, opts: InstallOptions = {}): Promise<EnlistOnNode> {
  const overlay = opts.overlay ?? 'manifests/overlays/self-managed'
  const k = await kustomize(join(REPO, overlay))
  if (k.code !== 0) throw new Error(`kustomize ${overlay}: ${k.stderr}`)
  const objects = parseAllDocuments(k.stdout).map((d) => d.toJS() as Record<string, unknown>).filter(Boolean)
  for (const o of objects) {
    if (o.kind === 'PodDisruptionBudget' && o.apiVersion === 'policy/v1') o.apiVersion = 'policy/v1beta1'
    if (o.kind === 'ConfigMap' && (o.metadata as { name: string }).name === 'enlist-policy' && opts.policy) {
      const data = o.data as Record<string, string>
      const policy = parse(data['policy.yaml']!) as Record<string, unknown>
      // every test cluster has a name: the shared backends the tests run need one
      policy.cluster = { name: 'e2e' }
      opts.policy(policy)
      data['policy.yaml'] = stringify(policy)
    }
  }
  const r = await c.cp.kubectl(['apply', '-f', '-'], { input: objects.map((o) => stringify(o)).join('---\n') })
  if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`)

  const timeoutMs = opts.timeoutMs ?? 180_000
  const deployment = await waitFor(
    'the enlist Deployment available',
    async () => {
      const d = await c.cp.client.get<V1Deployment>(`/apis/apps/v1/namespaces/${ENLIST_NS}/deployments/enlist`)
      const want = d.spec?.replicas ?? 1
      return (d.status?.availableReplicas ?? 0) >= want && (d.status?.updatedReplicas ?? 0) >= want ? d : undefined
    },
    timeoutMs,
    500,
  )
  // The apiserver calls the webhook at a ready endpoint of the Service, with the CA that
  // enlist (self-managed) writes into the configuration.
  await waitFor(
    'the enlist Service to have ready endpoints',
    async () => {
      const ep = await c.cp.client.get<V1Endpoints>(`/api/v1/namespaces/${ENLIST_NS}/endpoints/enlist`)
      return (ep.subsets ?? []).flatMap((s) => s.addresses ?? []).length >= (deployment.spec?.replicas ?? 1)
    },
    timeoutMs,
    500,
  )
  await waitFor(
    'the webhook caBundle',
    async () => {
      const w = await c.cp.client.get<{ webhooks: Array<{ clientConfig: { caBundle?: string } }> }>('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/enlist')
      return w.webhooks.every((x) => (x.clientConfig.caBundle ?? '').length > 0)
    },
    timeoutMs,
    500,
  )
  return {
    objects,
    logs: async () => {
      const l = await c.cp.kubectl(['logs', '-n', ENLIST_NS, '-l', 'app.kubernetes.io/name=enlist', '--tail=-1', '--prefix'])
      if (l.code !== 0) throw new Error(`kubectl logs: ${l.stderr}`)
      return l.stdout
    },
  }
}
