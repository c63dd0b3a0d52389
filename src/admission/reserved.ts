// What a pod enlist injects may not bring itself, and pods enlist cannot serve.
// Pure checks on the pod as the tenant wrote it.

import type { V1Pod } from '@kubernetes/client-node'
import { REGISTRAR_CONTAINER, TOKEN_VOLUME } from '../names.js'

/** Why the pod may not be injected as written: it names something only enlist supplies. */
export function reservedViolation(pod: V1Pod): string | undefined {
  const spec = pod.spec
  const kinds: Array<[string, Array<{ name?: string }> | undefined]> = [
    ['init container', spec?.initContainers],
    ['container', spec?.containers],
    ['ephemeral container', spec?.ephemeralContainers],
  ]
  for (const [kind, list] of kinds) {
    if (list?.some((c) => c.name === REGISTRAR_CONTAINER)) {
      return `${kind} ${REGISTRAR_CONTAINER} is reserved for enlist, which injects its own registrar: remove it from the pod`
    }
  }
  if (spec?.volumes?.some((v) => v.name === TOKEN_VOLUME)) {
    return `volume ${TOKEN_VOLUME} is reserved for enlist's registrar token: remove it from the pod, or rename it`
  }
  return undefined
}

export type Unservable = { reason: 'windows-pod' | 'host-network-dns'; warning: string }

/**
 * Pods enlist leaves alone, with a reason: the registrar image is Linux-only, and a
 * hostNetwork pod resolves names with the node's resolver unless it asks for the
 * cluster's, so a registration URL that names a Service would not resolve.
 */
export function unservable(pod: V1Pod, registrationURL: string): Unservable | undefined {
  const spec = pod.spec
  const os = spec?.os?.name ?? spec?.nodeSelector?.['kubernetes.io/os']
  if (os !== undefined && os !== 'linux') {
    return { reason: 'windows-pod', warning: `enlist: not injected: the pod runs on ${os} nodes and enlist's registrar runs on linux only` }
  }
  if (spec?.hostNetwork === true && spec.dnsPolicy !== 'ClusterFirstWithHostNet' && !hostIsAddress(registrationURL)) {
    return {
      reason: 'host-network-dns',
      warning:
        'enlist: not injected: a hostNetwork pod resolves the registration URL with the node\'s DNS; set dnsPolicy: ClusterFirstWithHostNet to have enlist inject it',
    }
  }
  return undefined
}

function hostIsAddress(url: string): boolean {
  let host: string
  try {
    host = new URL(url).hostname
  } catch {
    return false
  }
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.startsWith('[')
}
