import { readFileSync } from 'node:fs'
import fjp from 'fast-json-patch'
import { admit } from '../src/admission/review.js'
import { compilePolicy } from '../src/policy/load.js'
import { injectionDigest, checkInjected, openStatus } from '../src/decision/status.js'
import { testKeys } from '../test/helpers/keys.js'
const policy = compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy' })
const keys = testKeys()
const facts = { namespaceLabels: { 'enlist.io/inject': 'enabled' }, serverVersion: { major: 1, minor: 20 }, caBundle: 'x'.repeat(1200), keys }
for (const f of ['small', 'typical', 'large', 'env1500']) {
  const req = JSON.parse(readFileSync(`bench/fixtures/${f}.json`, 'utf8')).request
  const out = admit(req, policy, facts)
  const pod = fjp.applyPatch(structuredClone(req.object), JSON.parse(out.patch!), false, false).newDocument
  const opened = openStatus(pod.metadata.annotations['enlist.io/status'], keys.ring, 'shop')
  if (!opened.ok) throw new Error('no')
  const time = (what: string, fn: () => unknown) => {
    for (let i = 0; i < 5000; i++) fn()
    const N = 20000, r: number[] = []
    for (let k = 0; k < 5; k++) { const t0 = process.hrtime.bigint(); for (let i = 0; i < N; i++) fn(); r.push(Number(process.hrtime.bigint() - t0) / N / 1000) }
    r.sort((a, b) => a - b)
    console.log(`${f} ${what}: ${r[2]!.toFixed(2)} us`)
  }
  time('injectionDigest (check side)', () => injectionDigest(pod, opened.status.injected))
  time('checkInjected', () => checkInjected(pod, opened.status))
  const re = admit({ ...req, object: pod }, policy, facts)
  time(`admit of its own output (${re.reason})`, () => admit({ ...req, object: pod }, policy, facts))
}
