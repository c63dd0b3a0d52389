// `enlist status` (also `kubectl enlist status`): is the registry true? Reads the report the
// leader writes after each sweep (ConfigMap enlist-status, src/contract/status-report.ts)
// with the user's kubeconfig alone, so a workstation needs no access to any backend.
// Exit codes: 0 entries and pods agree; 1 they disagree beyond --grace, or a backend
// reports a problem; 2 no report to judge (missing, unreadable, or the leader is not
// sweeping: older than 3 sweep intervals), or bad flags.

import type { V1ConfigMap } from '@kubernetes/client-node'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import { errorMessage, OptionError } from '../lib/errors.js'
import { isDns1123Label } from '../lib/validation.js'
import { INSTALL_NAMESPACE } from '../names.js'
import { type BackendStatus, driftBeyond, type DriftItem, reportError, STATUS_CONFIGMAP, STATUS_KEY, type StatusReport } from '../contract/status-report.js'
import { type FlagSpecs, helpText, type Parsed, parseFlags, requireReadable } from './flags.js'

export const statusFlags = {
  kubeconfig: { kind: 'string', help: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  namespace: { kind: 'string', short: 'n', default: INSTALL_NAMESPACE, help: "enlist's namespace, where the leader writes ConfigMap enlist-status" },
  output: { kind: 'string', short: 'o', default: 'table', help: 'table, or json (the report and the drift beyond --grace, for scripts)' },
  grace: { kind: 'duration', default: '5m', min: 0, help: 'pods and entries that disagree for less than this are not drift' },
  'request-timeout': { kind: 'duration', default: '30s', min: 100, max: 600_000, help: 'the apiserver read completes within this' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export type StatusOptions = Parsed<typeof statusFlags>

/** A report older than this many sweep intervals says the leader is not sweeping. */
export const STALE_INTERVALS = 3

const SUMMARY = `Show the registry's state as the leader found it at its last sweep, per backend: this cluster's entries, other clusters' and unmarked ones; registered pods a backend is missing; entries whose pod is gone. Reads ConfigMap ${STATUS_CONFIGMAP} with your kubeconfig (bind ClusterRole enlist-status-reader in enlist's namespace). Exit 0: entries and pods agree; 1: they disagree beyond --grace, or a backend reports a problem; 2: no usable report (missing, unreadable, older than ${STALE_INTERVALS} sweep intervals) or bad flags. Also runs as "kubectl enlist status".`

export function validateStatusOptions(o: StatusOptions): void {
  if (o._.length > 0) throw new OptionError(`unexpected argument ${JSON.stringify(o._[0])}: status takes flags only`)
  if (!isDns1123Label(o.namespace)) throw new OptionError(`--namespace: ${JSON.stringify(o.namespace)} is invalid; accepted: a namespace name (DNS-1123 label)`)
  if (o.output !== 'table' && o.output !== 'json') throw new OptionError(`--output: ${JSON.stringify(o.output)} is invalid; accepted: table, json`)
  if (o.kubeconfig !== undefined) requireReadable(o.kubeconfig, '--kubeconfig')
}

/** Why there is no report to judge: exit 2. */
export class NoReportError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NoReportError'
  }
}

/** The report in the ConfigMap, or NoReportError saying why there is none to read. */
export async function readReport(client: KubeClient, namespace: string, timeoutMs?: number): Promise<StatusReport> {
  const where = `ConfigMap ${namespace}/${STATUS_CONFIGMAP}`
  let cm: V1ConfigMap
  try {
    cm = await client.get<V1ConfigMap>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${STATUS_CONFIGMAP}`, undefined, { timeoutMs })
  } catch (err) {
    if (err instanceof KubeApiError && err.notFound) {
      throw new NoReportError(`no status report: ${where} not found. The enlist leader writes it after each registry sweep: is enlist running in namespace ${namespace} (--namespace), and has it swept yet?`)
    }
    if (err instanceof KubeApiError && err.status === 403) {
      throw new NoReportError(`cannot read ${where}: forbidden. Ask for a RoleBinding in ${namespace} to ClusterRole enlist-status-reader`)
    }
    throw new NoReportError(`cannot read ${where}: ${errorMessage(err)}`)
  }
  const text = cm.data?.[STATUS_KEY]
  if (text === undefined) throw new NoReportError(`${where} has no key ${STATUS_KEY}: not a report of enlist's`)
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new NoReportError(`${where}: ${STATUS_KEY} is not JSON: ${errorMessage(err)}`)
  }
  const problem = reportError(v)
  if (problem) throw new NoReportError(`${where}: ${STATUS_KEY} is not a status report: ${problem}`)
  return v as StatusReport
}

export interface StatusVerdict {
  ageSeconds: number
  /** Why the report cannot be trusted (the leader is not sweeping); exit 2. */
  outdated?: string
  drift: ReturnType<typeof driftBeyond>
  code: 0 | 1 | 2
}

export function judge(report: StatusReport, graceSeconds: number, now = Date.now()): StatusVerdict {
  const generated = Date.parse(report.generatedAt)
  const ageSeconds = Number.isNaN(generated) ? Number.POSITIVE_INFINITY : Math.max(0, Math.round((now - generated) / 1000))
  const interval = report.sweepIntervalSeconds > 0 ? report.sweepIntervalSeconds : 60
  const drift = driftBeyond(report, graceSeconds, now)
  let outdated: string | undefined
  if (ageSeconds > STALE_INTERVALS * interval) {
    outdated = `the status report is ${Number.isFinite(ageSeconds) ? formatAge(ageSeconds) : 'of unknown age'} old, more than ${STALE_INTERVALS} sweep intervals (${formatAge(interval)} each): the leader (${report.leader || 'unknown'}) is not sweeping. Check enlist's pods and logs`
  }
  return { ageSeconds, outdated, drift, code: outdated ? 2 : drift.length > 0 ? 1 : 0 }
}

/** 42s, 3m10s, 2h5m, 3d4h. */
export function formatAge(seconds: number): string {
  const s = Math.floor(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600) ? `${Math.floor((s % 86_400) / 3600)}h` : ''}`
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
}

function others(b: BackendStatus): string {
  const names = Object.entries(b.otherClusters).sort(([x], [y]) => x.localeCompare(y))
  return names.length === 0 ? String(b.entries.other) : `${b.entries.other} (${names.map(([n, c]) => `${n}=${c}`).join(', ')})`
}

/** The human view: a summary, a table per backend, then the items that disagree. */
export function renderTable(report: StatusReport, verdict: StatusVerdict, graceSeconds: number, namespace: string, now = Date.now()): string {
  const lines: string[] = []
  const age = Number.isFinite(verdict.ageSeconds) ? `${formatAge(verdict.ageSeconds)} ago` : `at ${report.generatedAt}`
  lines.push(`cluster ${report.cluster || '(unnamed)'} (kube-system UID ${report.clusterUID || 'unknown'}); swept by ${report.leader || 'unknown'} ${age}, every ${formatAge(report.sweepIntervalSeconds)}`)
  lines.push('')
  if (report.backends.length === 0) lines.push('no backends configured')
  else {
    const rows = [['BACKEND', 'TYPE', 'SWEEP', 'THIS CLUSTER', 'OTHER CLUSTERS', 'UNMARKED', 'MISSING', 'POD GONE', 'PROBLEM']]
    for (const b of report.backends) {
      rows.push([b.backend, b.type, b.sweep ? 'on' : 'off', String(b.entries.own), others(b), String(b.entries.unmarked), String(b.missingCount), String(b.staleCount), b.problem === undefined ? '-' : 'yes'])
    }
    lines.push(...table(rows))
  }
  const since = (i: DriftItem): string => {
    const t = Date.parse(i.since)
    return Number.isNaN(t) ? '' : ` for ${formatAge(Math.max(0, (now - t) / 1000))}`
  }
  const list = (title: string, items: DriftItem[], count: number): void => {
    if (count === 0) return
    lines.push(`  ${title}: ${count}`)
    for (const i of items) lines.push(`    ${i.namespace}/${i.pod} (uid ${i.uid})${since(i)}`)
    if (count > items.length) lines.push(`    ... and ${count - items.length} more`)
  }
  for (const b of report.backends) {
    if (b.problem === undefined && b.missingCount === 0 && b.staleCount === 0 && b.entries.unmarked === 0) continue
    lines.push('', `${b.backend}:`)
    if (b.problem !== undefined) lines.push(`  problem: ${b.problem}`)
    list('registered pods missing from the backend', b.missing, b.missingCount)
    list(b.sweep ? 'entries whose pod is gone (the next sweep removes them)' : 'entries whose pod is gone (sweep is off for this backend)', b.stale, b.staleCount)
    if (b.entries.unmarked > 0) {
      lines.push(`  unmarked entries: ${b.entries.unmarked}, never deleted by the sweep; to make them this cluster's: kubectl -n ${namespace} exec deploy/enlist -- enlist sweep --adopt-unmarked --backend ${b.backend}`)
    }
  }
  lines.push('')
  const grace = formatAge(graceSeconds)
  if (verdict.drift.length === 0) lines.push(`registry true: no drift beyond the ${grace} grace window`)
  else {
    const per = new Map<string, number>()
    for (const d of verdict.drift) per.set(d.backend, (per.get(d.backend) ?? 0) + 1)
    lines.push(`registry drift beyond the ${grace} grace window: ${[...per].map(([b, n]) => `${b} ${n}`).join(', ')}`)
  }
  return lines.join('\n')
}

