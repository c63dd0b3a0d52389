// `enlist policy validate FILE...` and `enlist policy schema`.

import { readFile } from 'node:fs/promises'
import { parseAllDocuments } from 'yaml'
import { errorMessage, OptionError, PolicyError } from '../lib/errors.js'
import { POLICY_KEY } from '../names.js'
import { loadPolicy } from '../policy/load.js'
import { policySchema } from '../policy/schema.js'

const USAGE = `usage: enlist policy validate FILE...   check policy files (or ConfigMap manifests holding ${POLICY_KEY})
       enlist policy schema              print the policy's JSON Schema`

export async function policyCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'schema') {
    process.stdout.write(JSON.stringify(policySchema, null, 2) + '\n')
    return 0
  }
  if (sub === 'validate') {
    if (rest.length === 0) throw new OptionError(`policy validate needs at least one file\n${USAGE}`)
    let failed = 0
    for (const file of rest) failed += (await validateFile(file)) ? 0 : 1
    return failed === 0 ? 0 : 1
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(USAGE)
    return sub === undefined ? 2 : 0
  }
  throw new OptionError(`unknown policy command ${JSON.stringify(sub)}\n${USAGE}`)
}

async function validateFile(file: string): Promise<boolean> {
  let text: string
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8')
  } catch (err) {
    console.error(`${file}: cannot read: ${errorMessage(err)}`)
    return false
  }
  const policyText = unwrapConfigMap(text) ?? text
  try {
    const p = loadPolicy(policyText, file)
    console.log(`${file}: valid (hash ${p.hash})`)
    return true
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    for (const e of err.errors) console.error(`${file}: ${e.path || '/'}: ${e.message}`)
    console.error(`${file}: ${err.errors.length} error${err.errors.length === 1 ? '' : 's'}`)
    return false
  }
}

/** The policy text inside a ConfigMap manifest, if the file is one. */
function unwrapConfigMap(text: string): string | undefined {
  try {
    for (const doc of parseAllDocuments(text)) {
      if ('errors' in doc && doc.errors.length > 0) return undefined
      const o = doc.toJS() as { kind?: string; data?: Record<string, string> } | null
      if (o?.kind === 'ConfigMap' && typeof o.data?.[POLICY_KEY] === 'string') return o.data[POLICY_KEY]
    }
  } catch {
    return undefined
  }
  return undefined
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
