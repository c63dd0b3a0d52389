// Declarative flags: every flag may also come from an environment variable, is parsed
// and validated before anything starts, and names itself and the accepted form on error.

import { accessSync, constants } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { OptionError } from '../lib/errors.js'
import { parseBytes, parseDuration } from '../lib/units.js'

type Kind = 'string' | 'int' | 'bool' | 'duration' | 'bytes' | 'list'

export interface FlagSpec {
  kind: Kind
  env?: string
  default?: string
  help: string
  short?: string
  min?: number
  max?: number
}

export type FlagSpecs = Record<string, FlagSpec>

type ValueOf<K extends Kind> = K extends 'int' | 'duration' | 'bytes' ? number : K extends 'bool' ? boolean : K extends 'list' ? string[] : string

export type Parsed<S extends FlagSpecs> = {
  [K in keyof S]: S[K] extends { default: string } ? ValueOf<S[K]['kind']> : ValueOf<S[K]['kind']> | undefined
} & { _: string[] }

export function parseFlags<S extends FlagSpecs>(specs: S, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed<S> {
  const raw = new Map<string, string>()
  const positional: string[] = []
  const byShort = new Map(Object.entries(specs).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]))
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (!a.startsWith('-') || a === '-') {
      positional.push(a)
      continue
    }
    let name: string
    let value: string | undefined
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      name = eq === -1 ? a.slice(2) : a.slice(2, eq)
      value = eq === -1 ? undefined : a.slice(eq + 1)
    } else {
      const n = byShort.get(a.slice(1))
      if (!n) throw new OptionError(`unknown flag ${a}; see --help`)
      name = n
    }
    const spec = specs[name]
    if (!spec) throw new OptionError(`unknown flag --${name}; see --help`)
    if (value === undefined) {
      // `--leader-elect false` means what it says, not --leader-elect and an argument "false"
      if (spec.kind === 'bool') value = argv[i + 1] === 'true' || argv[i + 1] === 'false' ? argv[++i]! : 'true'
      else {
        value = argv[++i]
        if (value === undefined) throw new OptionError(`flag --${name} needs a value: ${spec.help}`)
      }
    }
    raw.set(name, value)
  }

  const out: Record<string, unknown> = { _: positional }
  for (const [name, spec] of Object.entries(specs)) {
    let source = `--${name}`
    let v = raw.get(name)
    if (v === undefined && spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      v = env[spec.env]
      source = `${spec.env} (environment)`
    }
    v ??= spec.default
    if (v === undefined) {
      out[name] = undefined
      continue
    }
    out[name] = convert(spec, v, source)
  }
  return out as Parsed<S>
}

function convert(spec: FlagSpec, v: string, source: string): unknown {
  const bad = (form: string): never => {
    throw new OptionError(`${source}: ${JSON.stringify(v)} is invalid; accepted: ${form}`)
  }
  const range = (n: number, form: string): number => {
    if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
      bad(`${form} from ${spec.min ?? '-inf'} to ${spec.max ?? 'inf'}`)
    }
    return n
  }
  switch (spec.kind) {
    case 'string':
      return v
    case 'list':
      return v === '' ? [] : v.split(',').map((s) => s.trim())
    case 'bool':
      if (v === 'true' || v === '1') return true
      if (v === 'false' || v === '0') return false
      return bad('true or false')
    case 'int': {
      if (!/^-?\d+$/.test(v)) bad('an integer')
      return range(Number(v), 'an integer')
    }
    case 'duration': {
      const ms = parseDuration(v)
      if (ms === undefined) bad('a duration such as 500ms, 30s, 2m, 1h')
      return range(ms!, 'a duration in milliseconds')
    }
    case 'bytes': {
      const n = parseBytes(v)
      if (n === undefined) bad('a size in bytes, optionally with K, M, G, Ki, Mi or Gi')
      return range(n!, 'a size in bytes')
    }
  }
}

export function helpText(command: string, summary: string, specs: FlagSpecs): string {
  const lines = [`usage: enlist ${command}`, '', summary, '', 'flags:']
  for (const [name, s] of Object.entries(specs)) {
    const flag = `  ${s.short ? `-${s.short}, ` : ''}--${name}${s.kind === 'bool' ? '' : ' ' + s.kind.toUpperCase()}`
    const extra = [s.default !== undefined ? `default ${JSON.stringify(s.default)}` : '', s.env ? `env ${s.env}` : ''].filter(Boolean).join('; ')
    lines.push(`${flag.padEnd(34)} ${s.help}${extra ? ` (${extra})` : ''}`)
  }
  return lines.join('\n')
}

function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory, not a file'
  return (err as Error).message
}

/** A file named on the command line (`-`: stdin). One that cannot be read is a usage
 *  error (exit 2), whichever command and flag named it. */
export async function readInput(file: string, what: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = []
    for await (const c of process.stdin) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new OptionError(`${what}: cannot read ${file}: ${fileProblem(err)}`)
  }
}

/** Fails fast (exit 2) when a file a flag names cannot be read now. */
export function requireReadable(file: string, what: string): void {
  try {
    accessSync(file, constants.R_OK)
  } catch (err) {
    throw new OptionError(`${what}: cannot read ${file}: ${fileProblem(err)}`)
  }
}
