// The `enlist` command as users run it: render, policy validate/schema, errors and exit codes.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { CORPUS_DIR, missingItems } from '../helpers/corpus.js'
import { enlist } from '../helpers/cli.js'
import { tempDir } from '../helpers/temp.js'

const dir = tempDir('enlist-cli-')
const write = (name: string, text: string) => {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}
const HEADER = 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'

t.test('render a corpus file for a labelled namespace', async (t) => {
  const r = await enlist(['render', '-f', join(CORPUS_DIR, '000-deployment.yaml'), '--namespace-labels', 'enlist.io/inject=enabled'])
  t.equal(r.code, 0, r.stderr)
  const [doc] = parseAllDocuments(r.stdout).map((d) => d.toJS() as { spec: { template: never } })
  t.same(missingItems(doc!.spec.template), [])
})

t.test('render from stdin with a policy and a target version', async (t) => {
  const policy = write('p.yaml', HEADER + 'preStop: {drainSeconds: 11}\n')
  const manifest = 'apiVersion: v1\nkind: Pod\nmetadata: {name: a, annotations: {enlist.io/inject: "true"}}\nspec: {containers: [{name: a, image: x}]}\n'
  const r = await enlist(['render', '-f', '-', '--policy', policy, '--kube-version', '1.31'], { input: manifest })
  t.equal(r.code, 0, r.stderr)
  const pod = parseAllDocuments(r.stdout)[0]!.toJS() as { spec: { containers: Array<{ lifecycle: unknown }> } }
  t.same(pod.spec.containers[0]!.lifecycle, { preStop: { sleep: { seconds: 11 } } })
})

t.test('render reports skips and warnings on stderr, and fails on a denial', async (t) => {
  const manifest = write(
    'm.yaml',
    `apiVersion: apps/v1
kind: Deployment
metadata: {name: quiet}
spec: {template: {spec: {containers: [{name: a, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec: {template: {metadata: {annotations: {enlist.io/inject: "true", enlist.io/metadata: "[1]"}}, spec: {containers: [{name: a, image: x}]}}}
`,
  )
  const r = await enlist(['render', '-f', manifest])
  t.equal(r.code, 1)
  t.match(r.stderr, /Deployment\/quiet: not injected \(not-opted-in\)/)
  t.match(r.stderr, /Deployment\/broken: denied: annotation enlist\.io\/metadata: "\[1\]" is invalid: a JSON array, not an object/)
  t.equal(parseAllDocuments(r.stdout).length, 2, 'every document is still printed')
})

t.test('render errors: no file, unreadable file, bad YAML, bad flags', async (t) => {
  t.match(await enlist(['render']), { code: 2, stderr: /render needs -f FILE/ })
  t.match(await enlist(['render', '-f', '/nonexistent.yaml']), { code: 2, stderr: /cannot read \/nonexistent\.yaml/ })
  t.match(await enlist(['render', '-f', write('bad.yaml', 'a: [1\n')]), { code: 2, stderr: /document 1/ })
  t.match(await enlist(['render', '-f', '-', '--namespace-labels', 'bad key=x']), { code: 2, stderr: /--namespace-labels: "bad key=x" is invalid/ })
  t.match(await enlist(['render', '-f', '-', '--namespace-labels', 'foo']), { code: 2, stderr: /--namespace-labels: "foo" is invalid; accepted: key=value pairs separated by commas \(key= for an empty value\)/ })
  t.match(await enlist(['render', '-f', '-', '--namespace-labels', 'team=a,foo']), { code: 2, stderr: /"foo" is invalid/ })
  t.match(await enlist(['render', 'manifest.yaml']), { code: 2, stderr: /unexpected argument "manifest\.yaml": name the manifest with -f FILE/ })
  t.match(await enlist(['render', '-f', '-', '--kube-version', 'new']), { code: 2, stderr: /--kube-version: "new" is invalid; accepted: MAJOR.MINOR/ })
  t.match(await enlist(['render', '--bogus']), { code: 2, stderr: /unknown flag --bogus/ })
  t.match(await enlist(['render', '-f', '-', '--policy', write('bad-policy.yaml', 'kind: Policy\n')]), { code: 1, stderr: /invalid policy .*bad-policy\.yaml:\n {2}\/apiVersion: is required/ })
})

