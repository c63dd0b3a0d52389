// The validator generated at build time and the one ajv compiles from sources must agree,
// on defaults and on every error.
import t from 'tap'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { AJV_OPTIONS } from '../../src/policy/ajv-options.js'
import { policySchema } from '../../src/policy/schema.js'

const generatedPath = new URL('../../dist/policy/policy-validator.generated.cjs', import.meta.url).pathname
type Validator = ((d: unknown) => boolean) & { errors?: unknown[] | null }

// No skip when dist/ is missing: scripts/test.sh builds before any test runs, so a missing
// validator is a broken build, and a skip would pass a run that checked nothing.
t.test('generated and runtime validators agree', async (t) => {
  t.ok(existsSync(generatedPath), `${generatedPath} is built`)
  const generated = createRequire(import.meta.url)(generatedPath) as Validator
  const runtime = new Ajv(AJV_OPTIONS).compile(policySchema) as Validator
  const H = 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'
  const docs = [
    H,
    H + 'injection: {default: enabled, neverInjectSelector: [{matchLabels: {a: b}}]}\n',
    H + 'registrar: {position: middle, timeoutSeconds: 0, image: ""}\nextra: 1\n',
    H + 'registry: {backends: [{type: http, name: c}, {type: consul, name: d}, {type: kubernetes, name: k, url: x}]}\n',
    H + 'downwardAPI: {variables: [POD_NAME, POD_NAME, HOSTNAME]}\n',
    H + 'preStop: {mode: http, drainSeconds: 1.5, exec: {command: [1]}}\n',
    H + 'tenantOverrides: {allowed: [image]}\nreadinessGate: {enabled: "yes"}\n',
    'kind: Config\n',
  ]
  for (const text of docs) {
    const [a, b] = [parse(text) as unknown, parse(text) as unknown]
    const ok = [generated(a), runtime(b)]
    t.equal(ok[0], ok[1], `same verdict: ${JSON.stringify(text)}`)
    t.same(generated.errors ?? null, runtime.errors ?? null, 'same errors')
    t.same(a, b, 'same defaults filled in')
  }
})
