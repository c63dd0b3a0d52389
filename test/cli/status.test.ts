// `enlist status`, `enlist sweep --adopt-unmarked` and `enlist claim` as users run them (the
// built CLI) against a stand-in apiserver over HTTP, through a kubeconfig: the exit codes
// (0 true, 1 drift or a problem, 2 no usable report or bad flags), the table and -o json,
// every flag checked up front naming the flag and its accepted form, the commands' --help.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { enlist } from '../helpers/cli.js'
import { tempDir } from '../helpers/temp.js'

const dir = tempDir('enlist-status-cli-')
const PATH = '/api/v1/namespaces/enlist-system/configmaps/enlist-status'

/** The apiserver's answer per path; anything else is a 404 Status. */
const answers = new Map<string, { status: number; body: unknown }>()
const seen: string[] = []
const server: Server = createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`)
  const a = answers.get(req.url!.split('?')[0]!) ?? { status: 404, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', message: 'not found', code: 404 } }
  res.writeHead(a.status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(a.body))
})
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
t.teardown(() => server.close())
const port = (server.address() as AddressInfo).port
const kubeconfig = join(dir, 'kubeconfig')
writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:${port}"}}]\nusers: [{name: u, user: {token: t0}}]\n`)
const env = { KUBECONFIG: kubeconfig, HOME: dir }

const ago = (s: number): string => new Date(Date.now() - s * 1000).toISOString()
function publish(over: Record<string, unknown> = {}, backend: Record<string, unknown> = {}): void {
  const report = {
    cluster: 'prod-a',
    clusterUID: 'ks-a',
    leader: 'enlist-0',
    generatedAt: ago(5),
    sweepIntervalSeconds: 60,
    backends: [{ backend: 'zk', type: 'zookeeper', sweep: true, entries: { own: 4, other: 3, unmarked: 1 }, otherClusters: { 'prod-b': 3 }, removed: 0, rewritten: 0, stale: [], staleCount: 0, missing: [], missingCount: 0, ...backend }],
    ...over,
  }
  answers.set(PATH, { status: 200, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'enlist-status', namespace: 'enlist-system' }, data: { 'status.json': JSON.stringify(report) } } })
}

t.test('enlist --help lists the commands; each has --help; kubectl-enlist is the same program', async (t) => {
  const help = await enlist(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /\n {2}status {16}is the registry true\?/)
  t.match(help.stdout, /\n {2}sweep --adopt-unmarked --backend NAME\n/)
  t.match(help.stdout, /\n {2}claim --backend NAME {2}who holds this cluster's name/)
  for (const [cmd, usage] of [
    ['status', /usage: enlist status \[flags\][\s\S]*-o, --output STRING[\s\S]*--grace DURATION/],
    ['sweep', /usage: enlist sweep --adopt-unmarked --backend NAME \[--apply\][\s\S]*--apply[\s\S]*-f, --policy STRING/],
    ['claim', /usage: enlist claim --backend NAME \[--take-over\][\s\S]*--take-over/],
  ] as const) {
    const r = await enlist([cmd, '--help'])
    t.equal(r.code, 0, cmd)
    t.match(r.stdout, usage)
  }
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { bin: Record<string, string> }
  t.equal(pkg.bin['kubectl-enlist'], pkg.bin.enlist, 'kubectl finds the plugin kubectl-enlist: the same entry')
})

t.test('status: flags are checked first, naming the flag and the accepted form', async (t) => {
  t.match(await enlist(['status', '-o', 'yaml'], { env }), { code: 2, stderr: /--output: "yaml" is invalid; accepted: table, json/ })
  t.match(await enlist(['status', '--grace', 'soon'], { env }), { code: 2, stderr: /--grace: "soon" is invalid; accepted: a duration such as 500ms, 30s, 2m, 1h/ })
  t.match(await enlist(['status', '-n', 'Bad_NS'], { env }), { code: 2, stderr: /--namespace: "Bad_NS" is invalid; accepted: a namespace name/ })
  t.match(await enlist(['status', '--kubeconfig', '/nonexistent'], { env }), { code: 2, stderr: /--kubeconfig: cannot read \/nonexistent: no such file/ })
  t.match(await enlist(['status', 'extra'], { env }), { code: 2, stderr: /unexpected argument "extra"/ })
})

t.test('status: exit 2 when there is no report, or it is not one', async (t) => {
  answers.delete(PATH)
  const r = await enlist(['status'], { env })
  t.equal(r.code, 2)
  t.match(r.stderr, /no status report: ConfigMap enlist-system\/enlist-status not found/)
  answers.set(PATH, { status: 200, body: { kind: 'ConfigMap', data: { 'status.json': 'nope' } } })
  t.match(await enlist(['status'], { env }), { code: 2, stderr: /status\.json is not JSON/ })
  answers.set(PATH, { status: 403, body: { kind: 'Status', reason: 'Forbidden', message: 'forbidden', code: 403 } })
  t.match(await enlist(['status'], { env }), { code: 2, stderr: /forbidden.*ClusterRole enlist-status-reader/ })
  t.match(await enlist(['status', '-n', 'other'], { env }), { code: 2, stderr: /ConfigMap other\/enlist-status not found/ }, '--namespace is where it reads')
})

t.test('status: exit 0 and the table when entries and pods agree', async (t) => {
  publish()
  const r = await enlist(['status'], { env })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /cluster prod-a \(kube-system UID ks-a\); swept by enlist-0 \d+s ago, every 1m/)
  t.match(r.stdout, /zk\s+zookeeper\s+on\s+4\s+3 \(prod-b=3\)\s+1\s+0\s+0\s+-/)
  t.match(r.stdout, /enlist sweep --adopt-unmarked --backend zk/)
  t.match(r.stdout, /registry true: no drift beyond the 5m grace window/)
  t.ok(seen.includes(`GET ${PATH}`))
})

