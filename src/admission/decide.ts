// The decision order of docs/design.md, and nothing else. Every outcome carries a reason,
// which shows in logs, metrics and (for skips the user caused) an admission warning.

import { INJECT_KEY } from '../names.js'
import type { CompiledPolicy } from '../policy/policy.js'
import type { AnnotationError } from '../contract/annotation-error.js'
import { parseNamespaceOptIn, parsePodOptIn } from './annotations.js'

export type InjectReason = 'pod-opt-in' | 'namespace-opt-in' | 'always-inject-selector' | 'policy-default'

export type SkipReason =
  | 'excluded-namespace'
  | 'namespace-opt-out'
  | 'pod-opt-out'
  | 'never-inject-selector'
  | 'not-opted-in'

export type Decision =
  | { action: 'inject'; reason: InjectReason; warnings: string[] }
  | { action: 'skip'; reason: SkipReason; warnings: string[] }
  | { action: 'deny'; reason: 'invalid-annotation'; error: AnnotationError }

export interface DecisionInput {
  namespace: string
  namespaceLabels: Readonly<Record<string, string>> | undefined
  podLabels: Readonly<Record<string, string>> | undefined
  podAnnotations: Readonly<Record<string, string>> | undefined
}

export function decide(input: DecisionInput, policy: CompiledPolicy): Decision {
  const warnings: string[] = []
  if (policy.excludedNamespaces.has(input.namespace)) {
    return { action: 'skip', reason: 'excluded-namespace', warnings }
  }

  const ns = parseNamespaceOptIn(input.namespaceLabels)
  if (ns === 'disabled') return { action: 'skip', reason: 'namespace-opt-out', warnings }
  if (ns === 'invalid') {
    warnings.push(
      `enlist: namespace ${input.namespace} label ${INJECT_KEY}=${JSON.stringify(input.namespaceLabels?.[INJECT_KEY])} is not "enabled" or "disabled"; treated as unlabelled`,
    )
  }

  const pod = parsePodOptIn(input.podLabels, input.podAnnotations)
  if (!pod.ok) return { action: 'deny', reason: 'invalid-annotation', error: pod.error }
  if (pod.value === 'false') {
    warnings.push(`enlist: not injected: the pod sets ${INJECT_KEY}: "false"`)
    return { action: 'skip', reason: 'pod-opt-out', warnings }
  }

  if (policy.neverInject(input.podLabels)) return { action: 'skip', reason: 'never-inject-selector', warnings }

  if (pod.value === 'true') {
    if (policy.overrides.has('podOptIn') || ns === 'enabled') return { action: 'inject', reason: 'pod-opt-in', warnings }
    warnings.push(`enlist: ${INJECT_KEY}: "true" ignored: the policy does not let pods opt in (tenantOverrides podOptIn)`)
  }
  if (ns === 'enabled') return { action: 'inject', reason: 'namespace-opt-in', warnings }
  if (policy.alwaysInject(input.podLabels)) return { action: 'inject', reason: 'always-inject-selector', warnings }
  if (policy.spec.injection.default === 'enabled') return { action: 'inject', reason: 'policy-default', warnings }
  return { action: 'skip', reason: 'not-opted-in', warnings }
}

/**
 * The decision for a pod that cannot matter (nothing in it names enlist.io/: no opt-in or
 * opt-out, no status), from its namespace alone; undefined where the pod could still
 * matter (selectors read its labels) or the outcome needs more than a skip. Where it
 * answers, decide() answers the same, for any such pod.
 */
export function decideWithoutPod(namespace: string, namespaceLabels: Readonly<Record<string, string>> | undefined, policy: CompiledPolicy): SkipReason | undefined {
  if (policy.excludedNamespaces.has(namespace)) return 'excluded-namespace'
  const ns = parseNamespaceOptIn(namespaceLabels)
  if (ns === 'disabled') return 'namespace-opt-out'
  // an invalid label warns; an enabled one injects
  if (ns !== undefined) return undefined
  const inj = policy.spec.injection
  if (inj.neverInjectSelector.length > 0 || inj.alwaysInjectSelector.length > 0 || inj.default === 'enabled') return undefined
  return 'not-opted-in'
}
