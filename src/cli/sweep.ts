// `enlist sweep --adopt-unmarked --backend NAME [--apply]`: the one-shot, explicit adoption of
// a shared backend's unmarked entries (written before cluster marks existed), for upgrades.
// The regular sweep never deletes an unmarked entry: it cannot know whose it is. An operator
// who knows this cluster wrote them says so here. For each entry with no mark: its pod lives
// in this cluster (same uid, not terminating) and enlist registered it: the entry is written
// again with this cluster's mark, the record made as the controller makes it (the pod's
// sealed decision); its pod is gone: the unmarked entry is removed. A live pod enlist did not
// register is left alone. Entries with another cluster's mark are never touched. Dry run by
// default. Run where the backend is reachable:
//   kubectl -n enlist-system exec deploy/enlist -- enlist sweep --adopt-unmarked --backend NAME

import type { V1Pod } from '@kubernetes/client-node'
import { goneReason } from '../controller/registry-controller.js'
import { KubeApiError } from '../kube/client.js'
import { podPath } from '../kube/pod-ref.js'
import { errorMessage, OptionError } from '../lib/errors.js'
import { DECISION_KEYS_SECRET } from '../names.js'
import type { BackendSpec } from '../policy/backends/index.js'
import type { Backend } from '../registry/backend.js'
import { ownership, type ListedEntry } from '../registry/ownership.js'
import type { RegistryRecord } from '../registry/record.js'
import { ADOPT_TYPES, backendFlags, openBackend, type Opened, type SetupDeps, validateBackendFlags } from './backend-setup.js'
import { type FlagSpecs, helpText, parseFlags } from './flags.js'

export const sweepFlags = {
  'adopt-unmarked': { kind: 'bool', default: 'false', help: "adopt the backend's entries that carry no cluster mark (required: the only thing this command does)" },
  apply: { kind: 'bool', default: 'false', help: 'do it; without it, print what would be done (dry run)' },
  ...backendFlags,
} satisfies FlagSpecs

const SUMMARY =
  'Adopt the unmarked entries of one shared backend (written before cluster marks, e.g. by an older enlist) as this cluster\'s: an entry whose pod lives here and was registered by enlist is written again with this cluster\'s mark; one whose pod is gone is removed. Entries of other clusters are never touched. Dry run unless --apply. Exit 0: done (or nothing to do); 1: an entry failed or could not be judged; 2: bad flags or setup. ' +
  'Run where the backend and its credentials are reachable: kubectl -n enlist-system exec deploy/enlist -- enlist sweep --adopt-unmarked --backend NAME'

/** What adoption does with one unmarked entry. */
export type Plan =
  | { entry: ListedEntry; action: 'remark'; record: RegistryRecord }
  | { entry: ListedEntry; action: 'remove'; why: string }
  /** `unjudged`: it could not be decided (the apiserver, the keys): counted as a failure. */
  | { entry: ListedEntry; action: 'skip'; why: string; unjudged?: boolean }

export interface AdoptOutcome {
  plans: Plan[]
  other: number
  own: number
  /** Failed adoptions (with --apply), and entries that could not be judged. */
  failures: number
}

/** Decides what to do with each unmarked entry of `listed`, asking the apiserver about its pod. */
export async function planAdoption(o: Pick<Opened, 'client' | 'policy' | 'backend'>, listed: readonly ListedEntry[], secretsNamespace: string): Promise<{ plans: Plan[]; own: number; other: number }> {
  const self = o.policy.spec.cluster.name
  const spec = o.policy.spec.registry.backends.find((b) => b.name === o.backend.name)
  let ring: Promise<import('../decision/keyring.js').KeyRing> | undefined
  const keys = (): Promise<import('../decision/keyring.js').KeyRing> =>
    (ring ??= (async () => {
      const { SecretReader } = await import('../kube/secrets.js')
      const { KEYRING_KEY, parseKeyRing } = await import('../decision/keyring.js')
      return parseKeyRing(await new SecretReader(o.client, secretsNamespace).key(DECISION_KEYS_SECRET, KEYRING_KEY))
    })())
  const plans: Plan[] = []
  let own = 0
  let other = 0
  for (const entry of listed) {
    const whose = ownership(entry, self)
    if (whose === 'own') own++
    if (whose === 'other') other++
    if (whose !== 'unmarked') continue
    plans.push(await planOne(o, entry, spec, keys, self))
  }
  return { plans, own, other }
}

async function planOne(o: Pick<Opened, 'client' | 'backend'>, entry: ListedEntry, spec: BackendSpec | undefined, keys: () => Promise<import('../decision/keyring.js').KeyRing>, self: string): Promise<Plan> {
  if (!entry.namespace || !entry.pod) return { entry, action: 'skip', why: 'the entry names no pod (namespace/name): cannot tell whose it is' }
  let pod: V1Pod
  try {
    pod = await o.client.get<V1Pod>(podPath(entry))
  } catch (err) {
    if (err instanceof KubeApiError && err.notFound) return { entry, action: 'remove', why: 'no such pod in this cluster' }
    return { entry, action: 'skip', why: `cannot ask the apiserver about its pod: ${errorMessage(err)}`, unjudged: true }
  }
  if (pod.metadata?.uid !== entry.uid) return { entry, action: 'remove', why: `pod ${entry.namespace}/${entry.pod} here is another pod (uid ${pod.metadata?.uid ?? 'none'})` }
  const gone = goneReason(pod)
  if (gone) return { entry, action: 'remove', why: gone }
  try {
    const record = await recordOf(o, pod, spec, await keys(), self)
    if (typeof record === 'string') return { entry, action: 'skip', why: record }
    return { entry, action: 'remark', record }
  } catch (err) {
    return { entry, action: 'skip', why: `its pod lives here, but its record cannot be made: ${errorMessage(err)}`, unjudged: true }
  }
}