t.test('policy validate: valid, invalid (every error, exit 1), ConfigMap manifests', async (t) => {
  const good = await enlist(['policy', 'validate', write('good.yaml', HEADER)])
  t.equal(good.code, 0)
  t.match(good.stdout, /good\.yaml: valid \(hash [0-9a-f]{16}\)/)

  const bad = await enlist(['policy', 'validate', write('bad2.yaml', HEADER + 'registrar: {position: middle, timeoutSeconds: 0}\nextra: 1\n')])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /bad2\.yaml: \/extra: unknown field "extra"/)
  t.match(bad.stderr, /bad2\.yaml: \/registrar\/position: must be one of "first", "last"; got "middle"/)
  t.match(bad.stderr, /bad2\.yaml: \/registrar\/timeoutSeconds: must be >= 1; got 0/)
  t.match(bad.stderr, /bad2\.yaml: 3 errors/)

  const cm = write('cm.yaml', `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: enlist-policy, namespace: enlist-system}\ndata:\n  policy.yaml: |\n    apiVersion: enlist.io/v1alpha1\n    kind: Policy\n    injection: {default: sometimes}\n`)
  const cmRun = await enlist(['policy', 'validate', cm])
  t.equal(cmRun.code, 1)
  t.match(cmRun.stderr, /\/injection\/default: must be one of "enabled", "disabled"; got "sometimes"/)

  const several = await enlist(['policy', 'validate', join(dir, 'good.yaml'), join(dir, 'bad2.yaml'), '/nonexistent'])
  t.equal(several.code, 2, 'a file that cannot be read is a usage error, the worst outcome wins')
  t.match(several.stderr, /\/nonexistent: cannot read \/nonexistent: no such file/)
  t.match(several.stderr, /bad2\.yaml: 3 errors/, 'the other files are still checked')
  t.match(several.stdout, /good\.yaml: valid/)
})

t.test('policy validate: --help, a ConfigMap without policy.yaml, every error at once', async (t) => {
  const help = await enlist(['policy', 'validate', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /usage: enlist policy validate FILE/)
  t.equal(help.stderr, '', 'no attempt to read a file named --help')
  t.match(await enlist(['policy', 'validate', '--bogus', 'x.yaml']), { code: 2, stderr: /unknown flag --bogus/ })

  const noKey = await enlist(['policy', 'validate', write('cm-nokey.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: enlist-policy}\ndata:\n  policy.yml: "kind: Policy"\n')])
  t.equal(noKey.code, 1)
  t.match(noKey.stderr, /\/data\/policy\.yaml: ConfigMap enlist-policy has no key policy\.yaml \(it has policy\.yml\); enlist reads the policy from data\.policy\.yaml/)
  t.match(noKey.stderr, /: 1 error\n/, 'one error that says what is wrong, not the ConfigMap checked as a policy')
  t.notMatch(noKey.stderr, /apiVersion|unknown field/)

  const both = await enlist(['policy', 'validate', write('both.yaml', HEADER + 'registrar: {position: middle}\ninjection: {excludedNamespaces: [Legacy]}\n')])
  t.equal(both.code, 1)
  t.match(both.stderr, /\/registrar\/position: must be one of/)
  t.match(both.stderr, /\/injection\/excludedNamespaces\/0: "Legacy" is not a valid namespace name/, 'semantic errors beside schema errors')
})

t.test('relay: its CMDB URL follows the http backend\'s rules', async (t) => {
  const base = ['relay', '--source=nats', '--url=tls://127.0.0.1:1']
  const plain = await enlist([...base, '--cmdb-url=http://cmdb.example/api'])
  t.equal(plain.code, 2)
  t.match(plain.stderr, /--cmdb-url: http:\/\/cmdb\.example is not encrypted .*set --cmdb-allow-insecure-http/)
  const creds = await enlist([...base, '--cmdb-url=https://admin:s3cret@cmdb.example/api'])
  t.equal(creds.code, 2)
  t.match(creds.stderr, /--cmdb-url: must not hold credentials .*put them in --cmdb-headers-dir/)
  t.notMatch(creds.stderr, /s3cret/, 'the password is not echoed')
})

t.test('relay: a plaintext broker URL only with --allow-insecure', async (t) => {
  const plain = await enlist(['relay', '--source=amqp', '--url=amqp://127.0.0.1:1/', '--cmdb-url=https://cmdb.example/api'])
  t.equal(plain.code, 2)
  t.match(plain.stderr, /--url: amqp:\/\/127\.0\.0\.1:1 is not encrypted .*use amqps:\/\/, or set --allow-insecure/)
})

t.test('a missing file is exit 2 with the same words, whichever command and flag named it', async (t) => {
  const m = '/nonexistent/x.yaml'
  const cases: Array<[string[], RegExp]> = [
    [['render', '-f', m], /-f: cannot read \/nonexistent\/x\.yaml: no such file/],
    [['render', '-f', '-', '--policy', m], /--policy: cannot read \/nonexistent\/x\.yaml: no such file/],
    [['render', '-f', '-', '--ca-bundle', m], /--ca-bundle: cannot read \/nonexistent\/x\.yaml: no such file/],
    [['policy', 'validate', m], /cannot read \/nonexistent\/x\.yaml: no such file/],
    [['serve', '--kubeconfig', m], /--kubeconfig: cannot read \/nonexistent\/x\.yaml: no such file/],
  ]
  for (const [args, err] of cases) {
    const r = await enlist(args, { input: '' })
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, err)
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  }
})

