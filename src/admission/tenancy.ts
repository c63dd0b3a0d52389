// What one tenant may claim, and nothing of another's: service names, metadata, and with a
// Dubbo layout the interfaces its namespace owns (policy `tenancy`). Pure: admission checks
// a pod with it, and registration checks a sealed decision again under the policy of the
// moment (policies change, and pods sealed before an upgrade were never checked).

import { createHash } from 'node:crypto'
import { isDns1123Label } from '../lib/validation.js'
import { DUBBO_ADDRESS_KEYS, DUBBO_FIXED_PARAMS, DUBBO_NON_PROVIDER_PROTOCOLS, DUBBO_ROUTING_KEYS } from '../registry/dubbo.js'
import type { CompiledPolicy, PolicySpec } from '../policy/policy.js'

/** Why a pod would be denied, as counted (enlist_admission_staged_denials_total{reason}). */
export type TenancyReason = 'interface-not-owned' | 'dubbo-protocol' | 'metadata-key' | 'metadata-size' | 'service-name'

export interface TenancyFinding {
  reason: TenancyReason
  message: string
  /** false: refused even under tenancy.enforcement: warn (no safe way to admit it). */
  stageable: boolean
}

export interface CompiledTenancy {
  readonly enforcement: 'enforce' | 'warn'
  /** Whether `namespace` may provide Dubbo interface `iface`. */
  readonly owns: (namespace: string, iface: string) => boolean
  /** No tenancy.interfaces at all: a Dubbo layout denies every interface. */
  readonly noOwners: boolean
  readonly protocols: ReadonlySet<string>
  /** Metadata keys that become Dubbo URL parameters. */
  readonly parameters: ReadonlySet<string>
  readonly maxMetadataBytes: number
}

// --- patterns ---------------------------------------------------------------------------

const NAMESPACE_PATTERN = /^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$/
const QUALIFIED = /^[A-Za-z_$][A-Za-z0-9_$./-]*$/

/** Why `p` is not a namespace pattern (`*`, a namespace, or one with `*` globs), or undefined. */
export function namespacePatternError(p: string): string | undefined {
  if (p.length <= 63 && NAMESPACE_PATTERN.test(p)) return undefined
  return `"${p}" is not a namespace pattern; accepted: "*", a namespace name, or one with "*" standing for any characters, e.g. "shop-*"`
}

/** Why `p` is not an interface pattern (`*`, an interface, or `package.*`), or undefined. */
export function interfacePatternError(p: string): string | undefined {
  if (p === '*') return undefined
  const base = p.endsWith('.*') ? p.slice(0, -2) : p
  if (QUALIFIED.test(base) && !base.endsWith('.')) return undefined
  return `"${p}" is not an interface pattern; accepted: "*" (every interface), an interface ("com.acme.Orders") or a package and all below it ("com.acme.orders.*")`
}

