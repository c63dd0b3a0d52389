// The decision keys at run time. Every replica watches the Secret and signs and verifies
// with what it holds (KeyStore); the leader creates the Secret and rotates its keys
// (KeyRotator). The keys never leave enlist: they are in this Secret, in memory, and
// nowhere else (not in logs, metrics, events or answers).

import type { V1Secret } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { type KubeClient, KubeApiError } from '../kube/client.js'
import { Cache } from '../kube/cache.js'
import { Reflector } from '../kube/reflector.js'
import { LeaderLoop } from '../manager.js'
import { errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import {
  activeKey,
  type DecisionKey,
  formatKeyRing,
  KEYRING_KEY,
  type KeyRing,
  keyById,
  parseKeyRing,
  planRotation,
  type RotationPolicy,
} from './keyring.js'

const REFRESH_MIN_INTERVAL_MS = 5_000

/** Every replica: the ring from the Secret, kept current by a watch. */
export class KeyStore extends Cache {
  readonly name = 'decision-keys'
  readonly reflector: Reflector<V1Secret>
  private current: KeyRing | undefined
  private lastRefresh = 0
  private readonly listeners: Array<(ring: KeyRing) => void> = []
  /** Why the Secret could not be used, while no ring is held. */
  problem: string | undefined

  constructor(
    private readonly client: KubeClient,
    readonly namespace: string,
    readonly secretName: string,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    super()
    const name = secretName
    this.reflector = new Reflector<V1Secret>({
      client,
      log,
      name: `secret ${namespace}/${name}`,
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
      fieldSelector: `metadata.name=${name}`,
    })
    const onSecret = (s: V1Secret): void => this.load(s)
    this.reflector.on({
      add: onSecret,
      update: onSecret,
      // Deleting the Secret revokes nothing by itself (the leader makes a new one); keep
      // verifying with what we hold until then, and say so.
      delete: () => this.log.warn({ secret: `${namespace}/${name}` }, 'decision key Secret deleted; the leader makes a new one'),
    })
  }

  get ring(): KeyRing | undefined {
    return this.current
  }

  get ready(): boolean {
    return this.current !== undefined && activeKey(this.current, Date.now()) !== undefined
  }

  /** Called with each ring loaded (a key added, retired or revoked). */
  onChange(fn: (ring: KeyRing) => void): void {
    this.listeners.push(fn)
  }

  /** The key to sign with now. */
  signingKey(now = Date.now()): DecisionKey | undefined {
    return this.current ? activeKey(this.current, now) : undefined
  }

  /** Reads the Secret now when `keyId` is unknown (a key newer than our watch has shown),
   *  at most every few seconds. Resolves whether the key is known afterwards. */
  async ensure(keyId: string): Promise<boolean> {
    if (this.current && keyById(this.current, keyId)) return true
    if (Date.now() - this.lastRefresh < REFRESH_MIN_INTERVAL_MS) return false
    this.lastRefresh = Date.now()
    try {
      this.load(await this.client.get<V1Secret>(`/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets/${encodeURIComponent(this.secretName)}`))
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot read the decision key Secret')
    }
    return this.current !== undefined && keyById(this.current, keyId) !== undefined
  }

  private load(s: V1Secret): void {
    const raw = s.data?.[KEYRING_KEY]
    if (raw === undefined) {
      this.reject(`Secret ${this.namespace}/${this.secretName} has no key ${KEYRING_KEY}`)
      return
    }
    try {
      const ring = parseKeyRing(Buffer.from(raw, 'base64').toString('utf8'))
      this.current = ring
      this.problem = undefined
      this.metrics.decisionKeys.set(ring.keys.length)
      for (const l of this.listeners) l(ring)
    } catch (err) {
      this.reject(errorMessage(err))
    }
  }

  private reject(problem: string): void {
    this.metrics.decisionKeyErrors.inc()
    this.problem = problem
    this.log.error({ secret: `${this.namespace}/${this.secretName}`, problem, keeping: this.current ? this.current.keys.map((k) => k.id) : null }, 'decision key Secret rejected')
  }
}

export interface RotatorOptions {
  client: KubeClient
  store: KeyStore
  policy: RotationPolicy
  /** Key ids named by live managed pods; undefined while that is not known (cache not synced). */
  referenced: () => ReadonlySet<string> | undefined
  intervalMs: number
  log: Logger
  metrics: Metrics
}

/** The leader: creates the Secret, adds a key ahead of use, retires keys no pod names. */
export class KeyRotator extends LeaderLoop {
  readonly name = 'decision-key-rotator'

  constructor(private readonly o: RotatorOptions) {
    super({ intervalMs: o.intervalMs, log: o.log, what: 'decision keys' })
  }

  async reconcile(signal?: AbortSignal): Promise<void> {
    const { client, store, log } = this.o
    const opts = { signal }
    const path = `/api/v1/namespaces/${encodeURIComponent(store.namespace)}/secrets/${encodeURIComponent(store.secretName)}`
    let secret: V1Secret | undefined
    try {
      secret = await client.get<V1Secret>(path, undefined, opts)
    } catch (err) {
      if (!(err instanceof KubeApiError && err.notFound)) throw err
    }
    let ring: KeyRing | undefined
    const raw = secret?.data?.[KEYRING_KEY]
    if (raw !== undefined) {
      try {
        ring = parseKeyRing(Buffer.from(raw, 'base64').toString('utf8'))
      } catch (err) {
        // Never overwrite keys we cannot read: pods sealed with them would be stranded.
        log.error({ err: errorMessage(err) }, 'decision key Secret is unreadable; fix or delete it, enlist will not overwrite it')
        return
      }
    } else if (secret) {
      log.error({ secret: `${store.namespace}/${store.secretName}` }, `decision key Secret has no ${KEYRING_KEY}; fix or delete it, enlist will not overwrite it`)
      return
    }
    // Retiring needs to know every key a live pod names; until then, only add.
    const referenced = this.o.referenced()
    const step = planRotation(ring, Date.now(), this.o.policy, referenced ?? new Set(ring?.keys.map((k) => k.id)))
    if (step.action === 'none') return
    const data = { [KEYRING_KEY]: Buffer.from(formatKeyRing(step.ring)).toString('base64') }
    try {
      if (!secret) {
        await client.create(`/api/v1/namespaces/${encodeURIComponent(store.namespace)}/secrets`, {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: { name: store.secretName, namespace: store.namespace, labels: { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/component': 'decision-keys' } },
          data,
        }, undefined, opts)
      } else {
        // resourceVersion makes this a compare-and-swap: a concurrent writer wins, we retry.
        await client.replace(path, { ...secret, data }, opts)
      }
    } catch (err) {
      if (err instanceof KubeApiError && err.conflict) return
      throw err
    }
    this.o.metrics.decisionKeyRotations.inc()
    log.info({ reason: step.reason, added: step.added, removed: step.removed, keys: step.ring.keys.map((k) => k.id) }, 'decision keys updated')
  }
}
