// The dependency format: what a tenant writes in enlist.io/depends-on, what admission seals
// into enlist.io/status (decision.dependsOn, fully qualified), and what registration reads
// back from there. One parser and one printer, so the two sides cannot drift apart.

import { isDns1035Label, isDns1123Label, isPortName } from '../lib/validation.js'
import { DEPENDS_ON_ANNOTATION } from '../names.js'
import { AnnotationError, fail, ok, quote, type Result } from './annotation-error.js'

export interface Dependency {
  namespace: string
  service: string
  /** Service port number or name; absent: any ready endpoint will do. */
  port?: number | string
}

const DEPENDS_ON_FORM = '"[namespace/]service[:port]" separated by commas, e.g. "mysql:3306, payments/ledger"'

/** Parses enlist.io/depends-on; an entry without a namespace is in `podNamespace`. */
export function parseDependsOn(value: string, podNamespace: string): Result<Dependency[]> {
  const out: Dependency[] = []
  const seen = new Set<string>()
  const entries = value.split(',')
  for (let i = 0; i < entries.length; i++) {
    const raw = entries[i]!.trim()
    const where = `entry ${i + 1}`
    const bad = (problem: string): Result<Dependency[]> =>
      fail(new AnnotationError(DEPENDS_ON_ANNOTATION, value, `${where} ${quote(raw)}: ${problem}`, DEPENDS_ON_FORM))
    if (raw === '') {
      if (entries.length === 1) return bad('no dependency given')
      return bad('empty entry')
    }
    let rest = raw
    let namespace = podNamespace
    const slash = rest.indexOf('/')
    if (slash !== -1) {
      namespace = rest.slice(0, slash)
      rest = rest.slice(slash + 1)
      if (!isDns1123Label(namespace)) return bad(`namespace "${namespace}" is not a valid namespace name`)
    }
    let port: number | string | undefined
    const colon = rest.indexOf(':')
    if (colon !== -1) {
      const p = rest.slice(colon + 1)
      rest = rest.slice(0, colon)
      if (/^[0-9]+$/.test(p)) {
        const n = Number(p)
        if (n < 1 || n > 65535) return bad(`port ${p} is out of range 1-65535`)
        port = n
      } else if (isPortName(p)) {
        port = p
      } else {
        return bad(`port "${p}" is neither a number 1-65535 nor a port name`)
      }
    }
    if (!isDns1035Label(rest)) return bad(`service "${rest}" is not a valid Service name`)
    const key = `${namespace}/${rest}:${port ?? ''}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push(port === undefined ? { namespace, service: rest } : { namespace, service: rest, port })
  }
  return ok(out)
}

/** One dependency as written; fully qualified unless it is in `podNamespace`. */
export function formatDependency(d: Dependency, podNamespace?: string): string {
  const ns = d.namespace === podNamespace ? '' : `${d.namespace}/`
  return `${ns}${d.service}${d.port === undefined ? '' : `:${d.port}`}`
}

/** Reads back the dependencies a sealed decision lists (written by admission with
 *  formatDependency, fully qualified). */
export function parseDecidedDependencies(dependsOn: readonly string[]): Dependency[] {
  const value = dependsOn.join(',')
  if (value.trim() === '') return []
  const r = parseDependsOn(value, '')
  return r.ok ? r.value : []
}