t.test('status: exit 1 on drift beyond --grace, not within it; -o json for scripts', async (t) => {
  publish({}, { missing: [{ namespace: 'shop', pod: 'a', uid: 'u1', since: ago(120) }], missingCount: 1 })
  t.equal((await enlist(['status'], { env })).code, 0, 'younger than the default 5m')
  const r = await enlist(['status', '--grace', '1m'], { env })
  t.equal(r.code, 1)
  t.match(r.stdout, /registered pods missing from the backend: 1\n {4}shop\/a \(uid u1\) for 2m/)
  t.match(r.stdout, /registry drift beyond the 1m grace window: zk 1/)
  const j = await enlist(['status', '-o', 'json', '--grace=1m'], { env })
  t.equal(j.code, 1)
  const out = JSON.parse(j.stdout) as { report: { cluster: string }; graceSeconds: number; ageSeconds: number; outdated: null; drift: Array<{ backend: string; kind: string; item: { uid: string } }> }
  t.equal(out.report.cluster, 'prod-a')
  t.equal(out.graceSeconds, 60)
  t.equal(out.outdated, null)
  t.match(out.drift, [{ backend: 'zk', kind: 'missing', item: { uid: 'u1' } }])
  publish({}, { problem: 'claim refused' })
  t.match(await enlist(['status'], { env }), { code: 1, stdout: /problem: claim refused/ })
})

t.test('status: exit 2 when the leader is not sweeping (report older than 3 intervals)', async (t) => {
  publish({ generatedAt: ago(400), sweepIntervalSeconds: 60 })
  const r = await enlist(['status'], { env })
  t.equal(r.code, 2)
  t.match(r.stdout, /zk\s+zookeeper/, 'the last report is still shown')
  t.match(r.stderr, /the status report is 6m\d+s old, more than 3 sweep intervals \(1m each\): the leader \(enlist-0\) is not sweeping/)
  const j = await enlist(['status', '-o', 'json'], { env })
  t.equal(j.code, 2)
  t.match(JSON.parse(j.stdout), { outdated: /not sweeping/ })
})

t.test('sweep and claim: flags and the backend are checked before anything is touched', async (t) => {
  const policy = join(dir, 'policy.yaml')
  writeFileSync(policy, 'apiVersion: enlist.io/v1alpha1\nkind: Policy\nregistry:\n  backends:\n    - {name: pods, type: kubernetes}\n')
  t.match(await enlist(['sweep', '--backend', 'pods', '-f', policy], { env }), { code: 2, stderr: /sweep needs --adopt-unmarked/ })
  t.match(await enlist(['sweep', '--adopt-unmarked', '-f', policy], { env }), { code: 2, stderr: /--backend is required: the backend's name in the policy/ })
  t.match(await enlist(['sweep', '--adopt-unmarked', '--backend', 'x', '--policy-configmap', 'nope'], { env }), { code: 2, stderr: /--policy-configmap: "nope" is invalid; accepted: namespace\/name/ })
  t.match(await enlist(['sweep', '--adopt-unmarked', '--backend', 'x', '-f', '/nonexistent.yaml'], { env }), { code: 2, stderr: /--policy: cannot read \/nonexistent\.yaml: no such file/ })
  t.match(await enlist(['sweep', '--adopt-unmarked', '--backend', 'zk', '-f', policy], { env }), { code: 2, stderr: /--backend: the policy has no backend "zk"; it has pods \(kubernetes\)/ })
  t.match(await enlist(['sweep', '--adopt-unmarked', '--backend', 'pods', '-f', policy], { env }), {
    code: 2,
    stderr: /--backend: backend pods is of type kubernetes, which has no unmarked entries to adopt; enlist sweep --adopt-unmarked serves types http, etcd, zookeeper, nats, amqp/,
  })
  t.match(await enlist(['claim', '--backend', 'pods', '-f', policy], { env }), { code: 2, stderr: /backend pods is of type kubernetes, which has no claims on cluster names; enlist claim serves types etcd, zookeeper, nats/ })
  answers.set('/api/v1/namespaces/enlist-system/configmaps', { status: 200, body: { kind: 'ConfigMapList', apiVersion: 'v1', items: [] } })
  t.match(await enlist(['claim', '--take-over', '--backend', 'pods'], { env }), { code: 2, stderr: /the policy ConfigMap enlist-system\/enlist-policy does not exist/ }, 'the policy is read from the ConfigMap by default')
  t.match(await enlist(['claim', '--backend', 'pods', '--log-level', 'loud'], { env }), { code: 2, stderr: /--log-level: "loud" is invalid; accepted: trace/ })
})