function namespaceMatcher(p: string): (ns: string) => boolean {
  if (p === '*') return () => true
  if (!p.includes('*')) return (ns) => ns === p
  const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`)
  return (ns) => re.test(ns)
}

/** How specific an interface pattern is for `iface`: -1 no match, 0 `*`, then the length of
 *  the package prefix, and an exact name above every prefix. */
function specificity(p: string, iface: string): number {
  if (p === '*') return 0
  if (p.endsWith('.*')) {
    const prefix = p.slice(0, -1) // keeps the dot: "com.acme.orders." matches below the package only
    return iface.startsWith(prefix) && iface.length > prefix.length ? prefix.length : -1
  }
  return p === iface ? Number.MAX_SAFE_INTEGER : -1
}

/**
 * Ownership: for an interface, the most specific pattern that matches it decides, and only
 * the namespaces of the rules naming that pattern own it. So
 * `[{namespaces: [shop], interfaces: ["com.acme.orders.*"]}, {namespaces: ["*"], interfaces: ["*"]}]`
 * keeps the orders package for shop and leaves every other interface to everyone.
 */
export function compileTenancy(t: PolicySpec['tenancy']): CompiledTenancy {
  const rules = t.interfaces.map((r) => ({ namespaces: r.namespaces.map(namespaceMatcher), interfaces: r.interfaces }))
  const owns = (namespace: string, iface: string): boolean => {
    let best = -1
    let allowed = false
    for (const r of rules) {
      let s = -1
      for (const p of r.interfaces) s = Math.max(s, specificity(p, iface))
      if (s < 0 || s < best) continue
      const mine = r.namespaces.some((m) => m(namespace))
      allowed = s > best ? mine : allowed || mine
      best = s
    }
    return allowed
  }
  return Object.freeze({
    enforcement: t.enforcement,
    owns,
    noOwners: rules.length === 0,
    protocols: new Set(t.dubbo.protocols),
    parameters: new Set(t.dubbo.parameters),
    maxMetadataBytes: t.metadata.maxBytes,
  })
}

/** Problems of policy.tenancy a schema cannot express, as (path, message). */
export function tenancyPolicyErrors(t: PolicySpec['tenancy'], add: (path: string, message: string) => void): void {
  t.interfaces.forEach((r, i) => {
    r.namespaces.forEach((p, j) => {
      const e = namespacePatternError(p)
      if (e) add(`/tenancy/interfaces/${i}/namespaces/${j}`, e)
    })
    r.interfaces.forEach((p, j) => {
      const e = interfacePatternError(p)
      if (e) add(`/tenancy/interfaces/${i}/interfaces/${j}`, e)
    })
  })
  t.dubbo.protocols.forEach((p, i) => {
    if (!/^[a-z][a-z0-9+.-]*$/.test(p)) add(`/tenancy/dubbo/protocols/${i}`, `"${p}" is not a URL scheme (lowercase letters, digits, "+", "." or "-"), e.g. "tri"`)
    else if (DUBBO_NON_PROVIDER_PROTOCOLS.has(p)) add(`/tenancy/dubbo/protocols/${i}`, `"${p}" makes Dubbo routing rules or configurators, not providers; accepted: provider protocols such as dubbo, tri, rest`)
  })
  t.dubbo.parameters.forEach((k, i) => {
    const at = `/tenancy/dubbo/parameters/${i}`
    if (!METADATA_KEY.test(k)) add(at, `"${k}" is not a metadata key (${METADATA_KEY_FORM})`)
    else if (DUBBO_ROUTING_KEYS.has(k)) add(at, `"${k}" is a key Dubbo reads as routing or configuration: it is never a provider parameter`)
    else if (DUBBO_FIXED_PARAMS.has(k) || (DUBBO_ADDRESS_KEYS as readonly string[]).includes(k)) add(at, `"${k}" is set by enlist itself, not by metadata`)
  })
}

/** What `enlist policy validate` says about a valid policy. */
export function tenancyNotes(p: PolicySpec, dubboBackends: readonly string[]): string[] {
  if (dubboBackends.length === 0 || p.tenancy.interfaces.length > 0) return []
  return [
    `tenancy.interfaces is empty, so the Dubbo layout of backend ${dubboBackends.join(', ')} denies every pod: assign interfaces to namespaces, e.g. ` +
      'tenancy: {interfaces: [{namespaces: [shop], interfaces: ["com.acme.orders.*"]}]}, or {namespaces: ["*"], interfaces: ["*"]} in a single-tenant cluster',
  ]
}

// --- names ------------------------------------------------------------------------------

export const SERVICE_NAME_FORM = 'a DNS-1123 label: lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters'

/** Why `name` cannot be a service name, or undefined. */
export function serviceNameError(name: string): string | undefined {
  return isDns1123Label(name) ? undefined : `not a service name; accepted: ${SERVICE_NAME_FORM}`
}

/**
 * A service name made from a name enlist derived (a workload, an owner reference): lower
 * case, every other character `-`, no `-` at either end, and cut to 63 with a hash of the
 * whole so that two long names stay apart. '' when nothing is left.
 */
export function normaliseServiceName(name: string): string {
  const n = name.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '')
  if (n.length <= 63) return n
  const hash = createHash('sha256').update(n).digest('hex').slice(0, 8)
  return `${n.slice(0, 54).replace(/-+$/, '')}-${hash}`
}

// --- metadata ---------------------------------------------------------------------------

const METADATA_KEY = /^[A-Za-z0-9._-]{1,63}$/
const METADATA_KEY_FORM = 'letters, digits, ".", "_" and "-", at most 63 characters'
// Control characters, line and paragraph separators, bidirectional overrides: what makes a
// value print as something it is not, in logs, URLs and consoles.
const VALUE_FORBIDDEN = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** The size tenancy.metadata.maxBytes limits: the metadata as JSON, in UTF-8 bytes. */
export function metadataBytes(md: Readonly<Record<string, string>>): number {
  return Buffer.byteLength(JSON.stringify(md), 'utf8')
}

/** Problems of metadata whatever the backends: its size and character set. */
export function metadataFindings(md: Readonly<Record<string, string>>, t: CompiledTenancy): TenancyFinding[] {
  const out: TenancyFinding[] = []
  const size = metadataBytes(md)
  if (size > t.maxMetadataBytes) {
    out.push({
      reason: 'metadata-size',
      message: `the metadata is ${size} bytes as JSON, more than the ${t.maxMetadataBytes} the policy allows (tenancy.metadata.maxBytes)`,
      stageable: true,
    })
  }
  for (const [k, v] of Object.entries(md)) {
    if (!METADATA_KEY.test(k)) {
      out.push({ reason: 'metadata-key', message: `metadata key ${JSON.stringify(k.slice(0, 80))} is invalid; accepted: ${METADATA_KEY_FORM}`, stageable: true })
    } else if (VALUE_FORBIDDEN.test(v) || LONE_SURROGATE.test(v)) {
      out.push({ reason: 'metadata-key', message: `the value of metadata key "${k}" has control or bidirectional characters; accepted: printable text`, stageable: true })
    }
  }
  return out
}

/** With a Dubbo layout: the interface must be the namespace's, the protocol on the allowlist,
 *  and no key may be one Dubbo reads as routing or configuration. */
export function dubboFindings(namespace: string, md: Readonly<Record<string, string>>, t: CompiledTenancy): TenancyFinding[] {
  const out: TenancyFinding[] = []
  const routing = Object.keys(md).filter((k) => DUBBO_ROUTING_KEYS.has(k) && !DUBBO_FIXED_PARAMS.has(k))
  if (routing.length > 0) {
    out.push({
      reason: 'metadata-key',
      message: `metadata key${routing.length > 1 ? 's' : ''} ${routing.map((k) => `"${k}"`).join(', ')} ${routing.length > 1 ? 'are' : 'is'} read by Dubbo as routing or configuration, not as a provider's; enlist writes provider URLs only: remove ${routing.length > 1 ? 'them' : 'it'}`,
      stageable: true,
    })
  }
  const protocol = md.protocol ?? 'dubbo'
  if (!t.protocols.has(protocol)) {
    // a scheme the policy does not allow could make the URL a configurator or a route
    out.push({
      reason: 'dubbo-protocol',
      message: `metadata "protocol" ${JSON.stringify(protocol)} is not allowed; accepted (tenancy.dubbo.protocols): ${[...t.protocols].join(', ')}`,
      stageable: false,
    })
  }
  const iface = md.interface
  if (iface !== undefined && iface !== '' && !iface.includes('*') && !t.owns(namespace, iface)) {
    out.push({
      reason: 'interface-not-owned',
      message: t.noOwners
        ? `the Dubbo interface "${iface}" is not assigned to namespace ${namespace}: the policy assigns no interfaces at all (tenancy.interfaces is empty), so a Dubbo layout admits none; the cluster admin assigns them in tenancy.interfaces`
        : `the Dubbo interface "${iface}" is not assigned to namespace ${namespace} (policy field tenancy.interfaces)`,
      stageable: true,
    })
  }
  return out
}

