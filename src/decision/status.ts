// The `enlist.io/status` annotation: what admission injected and what it decided, sealed
// with an HMAC so that nothing a tenant writes can pass for it. The registration API and
// the controller take a pod's registration parameters (service, metadata, dependencies)
// from an opened seal only, never from the pod spec, which the tenant wrote.
//
// The annotation is the status as JSON with the seal as its last member, and the seal is
// an HMAC of the exact text before it, under a key named in it (keyring.ts). What is read
// back is that text and nothing else (anything after the seal breaks it), so no
// canonical form is needed on either side: admission signs what it writes, verbatim.
// The seal binds the namespace and service account the decision was made for, and (from
// version 3) a digest of the fields enlist injected (injectionDigest): a sealed status
// copied onto another pod counts as enlist's only if that pod carries exactly enlist's
// injection too, which gains the tenant nothing it did not have.

import { createHmac, createSecretKey, hash, type KeyObject, timingSafeEqual } from 'node:crypto'
import type { V1Container, V1EnvVar, V1Pod } from '@kubernetes/client-node'
import { STATUS_ANNOTATION } from '../names.js'
import type { AdvertiseMode } from '../policy/backends/advertise.js'
import type { TenantOverride } from '../policy/policy.js'
import { type KeyRing, keyById, type DecisionKey } from './keyring.js'

/** 3: the status carries `digest` (and `overrides`). Version 2, which pods injected before
 *  the upgrade carry, is still read: registration takes its decision; admission no longer
 *  takes it as proof of injection (it does not say what was injected). */
export const STATUS_VERSION = 3
const READ_VERSIONS: ReadonlySet<unknown> = new Set([2, 3])

/** What admission decided for the pod's registration. */
export interface Decision {
  namespace: string
  serviceAccount: string
  service: string
  metadata: Record<string, string>
  /** Fully qualified: "namespace/service[:port]". */
  dependsOn: string[]
  /** Advertise modes the tenant chose, by backend name (enlist.io/advertise); the rest use
   *  their backend's policy setting. Absent when the tenant chose none. */
  advertise?: Record<string, AdvertiseMode>
}

export interface Injected {
  initContainers: string[]
  volumes: string[]
  env: Record<string, string[]>
  preStop: string[]
  readinessGates: string[]
  labels: string[]
}

export interface InjectionStatus {
  /** STATUS_VERSION when enlist writes it; 2 in pods sealed before version 3. */
  version: 2 | typeof STATUS_VERSION
  /** Hash of the policy the decision was made under. */
  policy: string
  decision: Decision
  injected: Injected
  kept: string[]
  /** injectionDigest of the pod as enlist left it (version 3). */
  digest?: string
  /** The tenant overrides whose annotations shaped the decision (version 3): what
   *  registration checks the policy still allows. */
  overrides?: DecisionOverride[]
  /** Absent only where no key is at hand (enlist render). */
  seal?: Seal
}

export interface Seal {
  key: string
  /** base64url HMAC-SHA256. */
  mac: string
}

const DOMAIN = 'enlist.io/status v2\n'
// The seal, last in the annotation: key ids and base64url MACs need no JSON escaping.
const SEAL_AT_END = /,"seal":\{"key":"([a-z0-9][a-z0-9-]{0,62})","mac":"([A-Za-z0-9_-]{43})"\}\}$/

// A raw Buffer key is imported again on every createHmac (a third of an admission's CPU in
// a profile); a KeyObject is imported once per key.
const keyObjects = new WeakMap<DecisionKey, KeyObject>()

function mac(key: DecisionKey, text: string): string {
  let k = keyObjects.get(key)
  if (!k) keyObjects.set(key, (k = createSecretKey(key.secret)))
  return createHmac('sha256', k).update(DOMAIN).update(text).digest('base64url')
}

/** The annotation text: the status as JSON, sealed with `key` when there is one. */
export function statusText(status: Omit<InjectionStatus, 'seal'>, key: DecisionKey | undefined): string {
  const json = JSON.stringify(status)
  if (!key) return json
  const body = json.slice(0, -1)
  return `${body},"seal":{"key":"${key.id}","mac":"${mac(key, body)}"}}`
}

export type OpenFailure = 'malformed' | 'unsealed' | 'unknown-key' | 'bad-seal' | 'wrong-namespace'

