// What a pod gets: the policy, adjusted by the tenant annotations the policy allows.
// Disallowed annotations are ignored with a warning; bad allowed ones deny the pod.

import type { V1Pod } from '@kubernetes/client-node'
import {
  ADVERTISE_ANNOTATION,
  DEPENDS_ON_ANNOTATION,
  DRAIN_SECONDS_ANNOTATION,
  ENV_CONTAINERS_ANNOTATION,
  METADATA_ANNOTATION,
  PRESTOP_ANNOTATION,
  READINESS_GATE_ANNOTATION,
  REGISTRAR_TIMEOUT_ANNOTATION,
  SERVICE_ANNOTATION,
} from '../names.js'
import { OptionError } from '../lib/errors.js'
import { containerFilter } from '../policy/load.js'
import { dubboMetadataError } from '../registry/dubbo.js'
import type { AdvertiseMode } from '../policy/backends/advertise.js'
import type { CompiledPolicy, ContainerFilter, PreStopMode, TenantOverride } from '../policy/policy.js'
import { AnnotationError, type Result } from '../contract/annotation-error.js'
import { type Dependency, parseDependsOn } from '../contract/dependencies.js'
import {
  parseAdvertise,
  parseContainerList,
  parseDrainSeconds,
  parseMetadata,
  parsePreStopMode,
  parseReadinessGate,
  parseRegistrarTimeout,
  parseServiceName,
} from './annotations.js'
import type { Workload } from './workload.js'

export interface KubeVersion {
  major: number
  minor: number
}

/** "1.30", "v1.30.2" -> {1, 30}; throws OptionError naming `source` otherwise. */
export function parseKubeVersion(v: string, source = '--kube-version'): KubeVersion {
  const m = /^v?(\d+)\.(\d+)/.exec(v)
  if (!m) throw new OptionError(`${source}: ${JSON.stringify(v)} is invalid; accepted: MAJOR.MINOR such as 1.30`)
  return { major: Number(m[1]), minor: Number(m[2]) }
}

/** The `sleep` lifecycle action is on by default from Kubernetes 1.30 (beta). */
export function supportsSleepAction(v: KubeVersion | undefined): boolean {
  return v !== undefined && (v.major > 1 || (v.major === 1 && v.minor >= 30))
}

export interface Settings {
  service: string
  dependsOn: Dependency[]
  metadata: Record<string, string> | undefined
  drainSeconds: number
  preStop: 'sleep' | 'exec' | 'none'
  readinessGate: boolean
  registrarTimeoutSeconds: number
  envContainers: ContainerFilter
  envContainerNames: readonly string[] | undefined
  /** Advertise modes the tenant chose, by backend name; undefined: the policy's. */
  advertise: Record<string, AdvertiseMode> | undefined
}

export type SettingsResult = { ok: true; settings: Settings; warnings: string[] } | { ok: false; error: AnnotationError }

const OVERRIDE_ANNOTATIONS: ReadonlyArray<[string, TenantOverride]> = [
  [DEPENDS_ON_ANNOTATION, 'dependsOn'],
  [METADATA_ANNOTATION, 'metadata'],
  [SERVICE_ANNOTATION, 'service'],
  [DRAIN_SECONDS_ANNOTATION, 'drainSeconds'],
  [PRESTOP_ANNOTATION, 'preStopMode'],
  [READINESS_GATE_ANNOTATION, 'readinessGate'],
  [REGISTRAR_TIMEOUT_ANNOTATION, 'registrarTimeout'],
  [ENV_CONTAINERS_ANNOTATION, 'envContainers'],
  [ADVERTISE_ANNOTATION, 'advertise'],
]