t.test('policy schema prints JSON Schema', async (t) => {
  const r = await enlist(['policy', 'schema'])
  t.equal(r.code, 0)
  const schema = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, unknown> }
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#')
  t.ok(schema.properties.registrar)
})

t.test('usage and unknown commands', async (t) => {
  t.match(await enlist([]), { code: 2, stdout: /usage: enlist COMMAND/ })
  t.match(await enlist(['--help']), { code: 0, stdout: /commands:/ })
  t.match(await enlist(['frobnicate']), { code: 2, stderr: /unknown command "frobnicate"/ })
  t.match(await enlist(['version']), { code: 0, stdout: /^\d+\.\d+\.\d+\n$/ })
  t.match(await enlist(['serve', '--help']), { code: 0, stdout: /--policy-configmap STRING/ })
  t.match(await enlist(['policy']), { code: 2 })
})

t.test('serve validates its options before starting', async (t) => {
  t.match(await enlist(['serve', '--port', '99999']), { code: 2, stderr: /--port: "99999" is invalid; accepted: an integer from 1 to 65535/ })
  t.match(await enlist(['serve', '--log-level', 'loud']), { code: 2, stderr: /--log-level: "loud" is invalid/ })
  t.match(await enlist(['serve', '--policy-configmap', 'just-a-name']), { code: 2, stderr: /--policy-configmap: "just-a-name" is invalid; accepted: namespace\/name/ })
  t.match(await enlist(['serve'], { env: { ENLIST_BODY_LIMIT: 'lots' } }), { code: 2, stderr: /ENLIST_BODY_LIMIT \(environment\): "lots" is invalid/ })
  t.match(await enlist(['serve', '--shutdown-delay', 'soon']), { code: 2, stderr: /--shutdown-delay: "soon" is invalid; accepted: a duration/ })
  const kc = write('kubeconfig', 'current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\n')
  t.match(await enlist(['serve', '--tls-cert', '/nonexistent/tls.crt', '--kubeconfig', kc]), { code: 2, stderr: /--tls-cert: cannot read \/nonexistent\/tls\.crt: no such file/ })
  t.match(await enlist(['serve', '--policy', '/nonexistent/p.yaml', '--kubeconfig', kc]), { code: 2, stderr: /--policy: cannot read \/nonexistent\/p\.yaml: no such file/ })
  t.match(await enlist(['serve', '--leader-elect', 'maybe']), { code: 2, stderr: /unexpected argument "maybe": serve takes flags only/ })
  t.match(await enlist(['serve', '--cert-ip-addresses', '10.0.0.1,fd00::1,nope']), { code: 2, stderr: /--cert-ip-addresses: "nope" is not an IP address/ })
  t.match(await enlist(['serve'], { env: { ENLIST_IMAGE: 'Registry.example.com/Enlist:0.2.0 ' } }), { code: 2, stderr: /--image \(ENLIST_IMAGE\): "Registry\.example\.com\/Enlist:0\.2\.0 " is not an image reference; accepted: \[registry\[:port\]\/\]name\[:tag\]/ })
  t.match(await enlist(['serve', '--metrics-bind-address', '8080']), { code: 2, stderr: /--metrics-bind-address: "8080" is invalid; accepted: HOST:PORT or :PORT/ })
  t.match(await enlist(['serve', '--metrics-bind-address', ':99999']), { code: 2, stderr: /--metrics-bind-address: ":99999" is invalid/ })
  t.match(await enlist(['serve', '--api-request-timeout', 'forever']), { code: 2, stderr: /--api-request-timeout: "forever" is invalid; accepted: a duration/ })
  t.match(await enlist(['serve'], { env: { KUBECONFIG: '', HOME: dir, KUBERNETES_SERVICE_HOST: '' } }), { code: 2, stderr: /no Kubernetes cluster configured: set KUBECONFIG or --kubeconfig, or run in a pod/ })
})
