// `enlist policy validate FILE...` and `enlist policy schema`.

import { parseAllDocuments } from 'yaml'
import { errorMessage, OptionError, PolicyError } from '../lib/errors.js'
import { POLICY_KEY } from '../names.js'
import { loadPolicy } from '../policy/load.js'
import { policySchema } from '../policy/schema.js'
import { type FlagSpecs, helpText, parseFlags, readInput } from './flags.js'

const USAGE = `usage: enlist policy validate FILE...   check policy files (or ConfigMap manifests holding ${POLICY_KEY})
       enlist policy schema              print the policy's JSON Schema`


const validateFlags = {
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

/** Exit codes: 0 every file valid, 1 a file is invalid, 2 a file cannot be read (or bad flags). */
export async function policyCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'schema') {
    process.stdout.write(JSON.stringify(policySchema, null, 2) + '\n')
    return 0
  }
  if (sub === 'validate') {
    const o = parseFlags(validateFlags, rest)
    if (o.help) {
      console.log(helpText('policy validate FILE... (- for stdin)', `Check policy files, or ConfigMap manifests holding ${POLICY_KEY}, and print every error with its path. Exit 0: all valid; 1: one is invalid; 2: one cannot be read.`, validateFlags))
      return 0
    }
    if (o._.length === 0) throw new OptionError(`policy validate needs at least one file\n${USAGE}`)
    let code = 0
    for (const file of o._) code = Math.max(code, await validateFile(file))
    return code
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(USAGE)
    return sub === undefined ? 2 : 0
  }
  throw new OptionError(`unknown policy command ${JSON.stringify(sub)}\n${USAGE}`)
}

async function validateFile(file: string): Promise<number> {
  let text: string
  try {
    text = await readInput(file, file)
  } catch (err) {
    console.error(errorMessage(err))
    return 2
  }
  const unwrapped = unwrapConfigMap(text)
  if (unwrapped?.missing) {
    console.error(`${file}: ${unwrapped.missing}`)
    console.error(`${file}: 1 error`)
    return 1
  }
  try {
    const p = loadPolicy(unwrapped?.policy ?? text, file)
    console.log(`${file}: valid (hash ${p.hash})`)
    for (const note of p.notes) console.log(`${file}: note: ${note}`)
    return 0
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    for (const e of err.errors) console.error(`${file}: ${e.path || '/'}: ${e.message}`)
    console.error(`${file}: ${err.errors.length} error${err.errors.length === 1 ? '' : 's'}`)
    return 1
  }
}

/** The policy text inside a ConfigMap manifest, if the file is one; or why a ConfigMap
 *  holds none (rather than checking the ConfigMap itself as a policy). */
function unwrapConfigMap(text: string): { policy?: string; missing?: string } | undefined {
  let docs: Array<{ kind?: unknown; metadata?: { name?: unknown }; data?: Record<string, unknown> } | null>
  try {
    docs = parseAllDocuments(text).flatMap((d) => ('errors' in d && d.errors.length > 0 ? [] : [d.toJS() as { kind?: unknown } | null]))
  } catch {
    return undefined
  }
  const maps = docs.filter((o) => o?.kind === 'ConfigMap')
  if (maps.length === 0) return undefined
  for (const cm of maps) if (typeof cm?.data?.[POLICY_KEY] === 'string') return { policy: cm.data[POLICY_KEY] as string }
  const cm = maps[0]!
  const keys = Object.keys(cm.data ?? {})
  return {
    missing: `/data/${POLICY_KEY}: ConfigMap ${String(cm.metadata?.name ?? '')} has no key ${POLICY_KEY} (${keys.length ? `it has ${keys.join(', ')}` : 'its data is empty'}); enlist reads the policy from data.${POLICY_KEY}`,
  }
}
