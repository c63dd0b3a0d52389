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
import { derivedServiceName, type Workload } from './workload.js'
import { dubboFindings, metadataFindings, normaliseServiceName, type TenancyFinding, type TenancyReason } from './tenancy.js'

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

/** A denial of tenancy that tenancy.enforcement: warn turned into a warning: the server
 *  counts it (by reason) and tells the pod's owner. */
export interface StagedDenial {
  reason: TenancyReason
  message: string
}

export type SettingsResult =
  | { ok: true; settings: Settings; warnings: string[]; staged: StagedDenial[] }
  /** reason: 'invalid-annotation', or the tenancy reason of a denial of tenancy. */
  | { ok: false; error: Error; reason: 'invalid-annotation' | TenancyReason }

const SERVICE_LABELS = ['app.kubernetes.io/name', 'app'] as const

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
    service: '',
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
  let serviceAnnotation: string | undefined

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
        serviceAnnotation = v
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
  if (error) return { ok: false, error, reason: 'invalid-annotation' }

  // Checks of tenancy: denied, or under tenancy.enforcement: warn admitted with a warning.
  const staged: StagedDenial[] = []
  const warn = policy.tenancy.enforcement === 'warn'
  const stage = (f: TenancyFinding): boolean => {
    if (!warn || !f.stageable) return false
    staged.push({ reason: f.reason, message: f.message })
    warnings.push(`enlist: tenancy.enforcement is warn: this pod would be denied: ${f.message}`)
    return true
  }

  const named = serviceName(serviceAnnotation, labels, workload)
  if (!named.ok) {
    const fixed = normaliseServiceName(named.value)
    // warn: an explicit name that is not a label is admitted normalised, never as written
    if (fixed === '' || !stage({ reason: 'service-name', message: named.error.message, stageable: true })) {
      return { ok: false, error: named.error, reason: 'service-name' }
    }
    s.service = fixed
  } else s.service = named.value

  if (s.metadata) {
    const findings = [...metadataFindings(s.metadata, policy.tenancy), ...(policy.dubboBackends.length > 0 ? dubboFindings(namespace, s.metadata, policy.tenancy) : [])]
    for (const f of findings) {
      if (!stage(f)) return { ok: false, error: new AnnotationError(METADATA_ANNOTATION, ann[METADATA_ANNOTATION] ?? '', f.message, tenancyForm(f.reason)), reason: f.reason }
    }
  }
  const dubbo = dubboError(pod, ann[METADATA_ANNOTATION], s.metadata, policy)
  if (dubbo) return { ok: false, error: dubbo, reason: 'invalid-annotation' }

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
  return { ok: true, settings: s, warnings, staged }
}

/** The service name, from the first of: enlist.io/service, the labels app.kubernetes.io/name
 *  and app, the workload. A name given explicitly must already be one (not ok: `value` is
 *  what was given); a derived one is normalised. */
function serviceName(
  annotation: string | undefined,
  labels: Readonly<Record<string, string>>,
  workload: Workload,
): { ok: true; value: string } | { ok: false; value: string; error: Error } {
  const explicit = (r: Result<string>, v: string): { ok: true; value: string } | { ok: false; value: string; error: Error } =>
    r.ok ? { ok: true, value: r.value } : { ok: false, value: v, error: r.error }
  if (annotation !== undefined) return explicit(parseServiceName(annotation), annotation)
  for (const key of SERVICE_LABELS) {
    const v = Object.hasOwn(labels, key) ? labels[key] : undefined
    if (v !== undefined) return explicit(parseServiceName(v, key, 'label'), v)
  }
  const derived = derivedServiceName(workload)
  if (derived !== '') return { ok: true, value: derived }
  return {
    ok: false,
    value: '',
    error: new Error(
      `the service name enlist derives from the pod's ${workload.kind} ${JSON.stringify(workload.name.slice(0, 80))} is empty once normalised to a DNS-1123 label; ` +
        `name the service: annotation ${SERVICE_ANNOTATION} or label app.kubernetes.io/name, e.g. "orders"`,
    ),
  }
}

function tenancyForm(reason: TenancyReason): string {
  switch (reason) {
    case 'interface-not-owned':
      return 'an interface the policy assigns to this namespace (tenancy.interfaces; ask the cluster admin)'
    case 'dubbo-protocol':
      return 'a protocol of tenancy.dubbo.protocols'
    case 'metadata-size':
      return 'smaller metadata (tenancy.metadata.maxBytes)'
    default:
      return 'keys of letters, digits, ".", "_" and "-" (at most 63) with printable values, none that Dubbo reads as routing or configuration (category, rule, force, ...)'
  }
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
