// What the fault tests share: enlist behind a fault proxy with a CMDB, registered pods, and
// one fault phase measured end to end (the request rate while it lasts, and how soon after
// it ends a pod deleted during it is deregistered).

import type { V1Pod } from '@kubernetes/client-node'
import type { ControlPlane } from './control-plane.js'
import type { EnlistServer } from './enlist.js'
import type { Fault, FaultProxy } from './fault-proxy.js'
import { podPath } from '../../src/kube/pod-ref.js'
import { type Cmdb, waitForNoEntry } from './cmdb.js'
import { refOf } from './k8s.js'
import { registeredDeploymentPod } from './kubelet.js'

/** The policy: the CMDB alone, so that every registry call is observable. */
export function cmdbPolicy(cmdb: Cmdb, extra: Record<string, unknown> = {}): (p: Record<string, unknown>) => void {
  return (p) => {
    p.registry = {
      backends: [{ name: 'cmdb', type: 'http', url: cmdb.url, allowInsecureHTTP: true, timeoutSeconds: 2, retry: { initialDelayMs: 100, maxDelayMs: 1000 }, ...extra }],
      reconcileIntervalSeconds: 300,
    }
  }
}

/** A pod created, started and registered through `via`, with its CMDB entry. */
export async function registeredPod(cp: ControlPlane, cmdb: Cmdb, via: EnlistServer, namespace: string, name: string): Promise<V1Pod> {
  const pod = await registeredDeploymentPod(cp, namespace, name, `${via.url}/v1/registrations`)
  if (!cmdb.records.has(pod.metadata!.uid!)) throw new Error(`${name} is not in the CMDB`)
  return pod
}

/** Deletes a pod's Deployment and the pod (no kubelet: it stays terminating). */
export async function deletePod(cp: ControlPlane, pod: V1Pod): Promise<void> {
  const deploymentName = pod.metadata!.labels!.app!
  await cp.client.delete(`/apis/apps/v1/namespaces/${pod.metadata!.namespace}/deployments/${deploymentName}`, { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Orphan' })
  await cp.client.delete(podPath(refOf(pod)))
}

export interface PhaseResult {
  fault: Fault
  faultMs: number
  perResource: Map<string, number>
  /** The busiest resource's requests per second while the fault lasted. */
  maxRate: number
  total: number
  /** From the pod's deletion (during the fault) to its CMDB entry gone. */
  deregisteredAfterDeleteMs: number
  /** From the fault's end to that: 0 when it happened during the fault. */
  recoveredAfterHealMs: number
}

/**
 * One fault, persistent for `faultMs`: a registered pod is deleted a second into it; the
 * proxy counts what enlist sent meanwhile; then the fault ends and the time until the pod is
 * deregistered is measured. Nothing here sleeps to synchronise: the fault's length is what
 * is being measured against.
 */
export async function faultPhase(o: {
  cp: ControlPlane
  cmdb: Cmdb
  proxy: FaultProxy
  pod: V1Pod
  fault: Fault
  faultMs: number
  log: (line: string) => void
  /** Runs while the fault lasts, after the deletion. */
  during?: () => Promise<void>
}): Promise<PhaseResult> {
  const { cp, cmdb, proxy, pod, fault, faultMs } = o
  const uid = pod.metadata!.uid!
  proxy.setFault(fault)
  const began = Date.now()
  await new Promise((r) => setTimeout(r, 1000))
  const deleted = Date.now()
  await deletePod(cp, pod)
  await o.during?.()
  await new Promise((r) => setTimeout(r, Math.max(0, began + faultMs - Date.now())))
  const healed = Date.now()
  proxy.setFault(undefined)
  await waitForNoEntry(cmdb, uid, `${pod.metadata!.name} deregistered after the ${fault} fault`, 120_000, 50)
  const gone = Date.now()
  // when during the fault: the CMDB's own record of the DELETE says when
  const deleteAt = cmdb.requests.find((r) => r.method === 'DELETE' && r.path.endsWith(uid))?.at ?? gone
  const perResource = proxy.perResource(began, healed)
  const faultS = (healed - began) / 1000
  const maxRate = Math.max(0, ...perResource.values()) / faultS
  const result: PhaseResult = {
    fault,
    faultMs: healed - began,
    perResource,
    maxRate,
    total: [...perResource.values()].reduce((a, b) => a + b, 0),
    deregisteredAfterDeleteMs: deleteAt - deleted,
    recoveredAfterHealMs: Math.max(0, deleteAt - healed),
  }
  const busiest = [...perResource.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join(', ')
  o.log(
    `${fault}: ${result.total} requests in ${faultS.toFixed(1)} s (${busiest}); busiest resource ${maxRate.toFixed(2)}/s; ` +
      `the pod deleted during it was deregistered ${(result.deregisteredAfterDeleteMs / 1000).toFixed(1)} s after its deletion, ` +
      `${(result.recoveredAfterHealMs / 1000).toFixed(1)} s after the fault ended`,
  )
  return result
}
