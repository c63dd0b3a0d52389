// The registry status report: written by the leader after each sweep (src/controller),
// read by `enlist status` with the user's kubeconfig alone (through the apiserver), so a
// workstation needs no backend access. Answers "is the registry true?" per backend: this
// cluster's entries, other clusters', unmarked ones, and where entries and pods disagree.
// Pure: the format, and the drift rule the command's exit code follows.

/** The ConfigMap in enlist's namespace that holds the report, and its key. */
export const STATUS_CONFIGMAP = 'enlist-status'
export const STATUS_KEY = 'status.json'
/** Items listed per drift kind and backend; the counts are always whole. */
export const STATUS_ITEMS_MAX = 100

/** A pod whose entry and state disagree, and since when this leader has seen it so. */
export interface DriftItem {
  namespace: string
  pod: string
  uid: string
  /** ISO time: first seen so (stale), or registered since (missing). */
  since: string
}

export interface BackendStatus {
  backend: string
  type: string
  /** The policy's `sweep` for this backend: false leaves its entries alone. */
  sweep: boolean
  /** Why the backend was not swept (claim refused, list failed); absent when it was. */
  problem?: string
  /** Entries by owner: this cluster's, another cluster's, with no mark, and with this
   *  cluster's name written by another cluster (another kube-system UID: a name shared). */
  entries: { own: number; other: number; unmarked: number; duplicate: number }
  /** Other clusters' entries by cluster name. */
  otherClusters: Record<string, number>
  /** What the sweep fixed this time. */
  removed: number
  rewritten: number
  /** This cluster's entries whose pod is gone, left after the sweep (failed, or sweep off). */
  stale: DriftItem[]
  staleCount: number
  /** Registered pods of this cluster the backend does not hold, left after the sweep. */
  missing: DriftItem[]
  missingCount: number
}

export interface StatusReport {
  cluster: string
  clusterUID: string
  /** The leader replica that swept. */
  leader: string
  generatedAt: string
  sweepIntervalSeconds: number
  backends: BackendStatus[]
}

/** Drift beyond the grace window: items older than `graceSeconds` at `now`, per backend. */
export function driftBeyond(report: StatusReport, graceSeconds: number, now = Date.now()): Array<{ backend: string; kind: 'stale' | 'missing' | 'problem'; item?: DriftItem; problem?: string }> {
  const out: Array<{ backend: string; kind: 'stale' | 'missing' | 'problem'; item?: DriftItem; problem?: string }> = []
  const old = (i: DriftItem): boolean => {
    const t = Date.parse(i.since)
    return Number.isNaN(t) || now - t > graceSeconds * 1000
  }
  for (const b of report.backends) {
    if (b.problem !== undefined) out.push({ backend: b.backend, kind: 'problem', problem: b.problem })
    for (const i of b.stale) if (old(i)) out.push({ backend: b.backend, kind: 'stale', item: i })
    for (const i of b.missing) if (old(i)) out.push({ backend: b.backend, kind: 'missing', item: i })
  }
  return out
}

/** Why a text is not a report (undefined: it is one). */
export function reportError(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object') return 'not a JSON object'
  const r = v as Partial<StatusReport>
  if (typeof r.cluster !== 'string' || typeof r.generatedAt !== 'string' || !Array.isArray(r.backends)) return 'missing cluster, generatedAt or backends'
  return undefined
}