/** The record the controller would write for a live pod (RegistryController.expectedRecord,
 *  then BackendSet.recordFor), with this cluster's mark; or why there is none. */
async function recordOf(o: Pick<Opened, 'client' | 'backend'>, pod: V1Pod, spec: BackendSpec | undefined, ring: import('../decision/keyring.js').KeyRing, self: string): Promise<RegistryRecord | string> {
  const { viewOf } = await import('../kube/pod-view.js')
  const { registeredCondition } = await import('../registration/condition.js')
  const { buildRecord } = await import('../registry/record.js')
  const view = viewOf(pod, { ring, recordAnnotations: [] })
  const cond = registeredCondition(view)
  const sealed = view.enlist.sealed
  if (cond?.status !== 'True' || !cond.lastTransitionTime) return 'its pod lives here but is not registered by enlist (no condition enlist.io/registered True): left alone'
  if (!sealed) return "its pod lives here but carries no decision of enlist's that opens with its keys: left alone"
  if (!view.status.podIP) return 'its pod lives here but has no IP yet: left alone'
  const record: RegistryRecord = { ...buildRecord(view, sealed.decision, cond.lastTransitionTime), cluster: self }
  const advertise = spec && 'advertise' in spec ? spec.advertise : undefined
  const mode = sealed.decision.advertise?.[o.backend.name] ?? advertise?.mode ?? 'podIP'
  if (mode === 'podIP' || !advertise) return record
  const { Advertiser } = await import('../registry/advertise.js')
  return { ...record, advertised: await new Advertiser(o.client).resolve(view, record, mode, advertise) }
}

function describe(p: Plan, apply: boolean): string {
  const e = `${p.entry.namespace}/${p.entry.pod} (uid ${p.entry.uid})`
  if (p.action === 'remark') return `${apply ? 'adopted' : 'would adopt'} ${e}: its pod lives in this cluster; ${apply ? 'written' : 'write it'} again with this cluster's mark`
  if (p.action === 'remove') return `${apply ? 'removed' : 'would remove'} ${e}: its pod is gone (${p.why})`
  return `left alone ${e}: ${p.why}`
}

/** Plans, prints and (with `apply`) adopts. */
export async function adoptUnmarked(o: Pick<Opened, 'client' | 'policy' | 'backend'>, apply: boolean, secretsNamespace: string, out: (line: string) => void = console.log): Promise<AdoptOutcome> {
  const b: Backend = o.backend
  const listed = await b.list()
  const { plans, own, other } = await planAdoption(o, listed, secretsNamespace)
  let failures = 0
  for (const p of plans) {
    if (p.action === 'skip') {
      if (p.unjudged) failures++
      out(describe(p, apply))
      continue
    }
    if (!apply) {
      out(describe(p, false))
      continue
    }
    try {
      await b.adopt!(p.entry, p.action === 'remark' ? p.record : undefined)
      out(describe(p, true))
    } catch (err) {
      failures++
      out(`failed ${p.entry.namespace}/${p.entry.pod} (uid ${p.entry.uid}): ${errorMessage(err)}; run again to retry`)
    }
  }
  const count = (a: Plan['action']): number => plans.filter((p) => p.action === a).length
  out(
    `backend ${b.name}: ${plans.length} unmarked ${plans.length === 1 ? 'entry' : 'entries'}: ${count('remark')} of live pods of this cluster, ${count('remove')} of gone pods, ${count('skip')} left alone; ` +
      `${own} already this cluster's, ${other} of other clusters (never touched)${apply ? '' : '. Dry run: nothing changed; add --apply to adopt'}`,
  )
  return { plans, own, other, failures }
}

export async function sweepCommand(argv: readonly string[], deps: SetupDeps = {}): Promise<number> {
  const o = parseFlags(sweepFlags, argv)
  if (o.help) {
    console.log(helpText('sweep --adopt-unmarked --backend NAME [--apply] [flags]', SUMMARY, sweepFlags))
    return 0
  }
  validateBackendFlags(o, 'sweep')
  if (!o['adopt-unmarked']) {
    throw new OptionError('sweep needs --adopt-unmarked: it adopts a backend\'s unmarked entries (the regular sweep is the leader\'s, every registry.reconcileIntervalSeconds)')
  }
  const opened = await openBackend(o, { command: 'enlist sweep --adopt-unmarked', method: 'adopt', types: ADOPT_TYPES }, deps)
  try {
    const r = await adoptUnmarked(opened, o.apply, o.namespace)
    return r.failures > 0 ? 1 : 0
  } finally {
    await opened.close()
  }
}
