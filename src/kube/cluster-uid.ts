// The kube-system namespace's UID, asked once at start (retrying until it answers): what a
// claim on a cluster name in a shared backend holds, to tell two clusters of one name apart
// (src/registry/ownership.ts). It is not the cluster's mark: a cluster restored from an etcd
// snapshot has the same UID, so the mark is the policy's cluster.name.

import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import type { Logger } from '../log.js'
import type { KubeClient } from './client.js'

export const CLUSTER_UID_NAMESPACE = 'kube-system'

/** Reads the UID once; `signal` ends the wait. */
export async function readClusterUid(client: KubeClient, signal?: AbortSignal): Promise<string> {
  const ns = await client.get<{ metadata?: { uid?: string } }>(`/api/v1/namespaces/${CLUSTER_UID_NAMESPACE}`, undefined, { signal })
  const uid = ns.metadata?.uid
  if (!uid) throw new Error(`namespace ${CLUSTER_UID_NAMESPACE} has no uid`)
  return uid
}

/** A runnable (src/manager.ts): reads the UID at start, retrying with backoff, then hands it on. */
export class ClusterUid {
  readonly name = 'cluster-uid'
  value: string | undefined
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    private readonly onKnown: (uid: string) => void,
  ) {}

  start(): void {
    this.loop = (async () => {
      const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 })
      while (!this.abort.signal.aborted) {
        try {
          this.value = await readClusterUid(this.client, this.abort.signal)
          this.log.info({ uid: this.value }, `cluster identity: the ${CLUSTER_UID_NAMESPACE} namespace's UID`)
          this.onKnown(this.value)
          return
        } catch (err) {
          if (this.abort.signal.aborted) return
          this.log.warn({ err: errorMessage(err) }, `cannot read the ${CLUSTER_UID_NAMESPACE} namespace's UID (the claims on this cluster's name in shared backends wait for it); retrying`)
          await sleep(backoff.next(), this.abort.signal)
        }
      }
    })()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
  }
}
