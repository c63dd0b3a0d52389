import { readFileSync } from 'node:fs'
import { admit } from '../src/admission/review.js'
import { compilePolicy } from '../src/policy/load.js'
import { testKeys } from '../test/helpers/keys.js'
const policy = compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy' })
const facts = { namespaceLabels: { 'enlist.io/inject': 'enabled' }, serverVersion: { major: 1, minor: 20 }, caBundle: 'x'.repeat(1200), keys: testKeys() }
const req = JSON.parse(readFileSync(`bench/fixtures/typical.json`, 'utf8')).request
for (let i = 0; i < 60000; i++) admit(req, policy, facts)
