// docs/policy.md documents every field of the schema, and its defaults match.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { defaultPolicy } from '../../src/policy/load.js'
import { policySchema } from '../../src/policy/schema.js'

const doc = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8')

interface Conditional {
  then?: unknown
  else?: Conditional
}

/** The branches of an if/then/else chain (one per registry backend type). */
function branches(c: Conditional | undefined): unknown[] {
  return c?.then ? [c.then, ...branches(c.else)] : []
}

function paths(schema: unknown, prefix = ''): string[] {
  const s = schema as { properties?: Record<string, unknown> }
  const out = new Set<string>()
  for (const [k, v] of Object.entries(s.properties ?? {})) {
    const p = prefix ? `${prefix}.${k}` : k
    const child = v as { properties?: unknown; items?: Conditional }
    if (k === 'resources') out.add(p) // a ResourceRequirements map, documented as one field
    else if (child.properties) for (const x of paths(child, p)) out.add(x)
    else if (child.items?.then) {
      out.add(p)
      for (const b of branches(child.items)) for (const x of paths(b, `${p}[]`)) out.add(x)
    } else out.add(p)
  }
  return [...out]
}

t.test('every policy field is documented', async (t) => {
  const fields = paths(policySchema).filter((p) => p !== 'apiVersion' && p !== 'kind')
  t.ok(fields.length > 30, `${fields.length} fields`)
  for (const f of fields) t.ok(doc.includes(`\`${f}\``), f)
})

t.test('documented scalar defaults are the real ones', async (t) => {
  const spec = defaultPolicy().spec as unknown as Record<string, Record<string, unknown>>
  const rows = [...doc.matchAll(/^\| `([a-zA-Z]+\.[a-zA-Z.]+)` \| `([^`]*)` \|/gm)]
  t.ok(rows.length > 10)
  for (const [, path, value] of rows) {
    const actual = path!.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], spec)
    t.same(parse(value!), actual, `${path} = ${value}`)
  }
})

t.test('docs/policy.schema.json is the schema enlist uses', async (t) => {
  const shipped = JSON.parse(readFileSync(new URL('../../docs/policy.schema.json', import.meta.url), 'utf8')) as unknown
  t.same(shipped, JSON.parse(JSON.stringify(policySchema)), 'regenerate with: node dist/cli/main.js policy schema > docs/policy.schema.json')
})
