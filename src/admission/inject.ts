// Builds the JSON patch for one pod as a list of `add` operations. It never diffs whole
// objects and never overwrites what the user wrote: each item is added only where the
// user has none, and what was kept is reported. Cost is linear in the size of the pod.

import type { V1Container, V1EnvVar, V1Lifecycle, V1LifecycleHandler, V1Pod, V1Volume } from '@kubernetes/client-node'
import { pointer } from '../lib/json-pointer.js'
import {
  ENV_CA_BUNDLE,
  ENV_DEPENDS_ON,
  ENV_METADATA,
  ENV_REGISTRATION_URL,
  ENV_SERVICE,
  ENV_TIMEOUT_SECONDS,
  ENV_TOKEN_FILE,
  MANAGED_LABEL,
  REGISTERED_CONDITION,
  REGISTRAR_CONTAINER,
  STATUS_ANNOTATION,
  TOKEN_AUDIENCE,
  TOKEN_MOUNT_PATH,
  TOKEN_VOLUME,
} from '../names.js'
import type { CompiledPolicy, DownwardApiVariable } from '../policy/policy.js'
import { DOWNWARD_API_VARIABLES } from '../policy/schema.js'
import { formatDependency } from './annotations.js'
import type { Settings } from './settings.js'

export interface AddOperation {
  op: 'add'
  path: string
  value: unknown
}

/** Recorded in `enlist.io/status`: what was injected, under which policy. */
export interface InjectionStatus {
  version: 1
  policy: string
  injected: {
    initContainers: string[]
    volumes: string[]
    env: Record<string, string[]>
    preStop: string[]
    readinessGates: string[]
    labels: string[]
  }
  kept: string[]
}

export interface Injection {
  ops: AddOperation[]
  warnings: string[]
  status: InjectionStatus
}

const FIELD_PATHS: Readonly<Record<DownwardApiVariable, string>> = {
  POD_NAME: 'metadata.name',
  POD_NAMESPACE: 'metadata.namespace',
  POD_UID: 'metadata.uid',
  POD_IP: 'status.podIP',
  POD_IPS: 'status.podIPs',
  HOST_IP: 'status.hostIP',
  NODE_NAME: 'spec.nodeName',
  POD_SERVICE_ACCOUNT: 'spec.serviceAccountName',
}

// Env entries are shared, frozen objects: they are only ever serialised, never mutated.
const ENV_ENTRIES: Readonly<Record<DownwardApiVariable, V1EnvVar>> = Object.freeze(
  Object.fromEntries(
    DOWNWARD_API_VARIABLES.map((name) => [
      name,
      Object.freeze({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: FIELD_PATHS[name] } } }),
    ]),
  ) as Record<DownwardApiVariable, V1EnvVar>,
)

const REGISTRAR_SECURITY_CONTEXT = (uid: number) => ({
  runAsNonRoot: true,
  runAsUser: uid,
  runAsGroup: uid,
  privileged: false,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
})

export interface InjectInput {
  pod: V1Pod
  policy: CompiledPolicy
  settings: Settings
  /** CA the registrar trusts when the policy gives none (the server's own). */
  caBundle: string
}

