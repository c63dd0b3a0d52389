// Builds the JSON patch for one pod as a list of `add` operations. It never diffs whole
// objects and never overwrites what the user wrote: each item is added only where the
// user has none, and what was kept is reported.
//
// Speed by design: everything that depends only on the policy (the Downward-API env
// entries, the token volume, the preStop hook, the registrar container but for its
// pod-specific env) is serialized once per policy into JSON fragments, so building a
// patch is mostly string concatenation, and its cost is linear in the size of the pod.

import type { V1Container, V1EnvVar, V1LifecycleHandler, V1Pod, V1Volume } from '@kubernetes/client-node'
import { formatDependency } from '../contract/dependencies.js'
import { registrarFixedEnv, registrarTimeoutEnv, TOKEN_FILE_NAME } from '../contract/registrar-env.js'
import { pointer } from '../lib/json-pointer.js'
import type { DecisionKey } from '../decision/keyring.js'
import {
  constantForDigest,
  DECISION_OVERRIDES,
  type DecisionOverride,
  type Injected,
  injectionDigest,
  type InjectionStatus,
  serviceAccountOf,
  STATUS_VERSION,
  statusText,
} from '../decision/status.js'
import {
  ADVERTISE_ANNOTATION,
  DEPENDS_ON_ANNOTATION,
  METADATA_ANNOTATION,
  REGISTERED_CONDITION,
  REGISTRAR_CONTAINER,
  SERVICE_ANNOTATION,
  STATUS_ANNOTATION,
  TOKEN_AUDIENCE,
  TOKEN_MOUNT_PATH,
  TOKEN_VOLUME,
} from '../names.js'
import type { CompiledPolicy, DownwardApiVariable } from '../policy/policy.js'
import { DOWNWARD_API_VARIABLES } from '../policy/schema.js'
import { type OwnedKeys, ownedKeysOf } from './reserved.js'
import type { Settings } from './settings.js'

/** A patch operation whose value, if any, is already JSON. Only `add` touches what the
 *  user wrote; `replace` and `remove` touch only enlist's own keys (reserved.ts). */
export interface AddOperation {
  op?: 'add' | 'replace' | 'remove'
  path: string
  json?: string
}

export interface Injection {
  /** The JSON Patch document: a JSON array of add operations. */
  patch: string
  warnings: string[]
  /** What enlist.io/status records (the annotation adds the seal). */
  status: Omit<InjectionStatus, 'seal'>
}

export interface InjectInput {
  pod: V1Pod
  /** The request's namespace (a pod's own may be empty at admission). */
  namespace: string
  policy: CompiledPolicy
  settings: Settings
  /** CA the registrar trusts when the policy gives none (the server's own). */
  caBundle: string
  /** Seals the decision; absent only offline (enlist render), where nothing registers. */
  key?: DecisionKey
  /** The pod carries a status enlist did not write (or one that proves nothing): why, for
   *  the warning; it is replaced. */
  forgedStatus?: string
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

const envEntry = (name: DownwardApiVariable): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: FIELD_PATHS[name] } } })
const ENV_JSON: Readonly<Record<DownwardApiVariable, string>> = Object.fromEntries(
  DOWNWARD_API_VARIABLES.map((v) => [v, JSON.stringify(envEntry(v))]),
) as Record<DownwardApiVariable, string>
const GATE_JSON = JSON.stringify({ conditionType: REGISTERED_CONDITION })
const ENV_OBJECT: Readonly<Record<DownwardApiVariable, V1EnvVar>> = Object.fromEntries(
  DOWNWARD_API_VARIABLES.map((v) => [v, constantForDigest(envEntry(v))]),
) as Record<DownwardApiVariable, V1EnvVar>

// --- what a policy makes constant, serialized once ----------------------------------

