// The pod condition enlist.io/registered, which the readiness gate waits on.

import type { V1Pod } from '@kubernetes/client-node'
import { type CallOptions, type KubeClient, PatchType } from '../kube/client.js'
import { REGISTERED_CONDITION } from '../names.js'

/** The condition's reason once a pod asked to be deregistered (DELETE /v1/registrations):
 *  a live pod that wants no registry entry. */
export const DEREGISTERED_REASON = 'Deregistered'

/** Now, at the second precision Kubernetes stores (metav1.Time). */
export function nowSeconds(): string {
  return new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}

export async function setRegisteredCondition(
  client: KubeClient,
  pod: { namespace: string; name: string; uid: string },
  status: 'True' | 'False',
  reason: string,
  message: string,
  at = nowSeconds(),
  opts?: CallOptions,
): Promise<V1Pod> {
  // A strategic merge on conditions keys by type: other conditions are untouched.
  return client.patch<V1Pod>(
    `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/status`,
    {
      metadata: { uid: pod.uid },
      status: {
        conditions: [{ type: REGISTERED_CONDITION, status, reason, message, lastTransitionTime: at, lastProbeTime: null }],
      },
    },
    PatchType.strategic,
    undefined,
    opts,
  )
}
