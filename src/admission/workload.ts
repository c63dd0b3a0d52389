// Which workload a pod belongs to, from what admission sees: pods from controllers
// arrive with generateName and ownerReferences but no name yet.

import type { V1ObjectMeta } from '@kubernetes/client-node'
import { normaliseServiceName } from './tenancy.js'

export interface Workload {
  kind: string
  name: string
}

/** Set by OpenShift on a DeploymentConfig's ReplicationControllers and their pods. */
export const DEPLOYMENT_CONFIG_ANNOTATION = 'openshift.io/deployment-config.name'

// CronJob-made Jobs are named <cronjob>-<scheduled minutes since epoch>.
const CRONJOB_SUFFIX = /^(.+)-[0-9]{8,11}$/

export function workloadOf(meta: V1ObjectMeta | undefined): Workload {
  const owner = meta?.ownerReferences?.find((o) => o.controller) ?? meta?.ownerReferences?.[0]
  if (owner) {
    if (owner.kind === 'ReplicaSet') {
      const hash = meta?.labels?.['pod-template-hash']
      if (hash && owner.name.endsWith(`-${hash}`)) {
        return { kind: 'Deployment', name: owner.name.slice(0, -hash.length - 1) }
      }
    }
    // OpenShift: a DeploymentConfig's pods belong to its ReplicationController <dc>-<version>,
    // which the deployer annotates with the DeploymentConfig's name (and so the pods too).
    if (owner.kind === 'ReplicationController') {
      const dc = meta?.annotations?.[DEPLOYMENT_CONFIG_ANNOTATION]
      if (dc && owner.name.startsWith(`${dc}-`)) return { kind: 'DeploymentConfig', name: dc }
    }
    if (owner.kind === 'Job') {
      const m = CRONJOB_SUFFIX.exec(owner.name)
      if (m) return { kind: 'CronJob', name: m[1]! }
    }
    return { kind: owner.kind, name: owner.name }
  }
  if (meta?.name) return { kind: 'Pod', name: meta.name }
  const gen = meta?.generateName ?? ''
  return { kind: 'Pod', name: gen.endsWith('-') ? gen.slice(0, -1) : gen }
}

/** The service name of a pod that names none: its workload's name, normalised to a DNS-1123
 *  label (an owner reference's name is whatever its writer chose). '' when nothing is left. */
export function derivedServiceName(w: Workload): string {
  return normaliseServiceName(w.name)
}