interface Fragments {
  /** The env array for a container that has none. */
  envWhole: string
  /** The names of the Downward-API variables enlist adds. */
  envNames: ReadonlySet<string>
  volume: string
  preStop: Map<string, string>
  /** The registrar's JSON around its pod-specific env: prefix + env + suffix. */
  registrar: Map<string, RegistrarTemplate>
  /** For the digest: the volume; the hooks, by their JSON. */
  volumeObject: V1Volume
  preStopParsed: (json: string) => V1LifecycleHandler
}

const cache = new WeakMap<CompiledPolicy, Fragments>()

function fragments(policy: CompiledPolicy): Fragments {
  let f = cache.get(policy)
  if (!f) {
    const volume: V1Volume = {
      name: TOKEN_VOLUME,
      projected: {
        defaultMode: 0o444,
        sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: policy.spec.registrar.tokenExpirationSeconds, path: TOKEN_FILE_NAME } }],
      },
    }
    f = {
      envWhole: `[${policy.spec.downwardAPI.variables.map((v) => ENV_JSON[v]).join(',')}]`,
      envNames: new Set(policy.spec.downwardAPI.variables),
      volume: JSON.stringify(volume),
      preStop: new Map(),
      registrar: new Map(),
      volumeObject: constantForDigest(structuredClone(volume)),
      preStopParsed: memoParse<V1LifecycleHandler>(),
    }
    cache.set(policy, f)
  }
  return f
}

function preStopJson(f: Fragments, settings: Settings, policy: CompiledPolicy): string {
  const key = `${settings.preStop}:${settings.drainSeconds}`
  let json = f.preStop.get(key)
  if (json === undefined) {
    const custom = policy.spec.preStop.exec.command
    const handler: V1LifecycleHandler =
      settings.preStop === 'sleep'
        ? { sleep: { seconds: settings.drainSeconds } }
        : { exec: { command: custom.length > 0 ? custom : ['/bin/sh', '-c', `sleep ${settings.drainSeconds}`] } }
    json = JSON.stringify(handler)
    f.preStop.set(key, json)
  }
  return json
}

const ENV_MARK = '"__enlist_env__"'

interface RegistrarTemplate {
  prefix: string
  suffix: string
  /** The container as an object, by its timeout (for the digest). */
  objects: Map<number, V1Container>
}

/** The registrar container's JSON, with the env that differs per pod spliced in, and the
 *  same container as a (shared, never changed) object. */
function registrarJson(f: Fragments, policy: CompiledPolicy, settings: Settings, caBundle: string): { json: string; object: () => V1Container } {
  const r = policy.spec.registrar
  const ca = r.caBundle || caBundle
  let t = f.registrar.get(ca)
  if (!t) {
    const fixedEnv = [
      ...DOWNWARD_API_VARIABLES.map((v) => ENV_JSON[v]),
      ...registrarFixedEnv(r.registrationURL, ca).map((e) => JSON.stringify(e)),
    ].join(',')
    const c: Omit<V1Container, 'env'> & { env: string } = {
      name: REGISTRAR_CONTAINER,
      image: r.image,
      imagePullPolicy: r.imagePullPolicy,
      ...(r.command.length > 0 ? { command: r.command } : {}),
      args: r.args,
      env: '__enlist_env__',
      resources: r.resources,
      securityContext: {
        runAsNonRoot: true,
        // no runAsUser in the policy (OpenShift): the SCC assigns the namespace's UID
        ...(r.runAsUser !== undefined ? { runAsUser: r.runAsUser, runAsGroup: r.runAsUser } : {}),
        privileged: false,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      },
      volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_MOUNT_PATH, readOnly: true }],
      terminationMessagePolicy: 'FallbackToLogsOnError',
    }
    const [before, after] = JSON.stringify(c).split(ENV_MARK) as [string, string]
    t = { prefix: `${before}[${fixedEnv}`, suffix: `]${after}`, objects: new Map() }
    // one template per CA bundle in use; a rotation adds one, old ones are dropped
    if (f.registrar.size >= 4) f.registrar.clear()
    f.registrar.set(ca, t)
  }
  const env = `,${JSON.stringify(registrarTimeoutEnv(settings.registrarTimeoutSeconds))}`
  const json = t.prefix + env + t.suffix
  const tt = t
  return {
    json,
    object: () => {
      let o = tt.objects.get(settings.registrarTimeoutSeconds)
      if (!o) {
        if (tt.objects.size >= 16) tt.objects.clear()
        tt.objects.set(settings.registrarTimeoutSeconds, (o = constantForDigest(JSON.parse(json) as V1Container)))
      }
      return o
    },
  }
}