export type Opened =
  | { ok: true; status: InjectionStatus & { seal: Seal } }
  | { ok: false; reason: OpenFailure; message: string; key?: string }

/** Verifies a status annotation found on a pod in `namespace`. */
export function openStatus(text: string, ring: KeyRing | undefined, namespace: string): Opened {
  const m = SEAL_AT_END.exec(text)
  if (!m) {
    let version: unknown
    try {
      version = (JSON.parse(text) as { version?: unknown } | null)?.version
    } catch {
      return { ok: false, reason: 'malformed', message: 'it is not JSON' }
    }
    if (!READ_VERSIONS.has(version)) return { ok: false, reason: 'unsealed', message: `version ${JSON.stringify(version) ?? 'none'} carries no seal (enlist writes version ${STATUS_VERSION})` }
    return { ok: false, reason: 'unsealed', message: 'it has no seal' }
  }
  const [, keyId, got] = m as unknown as [string, string, string]
  const body = text.slice(0, m.index)
  const key = ring ? keyById(ring, keyId) : undefined
  if (!key) return { ok: false, reason: 'unknown-key', message: `it is sealed with key ${JSON.stringify(keyId)}, which enlist does not hold`, key: keyId }
  const want = Buffer.from(mac(key, body))
  if (!timingSafeEqual(want, Buffer.from(got))) return { ok: false, reason: 'bad-seal', message: 'its seal does not match its content', key: keyId }
  // Exactly the sealed text is read: enlist wrote it, so it parses unless enlist has a bug.
  let parsed: Partial<InjectionStatus>
  try {
    parsed = JSON.parse(body + '}') as Partial<InjectionStatus>
  } catch {
    return { ok: false, reason: 'malformed', message: 'its sealed content is not JSON' }
  }
  const d = parsed.decision
  if (
    !READ_VERSIONS.has(parsed.version) ||
    !d ||
    typeof d.namespace !== 'string' ||
    typeof d.serviceAccount !== 'string' ||
    typeof d.service !== 'string' ||
    !isStringRecord(d.metadata) ||
    !Array.isArray(d.dependsOn) ||
    !d.dependsOn.every((x) => typeof x === 'string')
  ) {
    return { ok: false, reason: 'malformed', message: 'its decision is incomplete' }
  }
  if (d.namespace !== namespace) {
    return { ok: false, reason: 'wrong-namespace', message: `it was decided for namespace ${d.namespace}, not ${namespace}`, key: keyId }
  }
  return { ok: true, status: { ...(parsed as InjectionStatus), seal: { key: keyId, mac: got } } }
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string')
}

/** The service account a pod runs as, as admission and TokenReview name it. */
export function serviceAccountOf(spec: { serviceAccountName?: string; serviceAccount?: string } | undefined): string {
  return spec?.serviceAccountName || spec?.serviceAccount || 'default'
}

/** Opens the status annotation of a pod (as the apiserver holds it). */
export function openPodStatus(
  pod: { metadata?: { namespace?: string; annotations?: Record<string, string> } },
  ring: KeyRing | undefined,
): Opened {
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION]
  if (text === undefined) return { ok: false, reason: 'unsealed', message: `it has no ${STATUS_ANNOTATION} annotation: enlist did not inject it` }
  return openStatus(text, ring, pod.metadata?.namespace ?? '')
}

/** The key id a pod's status names, unverified: which keys live pods still need. */
export function sealKeyOf(pod: { metadata?: { annotations?: Record<string, string> } }): string | undefined {
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION]
  if (text === undefined) return undefined
  try {
    const key = (JSON.parse(text) as { seal?: { key?: unknown } } | null)?.seal?.key
    return typeof key === 'string' ? key : undefined
  } catch {
    return undefined
  }
}

// --- what enlist injected, as a digest -------------------------------------------------

/** The tenant overrides that can shape a decision (the rest shape only the injection). */
export const DECISION_OVERRIDES = ['service', 'metadata', 'dependsOn', 'advertise'] as const satisfies readonly TenantOverride[]
export type DecisionOverride = (typeof DECISION_OVERRIDES)[number]

