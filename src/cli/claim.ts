// `enlist claim --backend NAME [--take-over]`: who holds this cluster's name in a backend
// with a store (etcd, ZooKeeper, the NATS key-value store), and, for a DR cluster that
// replaces another of the same name, the explicit take-over. A claim holds the kube-system
// UID (src/registry/ownership.ts); enlist refuses a backend whose claim another UID holds.
// Without --take-over nothing held by anyone is changed: where no cluster holds the name
// yet, it is claimed for this one, as enlist itself does before its first write.

import { readClusterUid } from '../kube/cluster-uid.js'
import { errorMessage, EnlistError } from '../lib/errors.js'
import type { ClusterClaim, ClusterIdentity } from '../registry/ownership.js'
import { backendFlags, CLAIM_TYPES, openBackend, type Opened, type SetupDeps, validateBackendFlags } from './backend-setup.js'
import { type FlagSpecs, helpText, parseFlags } from './flags.js'

export const claimFlags = {
  'take-over': { kind: 'bool', default: 'false', help: "take the name over from the cluster holding it (a DR cluster replacing it): that cluster's enlist is refused from then on" },
  ...backendFlags,
} satisfies FlagSpecs

const SUMMARY =
  "Show which cluster holds this cluster's name (policy cluster.name) in a backend with a store, by its kube-system UID; with --take-over, take the name over. Exit 0: this cluster holds it (now); 1: another cluster holds it (without --take-over); 2: bad flags or setup. " +
  'Run where the backend and its credentials are reachable: kubectl -n enlist-system exec deploy/enlist -- enlist claim --backend NAME [--take-over]'

const since = (c: ClusterClaim): string => (c.claimedAt ? `since ${c.claimedAt}` : 'since an unknown time')

/** Reads (and where asked, takes over) the claim; prints what it found. Returns the exit code. */
export async function runClaim(o: Pick<Opened, 'backend'>, self: ClusterIdentity, takeOver: boolean, out: (line: string) => void = console.log): Promise<number> {
  const b = o.backend
  const name = `cluster name "${self.name}" in backend ${b.name}`
  const first = await b.claim!(self, false)
  if (first.held) {
    if (first.created) out(`${name}: no cluster held it; claimed it now for this cluster (kube-system UID ${self.uid})`)
    else out(`${name}: held by this cluster (kube-system UID ${self.uid}) ${since(first.claim)}${takeOver ? '; nothing to take over' : ''}`)
    return 0
  }
  const holder = first.holder
  if (!takeOver) {
    out(
      `${name}: held by another cluster (kube-system UID ${holder.uid}) ${since(holder)}; this cluster's UID is ${self.uid}, so enlist here refuses the backend. ` +
        `Two clusters must not share a name: give this one another cluster.name, or, for a DR cluster replacing that one, run: enlist claim --take-over --backend ${b.name}`,
    )
    return 1
  }
  const taken = await b.claim!(self, true)
  if (!taken.held) throw new EnlistError('ENLIST_CONFLICT', `${name}: the take-over did not hold: still held by kube-system UID ${taken.holder.uid}`)
  out(`${name}: taken over from the cluster with kube-system UID ${holder.uid} (held ${since(holder)}); now held by this cluster (kube-system UID ${self.uid}) since ${taken.claim.claimedAt}`)
  out("enlist here uses the backend again at its next sweep; the other cluster's enlist, if it still runs, is refused from its next sweep on")
  return 0
}

export async function claimCommand(argv: readonly string[], deps: SetupDeps = {}): Promise<number> {
  const o = parseFlags(claimFlags, argv)
  if (o.help) {
    console.log(helpText('claim --backend NAME [--take-over] [flags]', SUMMARY, claimFlags))
    return 0
  }
  validateBackendFlags(o, 'claim')
  const opened = await openBackend(o, { command: 'enlist claim', method: 'claim', types: CLAIM_TYPES }, deps)
  try {
    let uid: string
    try {
      uid = await readClusterUid(opened.client)
    } catch (err) {
      throw new EnlistError('ENLIST_UNAVAILABLE', `cannot read the kube-system namespace's UID (this cluster's identity in claims): ${errorMessage(err)}`)
    }
    return await runClaim(opened, { name: opened.policy.spec.cluster.name, uid }, o['take-over'])
  } finally {
    await opened.close()
  }
}
