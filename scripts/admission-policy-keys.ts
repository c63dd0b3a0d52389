// Prints a kustomize Component that makes the validating-admission-policy component protect
// the record keys of a policy's layouts (dubbo-go's too, with a kubernetes backend in
// layout dubbo), and lets enlist's own credential write them:
//   npx tsx scripts/admission-policy-keys.ts policy.yaml > overlay/enlist-keys/kustomization.yaml
// then `components: [../../components/validating-admission-policy, enlist-keys]`.
// Takes a Policy or the enlist-policy ConfigMap (its data["policy.yaml"]).
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { admissionPolicyComponent } from '../src/admission/reserved.js'
import { loadPolicy } from '../src/policy/load.js'

const file = process.argv[2]
if (!file || process.argv.length > 3) {
  console.error('usage: npx tsx scripts/admission-policy-keys.ts POLICY_FILE')
  process.exit(2)
}
let text = readFileSync(file, 'utf8')
const doc = parse(text) as { kind?: string; data?: Record<string, string> } | null
if (doc?.kind === 'ConfigMap') text = doc.data?.['policy.yaml'] ?? ''
process.stdout.write(admissionPolicyComponent(loadPolicy(text, file).spec, file.split('/').pop() ?? file))