export function buildInjection(input: InjectInput): Injection {
  const { pod, policy, settings } = input
  const spec = policy.spec
  const ops: AddOperation[] = []
  const warnings: string[] = []
  const status: InjectionStatus = {
    version: 1,
    policy: policy.hash,
    injected: { initContainers: [], volumes: [], env: {}, preStop: [], readinessGates: [], labels: [] },
    kept: [],
  }
  const kept = status.kept
  const podSpec = pod.spec

  // --- labels -------------------------------------------------------------
  const wantLabels: Array<[string, string]> = [
    [MANAGED_LABEL, 'true'],
    [spec.discovery.label.key, spec.discovery.label.value],
  ]
  const labels = pod.metadata?.labels
  if (!labels) {
    ops.push({ op: 'add', path: '/metadata/labels', value: Object.fromEntries(wantLabels) })
    for (const [k] of wantLabels) status.injected.labels.push(k)
  } else {
    for (const [k, v] of wantLabels) {
      const have = labels[k]
      if (have === undefined) {
        ops.push({ op: 'add', path: pointer('metadata', 'labels', k), value: v })
        status.injected.labels.push(k)
      } else if (have !== v) {
        kept.push(`label ${k}`)
        warnings.push(`enlist: kept your label ${k}=${JSON.stringify(have)} (enlist would set ${JSON.stringify(v)})`)
      }
    }
  }

  // --- registrar init container and its token volume ---------------------
  const initContainers = podSpec?.initContainers
  if (initContainers?.some((c) => c.name === REGISTRAR_CONTAINER)) {
    kept.push(`initContainer ${REGISTRAR_CONTAINER}`)
    warnings.push(`enlist: kept your init container ${REGISTRAR_CONTAINER}; enlist's registrar was not added`)
  } else {
    const registrar = registrarContainer(input)
    if (!initContainers || initContainers.length === 0) {
      ops.push({ op: 'add', path: '/spec/initContainers', value: [registrar] })
    } else {
      const at = spec.registrar.position === 'first' ? '0' : '-'
      ops.push({ op: 'add', path: `/spec/initContainers/${at}`, value: registrar })
    }
    status.injected.initContainers.push(REGISTRAR_CONTAINER)
  }

  const volumes = podSpec?.volumes
  if (volumes?.some((v) => v.name === TOKEN_VOLUME)) {
    kept.push(`volume ${TOKEN_VOLUME}`)
    warnings.push(`enlist: kept your volume ${TOKEN_VOLUME}; the registrar mounts it as its token`)
  } else {
    const volume = tokenVolume(spec.registrar.tokenExpirationSeconds)
    if (!volumes) ops.push({ op: 'add', path: '/spec/volumes', value: [volume] })
    else ops.push({ op: 'add', path: '/spec/volumes/-', value: volume })
    status.injected.volumes.push(TOKEN_VOLUME)
  }

  // --- app containers: Downward-API env and preStop ------------------------
  const variables = spec.downwardAPI.variables
  const preStopHandler = settings.preStop === 'none' ? undefined : preStop(settings, policy)
  const preStopKept: string[] = []
  const containers = podSpec?.containers ?? []
  for (let i = 0; i < containers.length; i++) {
    const c = containers[i]!
    if (variables.length > 0 && settings.envContainers(c.name)) {
      addEnv(ops, status, warnings, c, i, variables)
    }
    if (preStopHandler && policy.preStopContainers(c.name)) {
      const lifecycle = c.lifecycle
      if (!lifecycle) {
        ops.push({ op: 'add', path: `/spec/containers/${i}/lifecycle`, value: { preStop: preStopHandler } satisfies V1Lifecycle })
        status.injected.preStop.push(c.name)
      } else if (!lifecycle.preStop) {
        ops.push({ op: 'add', path: `/spec/containers/${i}/lifecycle/preStop`, value: preStopHandler })
        status.injected.preStop.push(c.name)
      } else {
        preStopKept.push(c.name)
        kept.push(`preStop ${c.name}`)
      }
    }
  }
  if (preStopKept.length > 0) {
    warnings.push(`enlist: kept your preStop hook in container${preStopKept.length > 1 ? 's' : ''} ${preStopKept.join(', ')}; enlist's ${settings.drainSeconds}s drain was not added`)
  }
  if (preStopHandler && status.injected.preStop.length > 0) {
    const grace = podSpec?.terminationGracePeriodSeconds ?? 30
    if (settings.drainSeconds >= grace) {
      warnings.push(`enlist: the ${settings.drainSeconds}s preStop drain is not shorter than terminationGracePeriodSeconds (${grace}); the app gets no time to stop cleanly`)
    }
  }

  // --- readiness gate ------------------------------------------------------
  if (settings.readinessGate) {
    const gates = podSpec?.readinessGates
    const gate = { conditionType: REGISTERED_CONDITION }
    if (!gates) {
      ops.push({ op: 'add', path: '/spec/readinessGates', value: [gate] })
      status.injected.readinessGates.push(REGISTERED_CONDITION)
    } else if (!gates.some((g) => g.conditionType === REGISTERED_CONDITION)) {
      ops.push({ op: 'add', path: '/spec/readinessGates/-', value: gate })
      status.injected.readinessGates.push(REGISTERED_CONDITION)
    }
  }

  // --- the injection record, last: it describes every operation above -----
  const statusJson = JSON.stringify(status)
  if (!pod.metadata?.annotations) {
    ops.push({ op: 'add', path: '/metadata/annotations', value: { [STATUS_ANNOTATION]: statusJson } })
  } else {
    ops.push({ op: 'add', path: pointer('metadata', 'annotations', STATUS_ANNOTATION), value: statusJson })
  }
  return { ops, warnings, status }
}

