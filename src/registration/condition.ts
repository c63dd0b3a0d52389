// The pod condition enlist.io/registered, which the readiness gate waits on.

import type { V1Pod } from '@kubernetes/client-node'
import { type CallOptions, type KubeClient, PatchType } from '../kube/client.js'
import { type PodRef, podPath } from '../kube/pod-ref.js'
import { REGISTERED_CONDITION } from '../names.js'

/** The condition's reason once a pod asked to be deregistered (DELETE /v1/registrations):
 *  a live pod that wants no registry entry. */
export const DEREGISTERED_REASON = 'Deregistered'

export type ConditionState = { status: 'True' | 'False' | 'Unknown'; lastTransitionTime?: string; reason?: string }

/** Where a pod's conditions are, in either shape (V1Pod, or the cache's PodView). */
export interface ConditionSource {
  status?: { conditions?: ReadonlyArray<{ type: string; status: string; reason?: string; lastTransitionTime?: unknown }> }
}

/** The pod's enlist.io/registered condition, if it has one. */
export function registeredCondition(pod: ConditionSource): ConditionState | undefined {
  const c = pod.status?.conditions?.find((x) => x.type === REGISTERED_CONDITION)
  if (!c) return undefined
  const t = c.lastTransitionTime as unknown
  return {
    status: c.status as ConditionState['status'],
    lastTransitionTime: typeof t === 'string' ? t : t instanceof Date ? t.toISOString() : undefined,
    reason: c.reason,
  }
}

/** A live pod that asked to be deregistered (DELETE /v1/registrations) wants no entry. */
export function deregisteredOnRequest(pod: ConditionSource): boolean {
  const c = registeredCondition(pod)
  return c?.status === 'False' && c.reason === DEREGISTERED_REASON
}

/** Now, at the second precision Kubernetes stores (metav1.Time). */
export function nowSeconds(): string {
  return new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}

export async function setRegisteredCondition(
  client: KubeClient,
  pod: PodRef,
  status: 'True' | 'False',
  reason: string,
  message: string,
  at = nowSeconds(),
  opts?: CallOptions,
): Promise<V1Pod> {
  // A strategic merge on conditions keys by type: other conditions are untouched.
  return client.patch<V1Pod>(
    podPath(pod, 'status'),
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
