// Text -> validated, defaulted, compiled policy. Pure: the watchers in source.ts feed it.

import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import type { ErrorObject } from 'ajv'
import { parseDocument } from 'yaml'
import { canonicalJson } from '../lib/canonical-json.js'
import { type FieldError, PolicyError } from '../lib/errors.js'
import { compileAny, type LabelSelector } from '../lib/selector.js'
import { isDns1123Label, isLabelValue, isQualifiedName } from '../lib/validation.js'
import {
  BUILTIN_EXCLUDED_NAMESPACES,
  type CompiledPolicy,
  type ContainerFilter,
  type PolicySpec,
} from './policy.js'
import { backendErrors, SHARED_BACKEND_TYPES, usesDubboLayout } from './backends/index.js'
import { pemError, urlError } from './backends/checks.js'
import { policySchema } from './schema.js'
import { compileTenancy, tenancyNotes, tenancyPolicyErrors } from '../admission/tenancy.js'

interface Validator {
  (data: unknown): boolean
  errors?: ErrorObject[] | null
}

// The build compiles the schema into standalone code (scripts/compile-policy-validator.mjs);
// running from sources, ajv compiles it here, with the same options.
const validateSchema: Validator = await (async () => {
  try {
    return createRequire(import.meta.url)('./policy-validator.generated.cjs') as Validator
  } catch {
    const [{ Ajv }, { AJV_OPTIONS }] = await Promise.all([import('ajv'), import('./ajv-options.js')])
    return new Ajv(AJV_OPTIONS).compile(policySchema) as Validator
  }
})()

// The distribution reference grammar (github.com/distribution/reference), lowercase name
// components, an optional tag and an optional sha256 digest (pinning the registrar).
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const IMAGE_REFERENCE = new RegExp(
  `^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?` +
    `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`,
)

/** The registrar image when neither the policy nor enlist's own image (--image) names one. */
export const DEFAULT_REGISTRAR_IMAGE = 'enlist:0.1.0'

/** What the policy falls back to where it is silent, from enlist's own settings. */
export interface PolicyDefaults {
  /** enlist's own image (serve --image, ENLIST_IMAGE): the registrar's when the policy names none. */
  image?: string
}

/** Why `value` is not an image reference, or undefined when it is one. */
export function imageReferenceError(value: string): string | undefined {
  if (IMAGE_REFERENCE.test(value)) return undefined
  return `${JSON.stringify(value)} is not an image reference; accepted: [registry[:port]/]name[:tag][@sha256:<64 hex>], e.g. registry.example.com/enlist@sha256:...`
}

const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$/

/** Parses and validates policy YAML; throws PolicyError listing every problem. */
export function loadPolicy(text: string, source = 'policy.yaml', defaults: PolicyDefaults = {}): CompiledPolicy {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new PolicyError(
      source,
      doc.errors.map((e) => ({ path: yamlPosition(e.linePos?.[0]), message: `YAML: ${firstLine(e.message)}` })),
    )
  }
  return compilePolicy(doc.toJS({ maxAliasCount: 100 }) as unknown, source, defaults)
}

/** Validates an already-parsed document (mutated: defaults are filled in). */
export function compilePolicy(input: unknown, source = 'policy', defaults: PolicyDefaults = {}): CompiledPolicy {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new PolicyError(source, [{ path: '', message: 'must be a mapping with apiVersion: enlist.io/v1alpha1 and kind: Policy' }])
  }
  if (!validateSchema(input)) {
    // Every error at once: the semantic checks of every section the schema found sound
    // (typed and defaulted) are reported beside the schema's errors, not after they are fixed.
    const schemaErrors = validateSchema.errors ?? []
    const broken = schemaErrors.map((e) => e.instancePath).filter((p) => p !== '')
    const sound = (prefix: string): boolean => !broken.some((b) => b === prefix || b.startsWith(`${prefix}/`) || prefix.startsWith(`${b}/`))
    throw new PolicyError(source, [...formatSchemaErrors(schemaErrors, input), ...semanticErrors(input as unknown as PolicySpec, sound)])
  }
  const spec = input as unknown as PolicySpec
  spec.registrar.image ??= defaults.image ?? DEFAULT_REGISTRAR_IMAGE
  const problems = semanticErrors(spec)
  if (problems.length > 0) throw new PolicyError(source, problems)

  const dubboBackends = spec.registry.backends.filter(usesDubboLayout).map((b) => b.name)
  return Object.freeze({
    spec,
    hash: createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 16),
    excludedNamespaces: new Set([...BUILTIN_EXCLUDED_NAMESPACES, ...spec.injection.excludedNamespaces]),
    neverInject: compileAny(spec.injection.neverInjectSelector),
    alwaysInject: compileAny(spec.injection.alwaysInjectSelector),
    envContainers: containerFilter(spec.downwardAPI.containers),
    preStopContainers: containerFilter(spec.preStop.containers),
    overrides: new Set(spec.tenantOverrides.allowed),
    dubboBackends,
    tenancy: compileTenancy(spec.tenancy),
    notes: tenancyNotes(spec, dubboBackends),
  })
}

