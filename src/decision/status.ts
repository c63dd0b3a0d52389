// The `enlist.io/status` annotation: what admission injected and what it decided, sealed
// with an HMAC so that nothing a tenant writes can pass for it. The registration API and
// the controller take a pod's registration parameters (service, metadata, dependencies)
// from an opened seal only, never from the pod spec, which the tenant wrote.
//
// The seal covers the canonical JSON of everything but the seal, under a key named in it
// (keyring.ts). It binds the namespace and service account the decision was made for:
// a tenant may copy a sealed status only to another pod it could create with the same
// service account in the same namespace, which gains it nothing it did not have.

import { createHmac, timingSafeEqual } from 'node:crypto'
import { canonicalJson } from '../lib/canonical-json.js'
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

function mac(key: DecisionKey, status: Omit<InjectionStatus, 'seal'>): string {
  return createHmac('sha256', key.secret)
    .update(DOMAIN + canonicalJson(status))
    .digest('base64url')
}

export function seal(status: Omit<InjectionStatus, 'seal'>, key: DecisionKey): InjectionStatus {
  return { ...status, seal: { key: key.id, mac: mac(key, status) } }
}

export type OpenFailure = 'malformed' | 'unsealed' | 'unknown-key' | 'bad-seal' | 'wrong-namespace'

export type Opened =
  | { ok: true; status: InjectionStatus & { seal: Seal } }
  | { ok: false; reason: OpenFailure; message: string; key?: string }

/** Verifies a status annotation found on a pod in `namespace`. */
export function openStatus(text: string, ring: KeyRing | undefined, namespace: string): Opened {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return { ok: false, reason: 'malformed', message: 'it is not JSON' }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { ok: false, reason: 'malformed', message: 'it is not a JSON object' }
  const { seal: s, ...rest } = parsed as Partial<InjectionStatus> & Record<string, unknown>
  if (rest.version !== STATUS_VERSION) {
    return { ok: false, reason: 'unsealed', message: `version ${JSON.stringify(rest.version) ?? 'none'} carries no seal (enlist writes version ${STATUS_VERSION})` }
  }
  if (s === null || typeof s !== 'object' || typeof s.key !== 'string' || typeof s.mac !== 'string') {
    return { ok: false, reason: 'unsealed', message: 'it has no seal' }
  }
  const key = ring ? keyById(ring, s.key) : undefined
  if (!key) return { ok: false, reason: 'unknown-key', message: `it is sealed with key ${JSON.stringify(s.key)}, which enlist does not hold`, key: s.key }
  const want = Buffer.from(mac(key, rest as Omit<InjectionStatus, 'seal'>))
  const got = Buffer.from(s.mac)
  if (want.length !== got.length || !timingSafeEqual(want, got)) return { ok: false, reason: 'bad-seal', message: 'its seal does not match its content', key: s.key }
  // Sealed by enlist, so well-formed unless enlist has a bug: check anyway, it is cheap.
  const d = rest.decision as Partial<Decision> | undefined
  if (
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
    return { ok: false, reason: 'wrong-namespace', message: `it was decided for namespace ${d.namespace}, not ${namespace}`, key: s.key }
  }
  return { ok: true, status: { ...(rest as Omit<InjectionStatus, 'seal'>), seal: s } }
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
