// AdmissionReview in, AdmissionReview out: the whole admission decision as a pure
// function of (request, policy, facts). The server is a thin shell around it.

import type { V1Pod } from '@kubernetes/client-node'
import type { DecisionKey, KeyRing } from '../decision/keyring.js'
import { checkInjected, openStatus } from '../decision/status.js'
import { utf8ToBase64 } from '../lib/base64.js'
import { EnlistError } from '../lib/errors.js'
import { STATUS_ANNOTATION } from '../names.js'
import type { CompiledPolicy } from '../policy/policy.js'
import { decide, decideWithoutPod, type SkipReason } from './decide.js'
import { glimpse, podCannotMatter } from './glimpse.js'
import { type AddOperation, buildInjection, ownedKeyOps, patchText } from './inject.js'
import { reservedViolation, unservable } from './reserved.js'
import { type KubeVersion, resolveSettings, type StagedDenial } from './settings.js'
import { type Workload, workloadOf } from './workload.js'

export interface AdmissionRequest {
  uid: string
  kind?: { group?: string; version?: string; kind?: string }
  resource?: { group?: string; version?: string; resource?: string }
  subResource?: string
  name?: string
  namespace?: string
  operation?: string
  object?: unknown
  dryRun?: boolean
}

export interface AdmissionReview {
  apiVersion: string
  kind: 'AdmissionReview'
  request: AdmissionRequest
}

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  patchType?: 'JSONPatch'
  patch?: string
  warnings?: string[]
  status?: { code: number; reason?: string; message: string }
}

export interface AdmissionFacts {
  /** Labels of the pod's namespace from the cache; undefined when it is not known. */
  namespaceLabels: Readonly<Record<string, string>> | undefined
  serverVersion: KubeVersion | undefined
  /** CA bundle the registrar trusts when the policy sets none. */
  caBundle: string
  /** The decision keys: every key verifies, the active one seals. Absent offline (enlist
   *  render): nothing is sealed and a status found on a pod is taken as enlist's. */
  keys?: { ring: KeyRing; signing: DecisionKey }
}

export type Verdict = 'injected' | 'skipped' | 'denied' | 'ignored'

export interface AdmissionOutcome {
  response: AdmissionResponse
  verdict: Verdict
  reason: string
  namespace: string
  workload: Workload | undefined
  /** The JSON Patch (JSON text) when injecting. */
  patch: string | undefined
  /** What tenancy.enforcement: warn let through that enforce would deny (counted by the shell). */
  staged?: readonly StagedDenial[]
}

const SUPPORTED_VERSIONS = new Set(['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'])

