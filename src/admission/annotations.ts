// Parsers for what users write in labels and annotations. Each failure names the
// annotation, the value and the accepted form, because that text reaches kubectl.
// enlist.io/depends-on is parsed in src/contract/dependencies.ts: registration reads its
// sealed form back.

import { AnnotationError, fail, ok, type Result } from '../contract/annotation-error.js'
import { isDns1123Label } from '../lib/validation.js'
import { SERVICE_NAME_FORM } from './tenancy.js'
import { ADVERTISE_MODES, type AdvertiseMode } from '../policy/backends/advertise.js'
import {
  ADVERTISE_ANNOTATION,
  DRAIN_SECONDS_ANNOTATION,
  ENV_CONTAINERS_ANNOTATION,
  INJECT_KEY,
  METADATA_ANNOTATION,
  PRESTOP_ANNOTATION,
  READINESS_GATE_ANNOTATION,
  RECORD_FIELDS,
  REGISTRAR_TIMEOUT_ANNOTATION,
  SERVICE_ANNOTATION,
} from '../names.js'
import type { PreStopMode } from '../policy/policy.js'

// --- opt-in ---------------------------------------------------------------

export type PodOptIn = 'true' | 'false' | undefined

/** Reads `enlist.io/inject` from the pod's labels and annotations. "false" on either wins. */
export function parsePodOptIn(
  labels: Readonly<Record<string, string>> | undefined,
  annotations: Readonly<Record<string, string>> | undefined,
): Result<PodOptIn> {
  const l = labels?.[INJECT_KEY]
  const a = annotations?.[INJECT_KEY]
  for (const [v, where] of [[l, 'label'], [a, 'annotation']] as const) {
    if (v !== undefined && v !== 'true' && v !== 'false') {
      return fail(new AnnotationError(INJECT_KEY, v, 'not a recognised opt-in value', '"true" or "false"', where))
    }
  }
  if (l === 'false' || a === 'false') return ok('false')
  if (l === 'true' || a === 'true') return ok('true')
  return ok(undefined)
}

export type NamespaceOptIn = 'enabled' | 'disabled' | 'invalid' | undefined

export function parseNamespaceOptIn(labels: Readonly<Record<string, string>> | undefined): NamespaceOptIn {
  const v = labels?.[INJECT_KEY]
  if (v === undefined) return undefined
  return v === 'enabled' || v === 'disabled' ? v : 'invalid'
}

// --- metadata -------------------------------------------------------------

const METADATA_FORM = 'a JSON object of strings, e.g. {"interface":"com.acme.Orders","group":"g1"}'
const RESERVED = new Set<string>(RECORD_FIELDS)

export function parseMetadata(value: string): Result<Record<string, string>> {
  const bad = (problem: string): Result<Record<string, string>> =>
    fail(new AnnotationError(METADATA_ANNOTATION, value, problem, METADATA_FORM))
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (err) {
    return bad(`not JSON (${(err as Error).message})`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return bad(`a JSON ${parsed === null ? 'null' : Array.isArray(parsed) ? 'array' : typeof parsed}, not an object`)
  }
  // A fresh null-prototype object: "__proto__" in user JSON must stay a plain key.
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (k === '') return bad('an empty key')
    if (RESERVED.has(k)) return bad(`key "${k}" is a field of the registry record itself`)
    if (typeof v !== 'string') return bad(`the value of "${k}" is a ${v === null ? 'null' : typeof v}, not a string`)
    out[k] = v
  }
  return ok(out)
}

// --- logical service name ---------------------------------------------------

// A DNS-1123 label, so that every backend's subjects, routing keys, keys and paths are built
// from it unescaped and no two names share one (tenancy.ts).
/** A name given explicitly: in enlist.io/service, or in a label enlist reads (`where`). */
export function parseServiceName(value: string, key: string = SERVICE_ANNOTATION, where: 'annotation' | 'label' = 'annotation'): Result<string> {
  if (isDns1123Label(value)) return ok(value)
  return fail(new AnnotationError(key, value, 'not a service name', SERVICE_NAME_FORM, where))
}

