// Policy types (what the schema guarantees once defaults are applied) and the compiled
// form that the admission engine reads without further work per request.

import type { V1ResourceRequirements } from '@kubernetes/client-node'
import type { LabelMatcher, LabelSelector } from '../lib/selector.js'
import type { BackendSpec } from './backends/index.js'
import type { DOWNWARD_API_VARIABLES, TENANT_OVERRIDES } from './schema.js'
import type { CompiledTenancy } from '../admission/tenancy.js'

export type DownwardApiVariable = (typeof DOWNWARD_API_VARIABLES)[number]
export type TenantOverride = (typeof TENANT_OVERRIDES)[number]
export type PreStopMode = 'auto' | 'sleep' | 'exec' | 'none'

export type { BackendSpec, EtcdBackendSpec, HttpBackendSpec, KubernetesBackendSpec, ZookeeperBackendSpec } from './backends/index.js'

export interface PolicySpec {
  apiVersion: 'enlist.io/v1alpha1'
  kind: 'Policy'
  /** name: this cluster's mark in shared backends; '' only with the kubernetes backend alone. */
  cluster: { name: string }
  injection: {
    default: 'enabled' | 'disabled'
    excludedNamespaces: string[]
    neverInjectSelector: LabelSelector[]
    alwaysInjectSelector: LabelSelector[]
  }
  registrar: {
    /** Always set once compiled: the policy's, else enlist's own image (PolicyDefaults). */
    image: string
    imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never'
    command: string[]
    args: string[]
    position: 'first' | 'last'
    timeoutSeconds: number
    registrationURL: string
    caBundle: string
    /** Absent: the registrar runs as the UID the image or the cluster (an OpenShift SCC) gives it. */
    runAsUser?: number
    tokenExpirationSeconds: number
    resources: V1ResourceRequirements
  }
  downwardAPI: { variables: DownwardApiVariable[]; containers: string[] }
  preStop: { mode: PreStopMode; drainSeconds: number; containers: string[]; exec: { command: string[] } }
  readinessGate: { enabled: boolean }
  discovery: { label: { key: string; value: string }; annotation: string }
  registry: { backends: BackendSpec[]; reconcileIntervalSeconds: number; sweepRequestsPerSecond: number }
  tenancy: {
    interfaces: Array<{ namespaces: string[]; interfaces: string[] }>
    enforcement: 'enforce' | 'warn'
    dubbo: { protocols: string[]; parameters: string[] }
    metadata: { maxBytes: number }
  }
  tenantOverrides: { allowed: TenantOverride[] }
}

/** Selects containers by name; `*` selects all. */
export type ContainerFilter = (name: string) => boolean

export interface CompiledPolicy {
  readonly spec: PolicySpec
  /** sha256 of the canonical, defaulted policy; the first 16 hex digits. */
  readonly hash: string
  readonly excludedNamespaces: ReadonlySet<string>
  readonly neverInject: LabelMatcher
  readonly alwaysInject: LabelMatcher
  readonly envContainers: ContainerFilter
  readonly preStopContainers: ContainerFilter
  readonly overrides: ReadonlySet<TenantOverride>
  /** Backends in a Dubbo layout, by name: each pod must then be a Dubbo provider (an interface
   *  in enlist.io/metadata and a port that serves it), checked at admission. */
  readonly dubboBackends: readonly string[]
  /** tenancy, compiled (src/admission/tenancy.ts). */
  readonly tenancy: CompiledTenancy
  /** What `enlist policy validate` tells about a valid policy (a Dubbo layout with no
   *  interface owners, say). */
  readonly notes: readonly string[]
}

/** Namespaces that are never injected, whatever the policy says. */
export const BUILTIN_EXCLUDED_NAMESPACES: readonly string[] = Object.freeze([
  'kube-system',
  'kube-public',
  'kube-node-lease',
  'enlist-system',
])