export function resolveSettings(
  pod: V1Pod,
  namespace: string,
  workload: Workload,
  policy: CompiledPolicy,
  serverVersion: KubeVersion | undefined,
): SettingsResult {
  const spec = policy.spec
  const ann = pod.metadata?.annotations ?? {}
  const labels = pod.metadata?.labels ?? {}
  const warnings: string[] = []

  const allowed = (key: string, name: TenantOverride): string | undefined => {
    const v = ann[key]
    if (v === undefined) return undefined
    if (policy.overrides.has(name)) return v
    warnings.push(`enlist: annotation ${key} ignored: the policy does not let tenants set ${name}`)
    return undefined
  }
  let error: AnnotationError | undefined
  const take = <T>(r: Result<T>, fallback: T): T => {
    if (r.ok) return r.value
    error ??= r.error
    return fallback
  }

  const s: Settings = {
    service: labels['app.kubernetes.io/name'] ?? labels.app ?? workload.name,
    dependsOn: [],
    metadata: undefined,
    drainSeconds: spec.preStop.drainSeconds,
    preStop: 'none',
    readinessGate: spec.readinessGate.enabled,
    registrarTimeoutSeconds: spec.registrar.timeoutSeconds,
    envContainers: policy.envContainers,
    envContainerNames: undefined,
    advertise: undefined,
  }
  let mode: PreStopMode = spec.preStop.mode

  for (const [key, name] of OVERRIDE_ANNOTATIONS) {
    const v = allowed(key, name)
    if (v === undefined) continue
    switch (name) {
      case 'dependsOn':
        s.dependsOn = take(parseDependsOn(v, namespace), [])
        break
      case 'metadata':
        s.metadata = take(parseMetadata(v), undefined)
        break
      case 'service':
        s.service = take(parseServiceName(v), s.service)
        break
      case 'drainSeconds':
        s.drainSeconds = take(parseDrainSeconds(v), s.drainSeconds)
        break
      case 'preStopMode':
        mode = take(parsePreStopMode(v), mode)
        break
      case 'readinessGate':
        s.readinessGate = take(parseReadinessGate(v), s.readinessGate)
        break
      case 'registrarTimeout':
        s.registrarTimeoutSeconds = take(parseRegistrarTimeout(v), s.registrarTimeoutSeconds)
        break
      case 'envContainers': {
        const names = take(parseContainerList(v), undefined)
        if (names) {
          s.envContainers = containerFilter(names)
          s.envContainerNames = names
        }
        break
      }
      case 'advertise':
        s.advertise = take(parseAdvertise(v, spec.registry.backends.map((b) => b.name)), undefined)
        break
      case 'podOptIn':
        break
    }
  }
  if (error) return { ok: false, error }
  const dubbo = dubboError(pod, ann[METADATA_ANNOTATION], s.metadata, policy)
  if (dubbo) return { ok: false, error: dubbo }

  if (mode === 'auto') s.preStop = supportsSleepAction(serverVersion) ? 'sleep' : 'exec'
  else if (mode === 'sleep' && serverVersion && !supportsSleepAction(serverVersion)) {
    s.preStop = 'exec'
    warnings.push(
      `enlist: preStop mode sleep needs Kubernetes >= 1.30; this cluster is ${serverVersion.major}.${serverVersion.minor}, so an exec hook was used`,
    )
  } else s.preStop = mode

  if (s.envContainerNames && !s.envContainerNames.includes('*')) {
    const present = new Set((pod.spec?.containers ?? []).map((c) => c.name))
    const missing = s.envContainerNames.filter((n) => !present.has(n))
    if (missing.length > 0) warnings.push(`enlist: ${ENV_CONTAINERS_ANNOTATION} names containers the pod does not have: ${missing.join(', ')}`)
  }
  return { ok: true, settings: s, warnings }
}

/** A backend in a Dubbo layout registers every pod as a Dubbo provider: refuse a pod that
 *  cannot be one now, rather than let its registrar fail at start. */
function dubboError(pod: V1Pod, raw: string | undefined, metadata: Record<string, string> | undefined, policy: CompiledPolicy): AnnotationError | undefined {
  if (policy.dubboBackends.length === 0) return undefined
  const ports = (pod.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => ({ name: p.name, port: p.containerPort, protocol: p.protocol ?? 'TCP' })))
  const problem = dubboMetadataError(metadata, ports)
  if (problem === undefined) return undefined
  const names = policy.dubboBackends.join(', ')
  const which = policy.dubboBackends.length === 1 ? `the registry backend ${names} registers` : `the registry backends ${names} register`
  return new AnnotationError(
    METADATA_ANNOTATION,
    raw ?? '',
    `${which} every pod as a Dubbo provider: ${problem.startsWith('has no') ? `the metadata ${problem}` : problem}`,
    'a JSON object with the Dubbo "interface" (and optionally "version", "group", "methods", "application", "protocol", "port"), e.g. {"interface":"com.acme.Orders","version":"1.0.0"}',
  )
}