// --- tenant overrides -------------------------------------------------------

export function parseDrainSeconds(value: string): Result<number> {
  if (/^[0-9]+$/.test(value)) {
    const n = Number(value)
    if (n >= 1 && n <= 3600) return ok(n)
  }
  return fail(new AnnotationError(DRAIN_SECONDS_ANNOTATION, value, 'not a whole number of seconds in range', 'an integer from 1 to 3600'))
}

export function parsePreStopMode(value: string): Result<PreStopMode> {
  if (value === 'auto' || value === 'sleep' || value === 'exec' || value === 'none') return ok(value)
  return fail(new AnnotationError(PRESTOP_ANNOTATION, value, 'not a preStop mode', '"auto", "sleep", "exec" or "none"'))
}

export function parseReadinessGate(value: string): Result<boolean> {
  if (value === 'true') return ok(true)
  if (value === 'false') return ok(false)
  return fail(new AnnotationError(READINESS_GATE_ANNOTATION, value, 'not a boolean', '"true" or "false"'))
}

const DURATION_PART = /([0-9]+)(h|m|s)/g

/** Seconds as an integer ("300") or a duration of h/m/s parts ("5m", "1h30m", "90s"). */
export function parseRegistrarTimeout(value: string): Result<number> {
  let seconds: number | undefined
  if (/^[0-9]+$/.test(value)) seconds = Number(value)
  else if (/^([0-9]+[hms])+$/.test(value)) {
    seconds = 0
    for (const m of value.matchAll(DURATION_PART)) {
      seconds += Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1)
    }
  }
  if (seconds !== undefined && seconds >= 1 && seconds <= 86400) return ok(seconds)
  return fail(
    new AnnotationError(REGISTRAR_TIMEOUT_ANNOTATION, value, 'not a timeout between 1s and 24h', 'seconds ("300") or a duration ("5m", "1h30m")'),
  )
}

export function parseContainerList(value: string): Result<string[]> {
  const v = value.trim()
  if (v === '*') return ok(['*'])
  const names = v.split(',').map((s) => s.trim())
  for (const n of names) {
    if (!isDns1123Label(n)) {
      return fail(new AnnotationError(ENV_CONTAINERS_ANNOTATION, value, `"${n}" is not a container name`, '"*" or container names separated by commas'))
    }
  }
  return ok(names)
}

// --- advertised address -------------------------------------------------------

const ADVERTISE_FORM = `a mode for every backend (${ADVERTISE_MODES.map((m) => `"${m}"`).join(', ')}), or backend=mode pairs separated by commas, e.g. "zookeeper=nodePort"`

/** `nodePort` (every backend) or `zk=nodePort, etcd=hostIP`: modes by backend name, `*` for all. */
export function parseAdvertise(value: string, backends: readonly string[]): Result<Record<string, AdvertiseMode>> {
  const bad = (problem: string): Result<Record<string, AdvertiseMode>> => fail(new AnnotationError(ADVERTISE_ANNOTATION, value, problem, ADVERTISE_FORM))
  const isMode = (m: string): m is AdvertiseMode => (ADVERTISE_MODES as readonly string[]).includes(m)
  const v = value.trim()
  if (isMode(v)) return ok(Object.fromEntries(backends.map((b) => [b, v])))
  const out: Record<string, AdvertiseMode> = {}
  for (const raw of v.split(',')) {
    const entry = raw.trim()
    const eq = entry.indexOf('=')
    if (eq === -1) return bad(`"${entry}" is neither a mode nor backend=mode`)
    const name = entry.slice(0, eq).trim()
    const mode = entry.slice(eq + 1).trim()
    if (!isMode(mode)) return bad(`"${mode}" is not a mode`)
    if (!backends.includes(name)) return bad(`"${name}" is not a registry backend of this cluster (${backends.join(', ')})`)
    out[name] = mode
  }
  return ok(out)
}
