// `enlist status` in-process: reading the report (missing, forbidden, unreadable), the verdict
// and its exit code (drift beyond the grace window only; a backend's problem; a report older
// than 3 sweep intervals), and the table.
import t from 'tap'
import { formatAge, judge, NoReportError, readReport, renderTable } from '../../src/cli/status.js'
import { type BackendStatus, STATUS_CONFIGMAP, STATUS_KEY, type StatusReport } from '../../src/contract/status-report.js'
import { FakeKube } from '../helpers/fake-kube.js'

const NS = 'enlist-system'
const PATH = `/api/v1/namespaces/${NS}/configmaps/${STATUS_CONFIGMAP}`
const NOW = Date.parse('2026-03-01T12:00:00Z')
const ago = (s: number): string => new Date(NOW - s * 1000).toISOString()

function backend(over: Partial<BackendStatus> = {}): BackendStatus {
  return { backend: 'zk', type: 'zookeeper', sweep: true, entries: { own: 10, other: 0, unmarked: 0, duplicate: 0 }, otherClusters: {}, removed: 0, rewritten: 0, stale: [], staleCount: 0, missing: [], missingCount: 0, ...over }
}
function report(over: Partial<StatusReport> = {}): StatusReport {
  return { cluster: 'prod-a', clusterUID: 'ks-a', leader: 'enlist-0', generatedAt: ago(30), sweepIntervalSeconds: 60, backends: [backend()], ...over }
}

t.test('readReport: the report, or why there is none', async (t) => {
  const kube = new FakeKube()
  await t.rejects(readReport(kube.client, NS), new NoReportError(''), 'absent')
  await t.rejects(readReport(kube.client, NS), { message: /no status report: ConfigMap enlist-system\/enlist-status not found.*--namespace/ })
  kube.fail({ verb: 'GET' }, 403)
  await t.rejects(readReport(kube.client, NS), { message: /forbidden.*RoleBinding in enlist-system to ClusterRole enlist-status-reader/ })
  kube.put(PATH, { data: { other: 'x' } })
  await t.rejects(readReport(kube.client, NS), { message: /has no key status\.json/ })
  kube.put(PATH, { data: { [STATUS_KEY]: '{not json' } })
  await t.rejects(readReport(kube.client, NS), { message: /status\.json is not JSON/ })
  kube.put(PATH, { data: { [STATUS_KEY]: '{"cluster":"a"}' } })
  await t.rejects(readReport(kube.client, NS), { message: /is not a status report: missing cluster, generatedAt or backends/ })
  kube.put(PATH, { data: { [STATUS_KEY]: JSON.stringify(report()) } })
  t.same(await readReport(kube.client, NS), report())
})

t.test('judge: exit 0 when entries and pods agree, 1 on drift beyond the grace window or a problem', async (t) => {
  t.match(judge(report(), 300, NOW), { code: 0, drift: [], ageSeconds: 30 })
  const young = report({ backends: [backend({ stale: [{ namespace: 'shop', pod: 'a', uid: 'u1', since: ago(60) }], staleCount: 1, missing: [{ namespace: 'shop', pod: 'b', uid: 'u2', since: ago(120) }], missingCount: 1 })] })
  t.equal(judge(young, 300, NOW).code, 0, 'younger than the grace window: not drift')
  const v = judge(young, 90, NOW)
  t.equal(v.code, 1)
  t.same(v.drift.map((d) => `${d.kind} ${d.item?.uid}`), ['missing u2'], 'only what is older than the window')
  t.equal(judge(young, 0, NOW).drift.length, 2)
  const problem = judge(report({ backends: [backend({ problem: 'claim refused' })] }), 300, NOW)
  t.match(problem, { code: 1, drift: [{ backend: 'zk', kind: 'problem', problem: 'claim refused' }] })
  t.equal(judge(report({ backends: [backend({ entries: { own: 1, other: 5, unmarked: 7, duplicate: 0 }, otherClusters: { 'prod-b': 5 } })] }), 300, NOW).code, 0, 'foreign and unmarked entries are not drift')
})

t.test('judge: exit 2 when the report is older than 3 sweep intervals', async (t) => {
  t.equal(judge(report({ generatedAt: ago(180) }), 300, NOW).code, 0, 'exactly 3 intervals is still fresh')
  const old = judge(report({ generatedAt: ago(181) }), 300, NOW)
  t.equal(old.code, 2)
  t.match(old.outdated, /the status report is 3m1s old, more than 3 sweep intervals \(1m each\): the leader \(enlist-0\) is not sweeping/)
  t.equal(judge(report({ generatedAt: 'yesterday' }), 300, NOW).code, 2, 'an unreadable time is no fresh report')
  t.equal(judge(report({ generatedAt: ago(1000), sweepIntervalSeconds: 600 }), 300, NOW).code, 0, 'a long interval allows an older report')
})

t.test('formatAge', async (t) => {
  t.same([0, 42, 60, 190, 3600, 7500, 86_400, 90_000].map(formatAge), ['0s', '42s', '1m', '3m10s', '1h', '2h5m', '1d', '1d1h'])
})

t.test('renderTable: a row per backend, other clusters by name, what disagrees, the adoption hint', async (t) => {
  const r = report({
    backends: [
      backend({ entries: { own: 10, other: 7, unmarked: 2, duplicate: 0 }, otherClusters: { 'prod-b': 5, dr: 2 }, stale: [{ namespace: 'shop', pod: 'gone-1', uid: 'u1', since: ago(600) }], staleCount: 3 }),
      backend({ backend: 'cmdb', type: 'http', sweep: false, problem: 'list failed: 503', entries: { own: 0, other: 0, unmarked: 0, duplicate: 0 }, missing: [{ namespace: 'shop', pod: 'new-1', uid: 'u9', since: ago(10) }], missingCount: 1 }),
    ],
  })
  const text = renderTable(r, judge(r, 300, NOW), 300, NS, NOW)
  t.match(text, /^cluster prod-a \(kube-system UID ks-a\); swept by enlist-0 30s ago, every 1m\n/)
  t.match(text, /BACKEND\s+TYPE\s+SWEEP\s+THIS CLUSTER\s+OTHER CLUSTERS\s+UNMARKED\s+MISSING\s+POD GONE\s+PROBLEM/)
  t.match(text, /zk\s+zookeeper\s+on\s+10\s+7 \(dr=2, prod-b=5\)\s+2\s+0\s+3\s+-/)
  t.match(text, /cmdb\s+http\s+off\s+0\s+0\s+0\s+1\s+0\s+yes/)
  t.match(text, /entries whose pod is gone \(the next sweep removes them\): 3\n {4}shop\/gone-1 \(uid u1\) for 10m\n {4}\.\.\. and 2 more/)
  t.match(text, /unmarked entries: 2, never deleted by the sweep; to make them this cluster's: kubectl -n enlist-system exec deploy\/enlist -- enlist sweep --adopt-unmarked --backend zk/)
  t.match(text, /cmdb:\n {2}problem: list failed: 503\n {2}registered pods missing from the backend: 1\n {4}shop\/new-1 \(uid u9\) for 10s/)
  t.match(text, /registry drift beyond the 5m grace window: zk 1, cmdb 1$/)
  const clean = report()
  t.match(renderTable(clean, judge(clean, 300, NOW), 300, NS, NOW), /registry true: no drift beyond the 5m grace window$/)
})