/** The built-in default: what a cluster gets when the admin has written only the header. */
export function defaultPolicy(defaults: PolicyDefaults = {}): CompiledPolicy {
  return compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy' }, 'built-in default', defaults)
}

export function containerFilter(names: readonly string[]): ContainerFilter {
  if (names.includes('*')) return () => true
  if (names.length === 0) return () => false
  const set = new Set(names)
  return (name) => set.has(name)
}

function yamlPosition(pos: { line: number; col: number } | undefined): string {
  return pos ? `line ${pos.line}, column ${pos.col}` : ''
}

// yaml's pretty messages end with " at line L, column C:" and a code excerpt.
function firstLine(s: string): string {
  const i = s.indexOf('\n')
  return (i === -1 ? s : s.slice(0, i)).replace(/ at line \d+, column \d+:?$/, '')
}

function showValue(v: unknown): string {
  const s = JSON.stringify(v)
  if (s === undefined) return String(v)
  return s.length > 60 ? s.slice(0, 57) + '...' : s
}

function valueAt(root: unknown, path: string): unknown {
  let cur = root
  for (const raw of path.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[key]
  }
  return cur
}

function formatSchemaErrors(errors: readonly ErrorObject[], root: unknown): FieldError[] {
  const out: FieldError[] = []
  const seen = new Set<string>()
  for (const e of errors) {
    // "must match then schema" only repeats the errors already reported inside it
    if (e.keyword === 'if') continue
    let path = e.instancePath
    let message: string
    const got = valueAt(root, e.instancePath)
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String((e.params as { additionalProperty: string }).additionalProperty)
        path = `${path}/${prop}`
        message = `unknown field "${prop}"`
        break
      }
      case 'required':
        path = `${path}/${String((e.params as { missingProperty: string }).missingProperty)}`
        message = 'is required'
        break
      case 'enum':
        message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map(showValue).join(', ')}; got ${showValue(got)}`
        break
      case 'const':
        message = `must be ${showValue((e.params as { allowedValue: unknown }).allowedValue)}; got ${showValue(got)}`
        break
      case 'type':
        message = `${e.message ?? 'has the wrong type'}; got ${showValue(got)}`
        break
      default:
        message = `${e.message ?? 'is invalid'}; got ${showValue(got)}`
    }
    const key = `${path}\u0000${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ path, message })
  }
  return out
}

