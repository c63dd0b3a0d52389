// Builders for pods, reviews and policies used across unit tests.

import type { V1Pod } from '@kubernetes/client-node'
import fjp from 'fast-json-patch'
import type { AdmissionFacts, AdmissionRequest } from '../../src/admission/review.js'
import { compilePolicy } from '../../src/policy/load.js'
import { testKeys } from './keys.js'
import type { CompiledPolicy } from '../../src/policy/policy.js'

export function makePod(p: Partial<V1Pod> & { name?: string } = {}): V1Pod {
  const { name, ...rest } = p
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: name ?? 'web-1', namespace: 'shop', ...(p.metadata ?? {}) },
    spec: p.spec ?? { containers: [{ name: 'app', image: 'nginx:1.27' }] },
    ...Object.fromEntries(Object.entries(rest).filter(([k]) => k !== 'metadata' && k !== 'spec')),
  }
}

export function makeRequest(pod: V1Pod, over: Partial<AdmissionRequest> = {}): AdmissionRequest {
  return {
    uid: 'req-1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    namespace: pod.metadata?.namespace ?? 'shop',
    operation: 'CREATE',
    object: pod,
    ...over,
  }
}

export function makePolicy(extra: Record<string, unknown> = {}): CompiledPolicy {
  return compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', ...structuredClone(extra) })
}

export const TEST_KEYS = testKeys()

export const FACTS_ENABLED: AdmissionFacts = {
  namespaceLabels: { 'enlist.io/inject': 'enabled' },
  serverVersion: { major: 1, minor: 20 },
  caBundle: '',
  keys: TEST_KEYS,
}

export function facts(labels: Record<string, string> | undefined, over: Partial<AdmissionFacts> = {}): AdmissionFacts {
  return { ...FACTS_ENABLED, namespaceLabels: labels, ...over }
}

/** A decoded JSON Patch operation (enlist adds, and replaces or removes only its own keys). */
export interface PatchOp {
  op: 'add' | 'replace' | 'remove'
  path: string
  value?: unknown
}

/** Applies ops to a copy, the way the apiserver does; throws if any op does not apply. */
export function applyOps<T>(doc: T, ops: readonly PatchOp[]): T {
  return fjp.applyPatch(structuredClone(doc), ops as unknown as fjp.Operation[], true, false).newDocument
}

export function decodePatch(b64: string | undefined): PatchOp[] {
  if (b64 === undefined) throw new Error('no patch')
  return JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as PatchOp[]
}
