// `enlist render -f FILE`: what enlist would inject, without a cluster (for GitOps CI).

import { parseAllDocuments, stringify } from 'yaml'
import { parseKubeVersion } from '../admission/settings.js'
import { OptionError } from '../lib/errors.js'
import { isQualifiedName, isLabelValue } from '../lib/validation.js'
import { defaultPolicy, loadPolicy } from '../policy/load.js'
import { renderDocuments } from '../render/render.js'
import { type FlagSpecs, helpText, parseFlags, readInput } from './flags.js'

const renderFlags = {
  filename: { kind: 'string', short: 'f', help: 'manifest file (multi-document YAML), or - for stdin' },
  policy: { kind: 'string', help: 'policy file (default: the built-in default policy)' },
  'namespace-labels': { kind: 'list', help: 'labels of the target namespace, k=v,k=v (e.g. enlist.io/inject=enabled)' },
  namespace: { kind: 'string', short: 'n', default: 'default', help: 'namespace for objects that name none' },
  'kube-version': { kind: 'string', help: 'target Kubernetes version, e.g. 1.30 (picks the preStop form)' },
  'ca-bundle': { kind: 'string', help: 'CA bundle file handed to the registrar when the policy has none' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export async function renderCommand(argv: readonly string[]): Promise<number> {
  const o = parseFlags(renderFlags, argv)
  if (o.help) {
    console.log(helpText('render -f FILE [flags]', 'Print the manifest with enlist injected into every pod template.', renderFlags))
    return 0
  }
  if (o._.length > 0) throw new OptionError(`unexpected argument ${JSON.stringify(o._[0])}: name the manifest with -f FILE`)
  if (!o.filename) throw new OptionError('render needs -f FILE (or -f - for stdin)')
  const labels: Record<string, string> = {}
  for (const kv of o['namespace-labels'] ?? []) {
    const eq = kv.indexOf('=')
    // a bare key is a mistake, not a label with an empty value: say so
    if (eq === -1 || !isQualifiedName(kv.slice(0, eq)) || !isLabelValue(kv.slice(eq + 1))) {
      throw new OptionError(`--namespace-labels: ${JSON.stringify(kv)} is invalid; accepted: key=value pairs separated by commas (key= for an empty value)`)
    }
    labels[kv.slice(0, eq)] = kv.slice(eq + 1)
  }

  const policy = o.policy ? loadPolicy(await readInput(o.policy, '--policy'), o.policy) : defaultPolicy()
  const caBundle = o['ca-bundle'] ? await readInput(o['ca-bundle'], '--ca-bundle') : ''
  const text = await readInput(o.filename, '-f')

  const parsed = parseAllDocuments(text)
  const docs: unknown[] = []
  for (const [i, d] of (Array.isArray(parsed) ? parsed : [parsed]).entries()) {
    if ('errors' in d && d.errors.length > 0) throw new OptionError(`${o.filename}: document ${i + 1}: ${d.errors[0]!.message.split('\n')[0]}`)
    docs.push(d.toJS())
  }

  const diags = renderDocuments(docs, {
    policy,
    namespaceLabels: () => labels,
    defaultNamespace: o.namespace,
    facts: { serverVersion: o['kube-version'] ? parseKubeVersion(o['kube-version']) : undefined, caBundle },
  })

  process.stdout.write(docs.filter((d) => d !== null && d !== undefined).map((d) => stringify(d, { lineWidth: 0 })).join('---\n'))
  let denied = 0
  for (const d of diags) {
    if (d.verdict === 'denied') {
      denied++
      console.error(`enlist render: ${d.object}: denied: ${d.message}`)
    } else if (d.verdict === 'skipped') console.error(`enlist render: ${d.object}: not injected (${d.reason})`)
    for (const w of d.warnings) console.error(`enlist render: ${d.object}: warning: ${w.replace(/^enlist: /, '')}`)
  }
  return denied > 0 ? 1 : 0
}