/** Checks a schema cannot express, for the sections `sound` accepts (all, once the schema passed). */
function semanticErrors(p: PolicySpec, sound: (prefix: string) => boolean = () => true): FieldError[] {
  const errs: FieldError[] = []
  const add = (path: string, message: string): void => {
    errs.push({ path, message })
  }

  if (sound('/injection')) {
    p.injection.excludedNamespaces.forEach((ns, i) => {
      if (!isDns1123Label(ns)) add(`/injection/excludedNamespaces/${i}`, `"${ns}" is not a valid namespace name (DNS-1123 label)`)
    })
    selectorErrors(p.injection.neverInjectSelector, '/injection/neverInjectSelector', add)
    selectorErrors(p.injection.alwaysInjectSelector, '/injection/alwaysInjectSelector', add)
  }

  if (sound('/registrar')) {
    const r = p.registrar
    const imageError = r.image === undefined ? undefined : imageReferenceError(r.image)
    if (imageError) add('/registrar/image', imageError)
    urlError(r.registrationURL, ['https:'], '/registrar/registrationURL', add)
    pemError(r.caBundle, '/registrar/caBundle', add)
    for (const kind of ['requests', 'limits'] as const) {
      for (const [name, q] of Object.entries(r.resources[kind] ?? {})) {
        if (!QUANTITY.test(String(q))) add(`/registrar/resources/${kind}/${name}`, `"${String(q)}" is not a Kubernetes quantity (e.g. 100m, 64Mi)`)
      }
    }
  }

  if (sound('/downwardAPI')) containerNameErrors(p.downwardAPI.containers, '/downwardAPI/containers', add)
  if (sound('/preStop')) {
    containerNameErrors(p.preStop.containers, '/preStop/containers', add)
    p.preStop.exec.command.forEach((c, i) => {
      if (c.length === 0) add(`/preStop/exec/command/${i}`, 'must not be empty')
    })
  }

  if (sound('/discovery')) {
    const d = p.discovery
    if (!isQualifiedName(d.label.key)) add('/discovery/label/key', `"${d.label.key}" is not a valid label key ([prefix/]name)`)
    if (!isLabelValue(d.label.value)) add('/discovery/label/value', `"${d.label.value}" is not a valid label value`)
    if (!isQualifiedName(d.annotation)) add('/discovery/annotation', `"${d.annotation}" is not a valid annotation key ([prefix/]name)`)
  }

  if (sound('/tenancy')) tenancyPolicyErrors(p.tenancy, add)

  const backends = Array.isArray(p.registry?.backends) ? p.registry.backends : []
  if (sound('/cluster')) {
    const name = p.cluster.name
    const shared = backends.find((b) => b !== null && typeof b === 'object' && SHARED_BACKEND_TYPES.has(b.type))
    if (name !== '' && !isDns1123Label(name)) {
      add('/cluster/name', `"${name}" is not a DNS-1123 label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit), e.g. "prod-eu-1"`)
    } else if (name === '' && shared) {
      add(
        '/cluster/name',
        `is required with a backend several clusters may share (backend "${shared.name}" of type ${shared.type}): every entry this cluster writes carries its name, ` +
          'so that no cluster touches another\'s entries; e.g. cluster: {name: prod-eu-1} (docs/registration.md, "Several clusters, one registry")',
      )
    }
  }
  const names = new Set<string>()
  const kubernetesLayouts = new Set<string>()
  backends.forEach((b, i) => {
    const at = `/registry/backends/${i}`
    if (!sound(at)) return
    if (!isDns1123Label(b.name)) add(`${at}/name`, `"${b.name}" must be a DNS-1123 label (lowercase letters, digits, '-')`)
    if (names.has(b.name)) add(`${at}/name`, `duplicate backend name "${b.name}"`)
    names.add(b.name)
    // Two kubernetes backends of one layout would write the same pod annotation.
    if (b.type === 'kubernetes' && kubernetesLayouts.has(b.layout)) add(`${at}/type`, `at most one backend of type kubernetes with layout ${b.layout}`)
    if (b.type === 'kubernetes') kubernetesLayouts.add(b.layout)
    if (usesDubboLayout(b) && sound('/tenantOverrides') && !p.tenantOverrides.allowed.includes('metadata')) {
      add(`${at}/layout`, 'layout dubbo needs each pod\'s Dubbo interface from enlist.io/metadata: add metadata to tenantOverrides.allowed')
    }
    backendErrors(b, at, add)
  })
  return errs
}

function selectorErrors(list: LabelSelector[], at: string, add: (p: string, m: string) => void): void {
  list.forEach((sel, i) => {
    for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
      if (!isQualifiedName(k)) add(`${at}/${i}/matchLabels`, `"${k}" is not a valid label key`)
      if (!isLabelValue(v)) add(`${at}/${i}/matchLabels`, `"${v}" is not a valid label value`)
    }
    ;(sel.matchExpressions ?? []).forEach((req, j) => {
      const p = `${at}/${i}/matchExpressions/${j}`
      if (!isQualifiedName(req.key)) add(`${p}/key`, `"${req.key}" is not a valid label key`)
      const n = req.values?.length ?? 0
      if ((req.operator === 'In' || req.operator === 'NotIn') && n === 0) add(`${p}/values`, `operator ${req.operator} needs at least one value`)
      if ((req.operator === 'Exists' || req.operator === 'DoesNotExist') && n > 0) add(`${p}/values`, `operator ${req.operator} takes no values`)
    })
  })
}

function containerNameErrors(list: string[], at: string, add: (p: string, m: string) => void): void {
  list.forEach((c, i) => {
    if (c !== '*' && !isDns1123Label(c)) add(`${at}/${i}`, `"${c}" is neither "*" nor a container name`)
  })
}