/**
 * The tenant overrides a decision was made with: registration refuses a pod whose decision
 * used one the policy no longer allows. Version 3 records them; for a version 2 status they
 * are inferred from the decision, where only an annotation sets metadata, dependencies and
 * advertise modes, and `service` (which may have come from the workload) is not counted.
 */
export function overridesOf(status: Pick<InjectionStatus, 'version' | 'decision' | 'overrides'>): DecisionOverride[] {
  if (status.version !== 2 && Array.isArray(status.overrides)) return status.overrides.filter((o): o is DecisionOverride => (DECISION_OVERRIDES as readonly string[]).includes(o))
  const d = status.decision
  const out: DecisionOverride[] = []
  if (Object.keys(d.metadata).length > 0) out.push('metadata')
  if (d.dependsOn.length > 0) out.push('dependsOn')
  if (d.advertise && Object.keys(d.advertise).length > 0) out.push('advertise')
  return out
}

// The registrar's fields enlist sets (volumeMounts: of enlist's volumes). Not `resources`: the apiserver defaults requests from
// limits (and may rewrite quantities) after enlist's patch, and VPA may set them; nor fields
// enlist leaves to defaulting (terminationMessagePath).
const REGISTRAR_FIELDS = ['name', 'image', 'imagePullPolicy', 'command', 'args', 'env', 'securityContext', 'volumeMounts', 'terminationMessagePolicy'] as const

function byName<T extends { name?: string }>(list: readonly T[] | undefined, name: string): T | undefined {
  return list?.find((x) => x.name === name)
}

/**
 * sha256 (base64url) of the canonical JSON of the fields enlist injected into `pod`, as
 * `injected` names them: the registrar init container (REGISTRAR_FIELDS), the token volume,
 * each env entry of each name enlist added to each container (duplicates included), each
 * preStop hook enlist added, the readiness gates of the type it added. Nothing else of the
 * pod counts, so other webhooks' edits (Istio's containers, an app image rewritten) leave it
 * unchanged; canonical (sorted keys, empty values dropped) because the apiserver hands the
 * pod back re-encoded, in Go's field order and without Go's omitted empties.
 */
export function injectionDigest(pod: V1Pod, injected: Injected): string {
  const spec = pod.spec
  const containers = spec?.containers
  // One line per item enlist injected, each the canonical JSON of what the pod has there
  // ("null": nothing), in the order `injected` (sealed) lists them.
  let text = 'enlist.io/injected v1'
  const line = (tag: string, name: string, v: unknown) => (text += `\n${tag} ${name} ${canonical(v) ?? 'null'}`)
  for (const n of injected.initContainers) {
    const c = byName(spec?.initContainers, n)
    text += `\ni ${n} ${c ? registrarHash(c, injected.volumes) : 'null'}`
  }
  for (const n of injected.volumes) line('v', n, byName(spec?.volumes, n))
  for (const c of Object.keys(injected.env).sort()) {
    const names = injected.env[c]!
    const found = names.map((): V1EnvVar[] => [])
    for (const e of byName(containers, c)?.env ?? []) {
      const i = names.indexOf(e.name)
      if (i >= 0) found[i]!.push(e)
    }
    for (let i = 0; i < names.length; i++) line('e', `${c}/${names[i]}`, found[i])
  }
  for (const c of injected.preStop) line('p', c, byName(containers, c)?.lifecycle?.preStop)
  for (const g of injected.readinessGates) line('g', g, (spec?.readinessGates ?? []).filter((x) => x.conditionType === g))
  // one-shot: a Hash object costs more than hashing these few KB
  return hash('sha256', text, 'base64url')
}

/** JSON with sorted keys; null, undefined, '' and empty arrays and objects left out (Go's
 *  omitempty drops them), inside arrays as null (positions count). */
export function canonical(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object') return v === undefined || v === '' || v === null ? undefined : JSON.stringify(v)
  const known = constantJson.get(v)
  if (known !== undefined) return known === '' ? undefined : known
  if (Array.isArray(v)) {
    // element by element: the elements are often constants (enlist's env entries)
    if (v.length === 0) return undefined
    let out = '['
    for (let i = 0; i < v.length; i++) out += `${i === 0 ? '' : ','}${canonical(v[i]) ?? 'null'}`
    return out + ']'
  }
  const n = normal(v)
  return n === undefined ? undefined : JSON.stringify(n)
}

