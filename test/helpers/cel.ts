// Evaluates Kubernetes admission CEL (ValidatingAdmissionPolicy validations, webhook
// matchConditions) with an npm CEL implementation, for clusters these tests cannot run
// (the test apiserver is 1.20). Evaluation follows the apiserver's order: match
// conditions, then variables in order, then validations. An expression that errors throws
// (CelEvaluationError): the apiserver would refuse such a request too (failurePolicy: Fail),
// but a test that counted it as a refusal would pass on a policy that never evaluates.

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

export class CelEvaluationError extends Error {
  constructor(what: string, error: string) {
    super(`${what} errored: ${error}`)
    this.name = 'CelEvaluationError'
  }
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
 *  messages of the validations that fail (empty: allowed). Throws CelEvaluationError when
 *  an expression errors. */
export function validate(policy: { spec: PolicySpec }, ctx: AdmissionContext): string[] | undefined {
  const bindings: Record<string, unknown> = { ...ctx }
  for (const m of policy.spec.matchConditions ?? []) {
    const r = evaluate(m.expression, bindings)
    if (r.error) throw new CelEvaluationError(`match condition ${m.name}`, r.error)
    if (r.value !== true) return undefined
  }
  const variables: Record<string, unknown> = {}
  bindings.variables = variables
  for (const v of policy.spec.variables ?? []) {
    const r = evaluate(v.expression, bindings)
    if (r.error) throw new CelEvaluationError(`variable ${v.name}`, r.error)
    variables[v.name] = r.value
  }
  const failures: string[] = []
  for (const v of policy.spec.validations ?? []) {
    const r = evaluate(v.expression, bindings)
    if (r.error) throw new CelEvaluationError(`validation ${v.message ?? v.expression}`, r.error)
    if (r.value !== true) failures.push(v.message ?? v.expression)
  }
  return failures
}

/** Whether a webhook's matchConditions send this request to it (all must be true). */
export function matches(conditions: Array<{ name: string; expression: string }>, bindings: Record<string, unknown>): boolean {
  for (const m of conditions) {
    const r = evaluate(m.expression, bindings)
    if (r.error) throw new CelEvaluationError(`match condition ${m.name}`, r.error)
    if (r.value !== true) return false
  }
  return true
}