export async function statusCommand(argv: readonly string[], clientFor?: (o: StatusOptions) => Promise<KubeClient>): Promise<number> {
  const o = parseFlags(statusFlags, argv)
  if (o.help) {
    console.log(helpText('status [flags]', SUMMARY, statusFlags))
    return 0
  }
  validateStatusOptions(o)
  let report: StatusReport
  try {
    const client = await (clientFor ?? defaultClient)(o)
    try {
      report = await readReport(client, o.namespace, o['request-timeout'])
    } finally {
      client.close()
    }
  } catch (err) {
    if (!(err instanceof NoReportError)) throw err
    console.error(`enlist: ${err.message}`)
    return 2
  }
  const graceSeconds = o.grace / 1000
  const now = Date.now()
  const verdict = judge(report, graceSeconds, now)
  if (o.output === 'json') {
    const out = { report, ageSeconds: Number.isFinite(verdict.ageSeconds) ? verdict.ageSeconds : null, graceSeconds, outdated: verdict.outdated ?? null, drift: verdict.drift }
    process.stdout.write(JSON.stringify(out, null, 2) + '\n')
  } else {
    console.log(renderTable(report, verdict, graceSeconds, o.namespace, now))
  }
  if (verdict.outdated) console.error(`enlist: ${verdict.outdated}`)
  return verdict.code
}

async function defaultClient(o: StatusOptions): Promise<KubeClient> {
  const { KubeClient } = await import('../kube/client.js')
  const { loadCredentials } = await import('../kube/credentials.js')
  return new KubeClient(await loadCredentials(o.kubeconfig), { requestTimeoutMs: o['request-timeout'] })
}