// The registrar's line is the hash of its fields' canonical JSON: its CA bundle makes it the
// largest item, and enlist's own (constant) container is then hashed once, not per pod.
const registrarHashes = new WeakMap<object, { volumes: string; hash: string }>()
function registrarHash(c: V1Container, volumes: readonly string[]): string {
  const key = volumes.join('/')
  const known = constant.has(c) ? registrarHashes.get(c) : undefined
  if (known?.volumes === key) return known.hash
  let text = '{'
  let first = true
  for (const k of REGISTRAR_FIELDS) {
    // its mounts of enlist's volumes only: the ServiceAccount admission plugin adds the
    // service-account token's mount to every container, after enlist's patch too
    const j = canonical(k === 'volumeMounts' ? c.volumeMounts?.filter((m) => volumes.includes(m.name)) : c[k])
    if (j === undefined) continue
    text += `${first ? '' : ','}"${k}":${j}`
    first = false
  }
  const h = hash('sha256', text + '}', 'base64url')
  if (constant.has(c)) registrarHashes.set(c, { volumes: key, hash: h })
  return h
}

/** Canonical forms of objects that never change (admission's per-policy fragments, and
 *  each object in them): the injection side of the digest then serializes almost nothing
 *  per pod. The objects must not be changed afterwards. */
const constant = new WeakMap<object, unknown>()
const constantJson = new WeakMap<object, string>()
export function constantForDigest<T extends object>(v: T): T {
  remember(v)
  return v
}
function remember(v: unknown): void {
  if (v === null || typeof v !== 'object' || constant.has(v)) return
  for (const x of Object.values(v)) remember(x) // nested first
  const n = normal(v)
  constant.set(v, n ?? null)
  constantJson.set(v, n === undefined ? '' : JSON.stringify(n))
}

// A copy with sorted keys and no empties, for one JSON.stringify (a third of the cost of
// stringifying each member on its own).
function normal(v: unknown): unknown {
  if (v === null || v === undefined || v === '') return undefined
  if (typeof v !== 'object') return v
  if (Array.isArray(v)) {
    if (v.length === 0) return undefined
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) out[i] = normal(v[i]) ?? null
    return out
  }
  const keys = Object.keys(v)
  if (keys.length > 1) keys.sort()
  let out: Record<string, unknown> | undefined
  for (const k of keys) {
    const x = normal((v as Record<string, unknown>)[k])
    if (x !== undefined) (out ??= {})[k] = x
  }
  return out
}

export type InjectedCheck = { ok: true } | { ok: false; reason: 'unproven' | 'tampered'; message: string }

/**
 * Whether `pod` is what enlist injected under this opened status: the same service account
 * and, field for field, enlist's injection (injectionDigest). `unproven`: a version 2 status,
 * which records no digest.
 */
export function checkInjected(pod: V1Pod, status: InjectionStatus): InjectedCheck {
  if (status.version === 2 || typeof status.digest !== 'string') {
    return { ok: false, reason: 'unproven', message: `it was sealed by an earlier enlist (status version ${status.version}), which did not record what it injected` }
  }
  const sa = serviceAccountOf(pod.spec)
  if (status.decision.serviceAccount !== sa) {
    return { ok: false, reason: 'tampered', message: `it was sealed for service account ${status.decision.serviceAccount}, and this pod runs as ${sa}` }
  }
  if (!status.injected || injectionDigest(pod, status.injected) !== status.digest) {
    return { ok: false, reason: 'tampered', message: `this pod's ${describeInjected(status.injected)} are not what enlist injected with it` }
  }
  return { ok: true }
}

function describeInjected(i: Injected | undefined): string {
  if (!i) return 'enlist fields'
  const parts = [
    ...i.initContainers.map((n) => `init container ${n}`),
    ...i.volumes.map((n) => `volume ${n}`),
    ...(Object.keys(i.env).length > 0 ? [`env of container${Object.keys(i.env).length > 1 ? 's' : ''} ${Object.keys(i.env).join(', ')}`] : []),
    ...(i.preStop.length > 0 ? [`preStop hook of ${i.preStop.join(', ')}`] : []),
    ...i.readinessGates.map((g) => `readiness gate ${g}`),
  ]
  return parts.join(', ')
}
