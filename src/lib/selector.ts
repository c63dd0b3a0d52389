// Kubernetes label selectors (metav1.LabelSelector), compiled once per policy so the
// admission path only runs closures.

export interface LabelSelectorRequirement {
  key: string
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'
  values?: string[]
}

export interface LabelSelector {
  matchLabels?: Record<string, string>
  matchExpressions?: LabelSelectorRequirement[]
}

export type Labels = Readonly<Record<string, string>>
export type LabelMatcher = (labels: Labels | undefined) => boolean

const EMPTY: Labels = Object.freeze({})

/** A label's value; only the object's own properties are labels (never `constructor`,
 *  `toString` or anything else inherited from Object.prototype). */
function label(l: Labels, key: string): string | undefined {
  return Object.hasOwn(l, key) ? l[key] : undefined
}

export function compileSelector(selector: LabelSelector): LabelMatcher {
  const checks: Array<(l: Labels) => boolean> = []
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    checks.push((l) => label(l, k) === v)
  }
  for (const req of selector.matchExpressions ?? []) {
    const { key } = req
    const values = new Set(req.values ?? [])
    switch (req.operator) {
      case 'In':
        checks.push((l) => {
          const v = label(l, key)
          return v !== undefined && values.has(v)
        })
        break
      case 'NotIn':
        checks.push((l) => {
          const v = label(l, key)
          return v === undefined || !values.has(v)
        })
        break
      case 'Exists':
        checks.push((l) => label(l, key) !== undefined)
        break
      case 'DoesNotExist':
        checks.push((l) => label(l, key) === undefined)
        break
    }
  }
  // An empty selector matches everything, as in Kubernetes.
  return (labels) => {
    const l = labels ?? EMPTY
    for (const c of checks) if (!c(l)) return false
    return true
  }
}

/** Any of the selectors matches (how neverInject/alwaysInject lists read). */
export function compileAny(selectors: readonly LabelSelector[]): LabelMatcher {
  if (selectors.length === 0) return () => false
  const matchers = selectors.map(compileSelector)
  return (labels) => matchers.some((m) => m(labels))
}

export function formatSelector(selector: LabelSelector): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) parts.push(`${k}=${v}`)
  for (const r of selector.matchExpressions ?? []) {
    if (r.operator === 'Exists') parts.push(r.key)
    else if (r.operator === 'DoesNotExist') parts.push(`!${r.key}`)
    else parts.push(`${r.key} ${r.operator === 'In' ? 'in' : 'notin'} (${(r.values ?? []).join(',')})`)
  }
  return parts.join(',')
}