function addEnv(
  ops: AddOperation[],
  status: InjectionStatus,
  warnings: string[],
  c: V1Container,
  index: number,
  variables: readonly DownwardApiVariable[],
): void {
  const env = c.env
  if (!env || env.length === 0) {
    ops.push({ op: 'add', path: `/spec/containers/${index}/env`, value: variables.map((v) => ENV_ENTRIES[v]) })
    status.injected.env[c.name] = [...variables]
    return
  }
  const existing = new Set<string>()
  for (const e of env) existing.add(e.name)
  const added: string[] = []
  const keptHere: string[] = []
  // Prepended, so that the user's own "$(POD_IP)" references further down resolve.
  let at = 0
  for (const v of variables) {
    if (existing.has(v)) {
      keptHere.push(v)
      continue
    }
    ops.push({ op: 'add', path: `/spec/containers/${index}/env/${at++}`, value: ENV_ENTRIES[v] })
    added.push(v)
  }
  if (added.length > 0) status.injected.env[c.name] = added
  if (keptHere.length > 0) {
    for (const v of keptHere) status.kept.push(`env ${c.name}/${v}`)
    warnings.push(`enlist: kept your env ${keptHere.join(', ')} in container ${c.name}`)
  }
}

function preStop(settings: Settings, policy: CompiledPolicy): V1LifecycleHandler {
  if (settings.preStop === 'sleep') {
    return { sleep: { seconds: settings.drainSeconds } }
  }
  const custom = policy.spec.preStop.exec.command
  return { exec: { command: custom.length > 0 ? custom : ['/bin/sh', '-c', `sleep ${settings.drainSeconds}`] } }
}

function tokenVolume(expirationSeconds: number): V1Volume {
  return {
    name: TOKEN_VOLUME,
    projected: {
      defaultMode: 0o444,
      sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds, path: 'token' } }],
    },
  }
}

function registrarContainer(input: InjectInput): V1Container {
  const { policy, settings } = input
  const r = policy.spec.registrar
  const env: V1EnvVar[] = DOWNWARD_API_VARIABLES.map((v) => ENV_ENTRIES[v])
  env.push(
    { name: ENV_REGISTRATION_URL, value: r.registrationURL },
    { name: ENV_TOKEN_FILE, value: `${TOKEN_MOUNT_PATH}/token` },
    { name: ENV_TIMEOUT_SECONDS, value: String(settings.registrarTimeoutSeconds) },
    { name: ENV_SERVICE, value: settings.service },
  )
  const ca = r.caBundle || input.caBundle
  if (ca) env.push({ name: ENV_CA_BUNDLE, value: ca })
  if (settings.dependsOn.length > 0) {
    // fully qualified, so the server reads back exactly what admission decided
    env.push({ name: ENV_DEPENDS_ON, value: settings.dependsOn.map((d) => formatDependency(d)).join(',') })
  }
  if (settings.metadata) env.push({ name: ENV_METADATA, value: JSON.stringify(settings.metadata) })

  const c: V1Container = {
    name: REGISTRAR_CONTAINER,
    image: r.image,
    imagePullPolicy: r.imagePullPolicy,
    args: r.args,
    env,
    resources: r.resources,
    securityContext: REGISTRAR_SECURITY_CONTEXT(r.runAsUser),
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_MOUNT_PATH, readOnly: true }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  }
  if (r.command.length > 0) c.command = r.command
  return c
}
