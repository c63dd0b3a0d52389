// The `enlist.io/status` annotation: what admission injected and what it decided, sealed
// with an HMAC so that nothing a tenant writes can pass for it. The registration API and
// the controller take a pod's registration parameters (service, metadata, dependencies)
// from an opened seal only, never from the pod spec, which the tenant wrote.
//
// The annotation is the status as JSON with the seal as its last member, and the seal is
// an HMAC of the exact text before it, under a key named in it (keyring.ts). What is read
// back is that text and nothing else (anything after the seal breaks it), so no
// canonical form is needed on either side: admission signs what it writes, verbatim.
// The seal binds the namespace and service account the decision was made for: a tenant
// may copy a sealed status only to another pod it could create with the same service
// account in the same namespace, which gains it nothing it did not have.

import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto'
import { STATUS_ANNOTATION } from '../names.js'
import type { AdvertiseMode } from '../policy/backends/advertise.js'
import { type KeyRing, keyById, type DecisionKey } from './keyring.js'

export const STATUS_VERSION = 2

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

export interface InjectionStatus {
  version: typeof STATUS_VERSION
  /** Hash of the policy the decision was made under. */
  policy: string
  decision: Decision
  injected: {
    initContainers: string[]
    volumes: string[]
    env: Record<string, string[]>
    preStop: string[]
    readinessGates: string[]
    labels: string[]
  }
  kept: string[]
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
    if (version !== STATUS_VERSION) return { ok: false, reason: 'unsealed', message: `version ${JSON.stringify(version) ?? 'none'} carries no seal (enlist writes version ${STATUS_VERSION})` }
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
    parsed.version !== STATUS_VERSION ||
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
