// The V8 flags and allocator settings enlist's Deployment runs with, read from the manifest
// itself, so that benchmarks measure enlist as it ships (and follow when the manifest moves).

import { readFileSync } from 'node:fs'
import { parseAllDocuments } from 'yaml'

const MANIFEST = new URL('../manifests/base/deployment.yaml', import.meta.url)

export function deployedEnv(): Record<string, string> {
  for (const doc of parseAllDocuments(readFileSync(MANIFEST, 'utf8'))) {
    const d = doc.toJS() as { spec?: { template?: { spec?: { containers?: Array<{ env?: Array<{ name: string; value?: string }> }> } } } }
    const env = d?.spec?.template?.spec?.containers?.[0]?.env
    if (env) return Object.fromEntries(env.filter((e) => e.value !== undefined && (e.name === 'NODE_OPTIONS' || e.name.startsWith('MALLOC_'))).map((e) => [e.name, e.value!]))
  }
  throw new Error('manifests/base/deployment.yaml: no container env found')
}