// --- registration -----------------------------------------------------------------------

/** What registration reads back from a sealed decision. */
export interface RegistrationSubject {
  namespace: string
  service: string
  metadata: Readonly<Record<string, string>>
}

/** Every finding about a sealed decision under `policy`, staged ones included. */
export function registrationFindings(decision: RegistrationSubject, policy: CompiledPolicy): TenancyFinding[] {
  const t = policy.tenancy
  const out: TenancyFinding[] = []
  const nameProblem = serviceNameError(decision.service)
  // never staged: backends build subjects, keys and paths from the name
  if (nameProblem) out.push({ reason: 'service-name', message: `service ${JSON.stringify(decision.service.slice(0, 80))} is ${nameProblem}`, stageable: false })
  out.push(...metadataFindings(decision.metadata, t))
  if (policy.dubboBackends.length > 0) out.push(...dubboFindings(decision.namespace, decision.metadata, t))
  return out
}

/**
 * Why a sealed decision may not register under the policy of now, or undefined: the name,
 * the metadata's size and characters, and (with a Dubbo layout) the interface's owner, the
 * protocol and routing keys. Under tenancy.enforcement: warn only what is never staged
 * counts (an invalid service name, a protocol not allowed).
 */
export function registrationProblems(decision: RegistrationSubject, policy: CompiledPolicy): string | undefined {
  const warn = policy.tenancy.enforcement === 'warn'
  const f = registrationFindings(decision, policy).find((x) => !warn || !x.stageable)
  return f?.message
}
