// admit() per fixture: HEAD vs working tree
import { readFileSync } from 'node:fs'
const root = process.argv[2]!
const { admit } = await import(`${root}/src/admission/review.ts`)
const { compilePolicy } = await import(`${root}/src/policy/load.ts`)
const { testKeys } = await import(`${root}/test/helpers/keys.ts`)
const policy = compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy' })
const facts = { namespaceLabels: { 'enlist.io/inject': 'enabled' }, serverVersion: { major: 1, minor: 20 }, caBundle: 'x'.repeat(1200), keys: testKeys() }
for (const f of ['small', 'typical', 'large', 'env1500']) {
  const text = readFileSync(`/work/main/bench/fixtures/${f}.json`, 'utf8')
  const req = JSON.parse(text).request
  let out
  for (let i = 0; i < 3000; i++) out = admit(req, policy, facts)
  const N = f === 'large' || f === 'env1500' ? 5000 : 20000
  const best = []
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < N; i++) out = admit(req, policy, facts)
    best.push(Number(process.hrtime.bigint() - t0) / N / 1000)
  }
  best.sort((a, b) => a - b)
  console.log(`${f}: ${out.verdict}/${out.reason} median ${best[2].toFixed(2)} us/admit`)
}