/** Checks the shape of a parsed body; throws a 400 EnlistError naming what is wrong. */
export function parseReview(body: unknown): AdmissionReview {
  const bad = (m: string): never => {
    throw new EnlistError('ENLIST_BAD_REQUEST', `not an AdmissionReview: ${m}`, 400)
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object')
  const r = body as Record<string, unknown>
  if (r.kind !== 'AdmissionReview') bad(`kind must be "AdmissionReview", got ${JSON.stringify(r.kind) ?? 'nothing'}`)
  if (typeof r.apiVersion !== 'string' || !SUPPORTED_VERSIONS.has(r.apiVersion)) {
    bad(`apiVersion must be admission.k8s.io/v1 (or v1beta1), got ${JSON.stringify(r.apiVersion) ?? 'nothing'}`)
  }
  const req = r.request
  if (req === null || typeof req !== 'object' || Array.isArray(req)) bad('request must be an object')
  const r2 = req as Record<string, unknown>
  if (typeof r2.uid !== 'string' || r2.uid === '') bad('request.uid must be a non-empty string')
  for (const field of ['namespace', 'operation', 'name'] as const) {
    if (r2[field] !== undefined && r2[field] !== null && typeof r2[field] !== 'string') bad(`request.${field} must be a string`)
  }
  return body as AdmissionReview
}

/** A review answered without parsing it: a pod that cannot matter, skipped for its namespace. */
export interface UnparsedSkip {
  apiVersion: string
  uid: string
  namespace: string
  reason: SkipReason
}

/**
 * Decides from the raw review text where that is provably the same as admit() on the
 * parsed review (glimpse.ts): a pod create that names nothing of enlist's, in a namespace
 * that decides alone. Undefined: parse, and admit().
 */
export function skipUnparsed(
  text: string,
  policy: CompiledPolicy,
  namespaceLabels: (namespace: string) => Readonly<Record<string, string>> | undefined,
): UnparsedSkip | undefined {
  // Cheapest first: the glimpse stops where the pod begins, while the test that the pod
  // cannot matter searches all of it, which a pod enlist injects would pay for nothing.
  const g = glimpse(text)
  if (!g?.podCreate || !SUPPORTED_VERSIONS.has(g.apiVersion)) return undefined
  const labels = g.namespace ? namespaceLabels(g.namespace) : undefined
  // a namespace not in the cache yet: admit() waits for it
  if (labels === undefined && !policy.excludedNamespaces.has(g.namespace)) return undefined
  const reason = decideWithoutPod(g.namespace, labels, policy)
  if (!reason || !podCannotMatter(text)) return undefined
  return { apiVersion: g.apiVersion, uid: g.uid, namespace: g.namespace, reason }
}

export function admit(request: AdmissionRequest, policy: CompiledPolicy, facts: AdmissionFacts): AdmissionOutcome {
  const namespace = request.namespace ?? ''
  const base = { namespace, workload: undefined, patch: undefined }

  if (
    request.operation !== 'CREATE' ||
    request.kind?.kind !== 'Pod' ||
    request.resource?.resource !== 'pods' ||
    (request.subResource ?? '') !== '' ||
    request.object === null ||
    typeof request.object !== 'object'
  ) {
    return { ...base, response: { uid: request.uid, allowed: true }, verdict: 'ignored', reason: 'not-a-pod-create' }
  }

  const pod = request.object as V1Pod
  const meta = pod.metadata
  const workload = workloadOf(meta)
  const skip = (reason: string, warnings: string[]): AdmissionOutcome => ({
    namespace,
    workload,
    patch: undefined,
    response: withWarnings({ uid: request.uid, allowed: true }, warnings),
    verdict: 'skipped',
    reason,
  })
  const deny = (message: string, reason = 'invalid-annotation'): AdmissionOutcome => ({
    namespace,
    workload,
    patch: undefined,
    response: { uid: request.uid, allowed: false, status: { code: 400, reason: 'BadRequest', message } },
    verdict: 'denied',
    reason,
  })

  // Reinvocation (other webhooks changed the pod after enlist), or a copy of an injected
  // pod: nothing to add if enlist really wrote its status AND the pod carries exactly what
  // enlist injected with it (the digest the seal covers). A valid seal over other enlist
  // fields is someone's injection passed off as enlist's: denied, on whichever webhook entry
  // calls. A status enlist did not seal (or one of version 2, which proves no injection) is
  // the tenant's and counts for nothing.
  const statusText = meta?.annotations?.[STATUS_ANNOTATION]
  let forged: string | undefined
  if (statusText !== undefined) {
    if (!facts.keys) return skip('already-injected', [])
    const opened = openStatus(statusText, facts.keys.ring, namespace)
    if (opened.ok) {
      const check = checkInjected(pod, opened.status)
      if (check.ok) return alreadyInjected(request.uid, pod, policy, namespace, workload)
      if (check.reason === 'tampered') {
        return deny(
          `${STATUS_ANNOTATION} was sealed by enlist for another pod: ${check.message}. Create the pod without ${STATUS_ANNOTATION} and without enlist's fields (its workload's template has neither), and enlist injects it`,
          'tampered',
        )
      }
      forged = check.message
    } else forged = opened.message
  }

  const decision = decide(
    {
      namespace,
      namespaceLabels: facts.namespaceLabels,
      podLabels: meta?.labels,
      podAnnotations: meta?.annotations,
    },
    policy,
  )
  if (decision.action === 'deny') return deny(decision.error.message)
  if (decision.action === 'skip') {
    if (forged) decision.warnings.push(`enlist: annotation ${STATUS_ANNOTATION} was not written by enlist (${forged}); this pod cannot register`)
    return skip(decision.reason, decision.warnings)
  }

  const reserved = reservedViolation(pod)
  if (reserved) return deny(reserved, 'reserved-name')
  const cannot = unservable(pod, policy.spec.registrar.registrationURL)
  if (cannot) return skip(cannot.reason, [...decision.warnings, cannot.warning])

  const resolved = resolveSettings(pod, namespace, workload, policy, facts.serverVersion)
  if (!resolved.ok) return deny(resolved.error.message, resolved.reason)

  const injection = buildInjection({
    pod,
    namespace,
    policy,
    settings: resolved.settings,
    caBundle: facts.caBundle,
    key: facts.keys?.signing,
    forgedStatus: forged,
  })
  const warnings = [...decision.warnings, ...resolved.warnings, ...injection.warnings]
  return {
    namespace,
    workload,
    patch: injection.patch,
    response: withWarnings(
      {
        uid: request.uid,
        allowed: true,
        patchType: 'JSONPatch',
        patch: utf8ToBase64(injection.patch),
      },
      warnings,
    ),
    verdict: 'injected',
    reason: decision.reason,
    ...(resolved.staged.length > 0 ? { staged: resolved.staged } : {}),
  }
}

/** A pod enlist injected: nothing to add but enlist's keys, should a later webhook or a
 *  copy of a registered pod have brought its own (ownedKeyOps; none on enlist's output). */
function alreadyInjected(uid: string, pod: V1Pod, policy: CompiledPolicy, namespace: string, workload: Workload | undefined): AdmissionOutcome {
  const ops: AddOperation[] = []
  const warnings: string[] = []
  ownedKeyOps(pod, policy, ops, warnings)
  const patch = ops.length > 0 ? patchText(ops) : undefined
  const response: AdmissionResponse = patch === undefined ? { uid, allowed: true } : { uid, allowed: true, patchType: 'JSONPatch', patch: utf8ToBase64(patch) }
  return { namespace, workload, patch, response: withWarnings(response, warnings), verdict: 'skipped', reason: 'already-injected' }
}

// The apiserver drops warnings with control characters and truncates long ones.
const MAX_WARNING = 256

function withWarnings(response: AdmissionResponse, warnings: readonly string[]): AdmissionResponse {
  if (warnings.length === 0) return response
  response.warnings = warnings.map((w) => {
    // eslint-disable-next-line no-control-regex -- control characters are what it removes
    const clean = w.replace(/[\x00-\x1f\x7f]+/g, ' ')
    return clean.length > MAX_WARNING ? clean.slice(0, MAX_WARNING - 3) + '...' : clean
  })
  return response
}

/** The response AdmissionReview as JSON text, written directly: the patch is base64 and
 *  needs no escaping, so nothing large is walked by a generic serializer. */
export function serializeReview(review: AdmissionReview, r: AdmissionResponse): string {
  let s = `{"apiVersion":${JSON.stringify(review.apiVersion)},"kind":"AdmissionReview","response":{"uid":${JSON.stringify(r.uid)},"allowed":${r.allowed}`
  if (r.patch !== undefined) s += `,"patchType":"JSONPatch","patch":"${r.patch}"`
  if (r.warnings !== undefined) s += `,"warnings":${JSON.stringify(r.warnings)}`
  if (r.status !== undefined) s += `,"status":${JSON.stringify(r.status)}`
  return `${s}}}`
}
