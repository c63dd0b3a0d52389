// Evaluates Kubernetes admission CEL (ValidatingAdmissionPolicy validations, webhook
// matchConditions) with an npm CEL implementation, for clusters these tests cannot run
// (the test apiserver is 1.20). Evaluation follows the apiserver's order: match
// conditions, then variables in order, then validations; an expression that errors
// counts as failing, as with failurePolicy: Fail.

import { isCelError, parse, plan, celEnv, type CelInput } from '@bufbuild/cel'

const env = celEnv()

export function evaluate(expression: string, bindings: Record<string, unknown>): { value?: unknown; error?: string } {
  let result: unknown
  try {
    result = plan(env, parse(expression))(bindings as Record<string, CelInput>)
  } catch (err) {
    return { error: (err as Error).message }
  }
  if (isCelError(result)) return { error: String((result as { message?: string }).message ?? result) }
  return { value: result }
}

export interface AdmissionContext {
  object: unknown
  oldObject: unknown
  request: { userInfo: { username: string }; operation?: string; subResource?: string }
}

interface PolicySpec {
  matchConditions?: Array<{ name: string; expression: string }>
  variables?: Array<{ name: string; expression: string }>
  validations?: Array<{ expression: string; message?: string }>
}

/** Undefined when the policy does not apply (a match condition is false); else the
 *  messages of the validations that fail (empty: allowed). */
export function validate(policy: { spec: PolicySpec }, ctx: AdmissionContext): string[] | undefined {
  const bindings: Record<string, unknown> = { ...ctx }
  for (const m of policy.spec.matchConditions ?? []) {
    const r = evaluate(m.expression, bindings)
    if (r.error) return [`match condition ${m.name} errored: ${r.error}`]
    if (r.value !== true) return undefined
  }
  const variables: Record<string, unknown> = {}
  bindings.variables = variables
  for (const v of policy.spec.variables ?? []) {
    const r = evaluate(v.expression, bindings)
    if (r.error) return [`variable ${v.name} errored: ${r.error}`]
    variables[v.name] = r.value
  }
  const failures: string[] = []
  for (const v of policy.spec.validations ?? []) {
    const r = evaluate(v.expression, bindings)
    if (r.error) failures.push(`${v.message ?? v.expression} (error: ${r.error})`)
    else if (r.value !== true) failures.push(v.message ?? v.expression)
  }
  return failures
}

/** Whether a webhook's matchConditions send this request to it (all must be true). */
export function matches(conditions: Array<{ name: string; expression: string }>, bindings: Record<string, unknown>): boolean | string {
  for (const m of conditions) {
    const r = evaluate(m.expression, bindings)
    if (r.error) return `match condition ${m.name} errored: ${r.error}`
    if (r.value !== true) return false
  }
  return true
}
