import { readFileSync } from 'node:fs'
import fjp from 'fast-json-patch'
import { admit } from '../src/admission/review.js'
import { compilePolicy } from '../src/policy/load.js'
import { canonical, injectionDigest, openStatus } from '../src/decision/status.js'
import { createHash } from 'node:crypto'
import { testKeys } from '../test/helpers/keys.js'
const policy = compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy' })
const keys = testKeys()
const facts = { namespaceLabels: { 'enlist.io/inject': 'enabled' }, serverVersion: { major: 1, minor: 20 }, caBundle: 'x'.repeat(1200), keys }
const req = JSON.parse(readFileSync(`bench/fixtures/typical.json`, 'utf8')).request
const out = admit(req, policy, facts)
const pod = fjp.applyPatch(structuredClone(req.object), JSON.parse(out.patch!), false, false).newDocument
const opened = openStatus(pod.metadata.annotations['enlist.io/status'], keys.ring, 'shop')
if (!opened.ok) throw new Error()
console.log(JSON.stringify(opened.status.injected), pod.spec.containers.length)
const reg = pod.spec.initContainers.find((c: {name: string}) => c.name === 'enlist-registrar')
const time = (what: string, fn: () => unknown) => {
  for (let i = 0; i < 5000; i++) fn()
  const N = 20000, r: number[] = []
  for (let k = 0; k < 5; k++) { const t0 = process.hrtime.bigint(); for (let i = 0; i < N; i++) fn(); r.push(Number(process.hrtime.bigint() - t0) / N / 1000) }
  r.sort((a, b) => a - b); console.log(`${what}: ${r[2]!.toFixed(2)} us`)
}
const c = canonical(reg)!
console.log('canonical registrar length', c.length)
time('canonical(registrar)', () => canonical(reg))
time('JSON.stringify(registrar)', () => JSON.stringify(reg))
time('sha256 of it', () => createHash('sha256').update(c).digest('base64url'))
time('digest', () => injectionDigest(pod, opened.status.injected))
const inj = opened.status.injected
time('registrar only', () => injectionDigest(pod, { ...inj, env: {}, preStop: [], readinessGates: [], volumes: [] }))
time('env only', () => injectionDigest(pod, { ...inj, initContainers: [], preStop: [], readinessGates: [], volumes: [] }))
time('nothing', () => injectionDigest(pod, { initContainers: [], env: {}, preStop: [], readinessGates: [], volumes: [], labels: [] }))