// --- the patch ---------------------------------------------------------------------

export function buildInjection(input: InjectInput): Injection {
  const { pod, policy, settings } = input
  const spec = policy.spec
  const f = fragments(policy)
  const ops: AddOperation[] = []
  const warnings: string[] = []
  const status: Omit<InjectionStatus, 'seal'> = {
    version: STATUS_VERSION,
    policy: policy.hash,
    decision: {
      namespace: input.namespace,
      serviceAccount: serviceAccountOf(pod.spec),
      service: settings.service,
      metadata: settings.metadata ?? {},
      // fully qualified, so registration reads back exactly what was decided here
      dependsOn: settings.dependsOn.map((d) => formatDependency(d)),
      ...(settings.advertise ? { advertise: settings.advertise } : {}),
    },
    injected: { initContainers: [], volumes: [], env: {}, preStop: [], readinessGates: [], labels: [] },
    kept: [],
  }
  const kept = status.kept
  const podSpec = pod.spec

  // --- enlist's labels and record annotations -------------------------------
  status.injected.labels.push(...ownedKeyOps(pod, policy, ops, warnings))
  const annotations = pod.metadata?.annotations

  // --- registrar init container and its token volume ---------------------
  // (a pod that already names either is refused before this: reserved.ts)
  const initContainers = podSpec?.initContainers
  const registrar = registrarJson(f, policy, settings, input.caBundle)
  if (!initContainers || initContainers.length === 0) ops.push({ path: '/spec/initContainers', json: `[${registrar.json}]` })
  else ops.push({ path: `/spec/initContainers/${spec.registrar.position === 'first' ? '0' : '-'}`, json: registrar.json })
  status.injected.initContainers.push(REGISTRAR_CONTAINER)

  const volumes = podSpec?.volumes
  if (!volumes) ops.push({ path: '/spec/volumes', json: `[${f.volume}]` })
  else ops.push({ path: '/spec/volumes/-', json: f.volume })
  status.injected.volumes.push(TOKEN_VOLUME)

  // --- app containers: Downward-API env and preStop ------------------------
  const variables = spec.downwardAPI.variables
  const preStop = settings.preStop === 'none' ? undefined : preStopJson(f, settings, policy)
  const preStopKept: string[] = []
  const containers = podSpec?.containers ?? []
  for (let i = 0; i < containers.length; i++) {
    const c = containers[i]!
    if (variables.length > 0 && settings.envContainers(c.name)) addEnv(ops, status, warnings, f, c, i, variables)
    if (preStop && policy.preStopContainers(c.name)) {
      const lifecycle = c.lifecycle
      if (!lifecycle) {
        ops.push({ path: `/spec/containers/${i}/lifecycle`, json: `{"preStop":${preStop}}` })
        status.injected.preStop.push(c.name)
      } else if (!lifecycle.preStop) {
        ops.push({ path: `/spec/containers/${i}/lifecycle/preStop`, json: preStop })
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
  if (preStop && status.injected.preStop.length > 0) {
    const grace = podSpec?.terminationGracePeriodSeconds ?? 30
    if (settings.drainSeconds >= grace) {
      warnings.push(`enlist: the ${settings.drainSeconds}s preStop drain is not shorter than terminationGracePeriodSeconds (${grace}); the app gets no time to stop cleanly`)
    }
  }

  // --- readiness gate ------------------------------------------------------
  if (settings.readinessGate) {
    const gates = podSpec?.readinessGates
    if (!gates) {
      ops.push({ path: '/spec/readinessGates', json: `[${GATE_JSON}]` })
      status.injected.readinessGates.push(REGISTERED_CONDITION)
    } else if (!gates.some((g) => g.conditionType === REGISTERED_CONDITION)) {
      ops.push({ path: '/spec/readinessGates/-', json: GATE_JSON })
      status.injected.readinessGates.push(REGISTERED_CONDITION)
    }
  }

  // --- the injection record, last: it describes every operation above -----
  status.digest = digestOf(f, registrar.object(), preStop, status.injected)
  const overrides = DECISION_OVERRIDES.filter((o) => policy.overrides.has(o) && annotations?.[OVERRIDE_ANNOTATION[o]] !== undefined)
  if (overrides.length > 0) status.overrides = overrides
  const statusJson = JSON.stringify(statusText(status, input.key))
  if (!annotations) ops.push({ path: '/metadata/annotations', json: `{${JSON.stringify(STATUS_ANNOTATION)}:${statusJson}}` })
  else {
    const forged = input.forgedStatus !== undefined
    ops.push({ op: forged ? 'replace' : 'add', path: pointer('metadata', 'annotations', STATUS_ANNOTATION), json: statusJson })
    if (forged) warnings.push(`enlist: replaced your annotation ${STATUS_ANNOTATION}: it was not written by enlist for this pod (${input.forgedStatus}); only enlist's own record is trusted`)
  }

  return { patch: patchText(ops), warnings, status }
}

/** The JSON Patch document. Paths are made of validated label and annotation keys (RFC
 *  6901-escaped) and digits: no character in them needs JSON escaping. */
export function patchText(ops: readonly AddOperation[]): string {
  let patch = '['
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    patch += `${i === 0 ? '' : ','}{"op":"${op.op ?? 'add'}","path":"${op.path}"${op.json === undefined ? '' : `,"value":${op.json}`}}`
  }
  return patch + ']'
}

/**
 * Makes enlist's keys on the pod enlist's (reserved.ts ownedKeysOf): its labels set to its
 * values, the record labels and annotations of the layouts in use that a tenant wrote
 * removed, each with a warning. Returns the labels it set. Idempotent: on a pod enlist
 * injected it adds nothing.
 */
export function ownedKeyOps(pod: V1Pod, policy: CompiledPolicy, ops: AddOperation[], warnings: string[]): string[] {
  const owned = ownedKeys(policy)
  const set: string[] = []
  const labels = pod.metadata?.labels
  if (!labels) {
    const want = owned.labels.filter((l) => l.value !== undefined)
    ops.push({ path: '/metadata/labels', json: JSON.stringify(Object.fromEntries(want.map((l) => [l.key, l.value]))) })
    for (const l of want) set.push(l.key)
  } else {
    for (const { key: k, value: v } of owned.labels) {
      const have = Object.hasOwn(labels, k) ? labels[k] : undefined // own keys only: a label key may be any name
      if (v === undefined) {
        if (have === undefined) continue
        // a record label: enlist sets it when the pod is registered, never the tenant
        ops.push({ op: 'remove', path: pointer('metadata', 'labels', k) })
        warnings.push(`enlist: removed your label ${k}=${JSON.stringify(have)}: enlist sets it once the pod is registered`)
      } else if (have === undefined) {
        ops.push({ path: pointer('metadata', 'labels', k), json: JSON.stringify(v) })
        set.push(k)
      } else if (have !== v) {
        // enlist's own labels: what selects managed and discoverable pods is not the tenant's to set
        ops.push({ op: 'replace', path: pointer('metadata', 'labels', k), json: JSON.stringify(v) })
        set.push(k)
        warnings.push(`enlist: replaced your label ${k}=${JSON.stringify(have)} with ${JSON.stringify(v)}: only enlist sets it`)
      }
    }
  }
  // The discovery records are enlist's to write once the pod is registered, never the pod's.
  const annotations = pod.metadata?.annotations
  if (annotations) {
    for (const a of owned.annotations) {
      if (!Object.hasOwn(annotations, a)) continue
      ops.push({ op: 'remove', path: pointer('metadata', 'annotations', a) })
      warnings.push(`enlist: removed your annotation ${a}: enlist writes the discovery record once the pod is registered`)
    }
  }
  return set
}

function memoParse<T extends object>(): (json: string) => T {
  const m = new Map<string, T>()
  return (json) => {
    let v = m.get(json)
    if (v === undefined) m.set(json, (v = constantForDigest(JSON.parse(json) as T & object)))
    return v
  }
}

const ownedCache = new WeakMap<CompiledPolicy, OwnedKeys>()
function ownedKeys(policy: CompiledPolicy): OwnedKeys {
  let o = ownedCache.get(policy)
  if (!o) ownedCache.set(policy, (o = ownedKeysOf(policy.spec)))
  return o
}

const OVERRIDE_ANNOTATION: Readonly<Record<DecisionOverride, string>> = {
  service: SERVICE_ANNOTATION,
  metadata: METADATA_ANNOTATION,
  dependsOn: DEPENDS_ON_ANNOTATION,
  advertise: ADVERTISE_ANNOTATION,
}

// Pods of one workload share their injection's shape, and its digest depends on nothing
// else: computed once per registrar (policy, CA, timeout), hook and shape.
const digests = new WeakMap<V1Container, Map<string, string>>()
function digestOf(f: Fragments, r: V1Container, preStop: string | undefined, injected: Injected): string {
  let m = digests.get(r)
  if (!m) digests.set(r, (m = new Map()))
  const key = `${preStop ?? ''}\n${JSON.stringify(injected)}`
  let d = m.get(key)
  if (d === undefined) {
    if (m.size >= 512) m.clear()
    m.set(key, (d = injectionDigest(injectedView(f, r, preStop, injected), injected)))
  }
  return d
}

/** The pod's enlist fields as the patch leaves them, for injectionDigest: the same function
 *  reads them back from the pod at admission, so the two cannot disagree on the form. */
function injectedView(f: Fragments, r: V1Container, preStop: string | undefined, injected: Injected): V1Pod {
  const byContainer = new Map<string, V1Container>()
  const container = (name: string) => {
    let c = byContainer.get(name)
    if (!c) byContainer.set(name, (c = { name }))
    return c
  }
  for (const [name, vars] of Object.entries(injected.env)) container(name).env = vars.map((v) => ENV_OBJECT[v as DownwardApiVariable])
  if (preStop !== undefined) for (const name of injected.preStop) container(name).lifecycle = { preStop: f.preStopParsed(preStop) }
  return {
    spec: {
      initContainers: [r],
      volumes: [f.volumeObject],
      containers: [...byContainer.values()],
      readinessGates: injected.readinessGates.map((conditionType) => ({ conditionType })),
    },
  }
}

function addEnv(
  ops: AddOperation[],
  status: Omit<InjectionStatus, 'seal'>,
  warnings: string[],
  f: Fragments,
  c: V1Container,
  index: number,
  variables: readonly DownwardApiVariable[],
): void {
  const env = c.env
  if (!env || env.length === 0) {
    ops.push({ path: `/spec/containers/${index}/env`, json: f.envWhole })
    status.injected.env[c.name] = [...variables]
    return
  }
  // The user's variables of the names enlist adds (a pod may carry thousands of others).
  const existing = new Set<string>()
  for (const e of env) if (f.envNames.has(e.name)) existing.add(e.name)
  const added: string[] = []
  const keptHere: string[] = []
  // Prepended, so that the user's own "$(POD_IP)" references further down resolve.
  let at = 0
  for (const v of variables) {
    if (existing.has(v)) {
      keptHere.push(v)
      continue
    }
    ops.push({ path: `/spec/containers/${index}/env/${at++}`, json: ENV_JSON[v] })
    added.push(v)
  }
  if (added.length > 0) status.injected.env[c.name] = added
  if (keptHere.length > 0) {
    for (const v of keptHere) status.kept.push(`env ${c.name}/${v}`)
    warnings.push(`enlist: kept your env ${keptHere.join(', ')} in container ${c.name}`)
  }
}
