// etcd v3: the record as JSON at `<prefix><cluster>/<namespace>/<service>/<pod uid>`, the
// cluster (policy cluster.name) being the mark of whose entry it is (src/registry/ownership.ts).
// Plain keys, no lease: the entries are enlist's (persistent, owned by the controller, swept
// against live pods), so an enlist restart or a lost connection deregisters nothing.
//
// Before marks, keys were `<prefix><namespace>/<service>/<pod uid>`: such a key is unmarked.
// Each list() moves the old-layout keys of this cluster's live pods (their UIDs are in the pod
// cache) to the new layout, one transaction each, and leaves every other one as it is: it may
// be another cluster's, and only an explicit adoption takes it. `<prefix>.clusters/<name>`
// holds the claims on cluster names, never entries.

import { createHash } from 'node:crypto'
import { rootCertificates } from 'node:tls'
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
  type IOptions,
} from 'etcd3'
import type { PodView } from '../kube/pod-view.js'
import { SecretError, type SecretReader } from '../kube/secrets.js'
import { errorMessage } from '../lib/errors.js'
import type { EtcdBackendSpec } from '../policy/policy.js'
import { type Backend, type BackendCallOptions, BackendError, type BackendOp } from './backend.js'
import type { PodRef } from '../kube/pod-ref.js'
import type { PodLookup } from './kubernetes.js'
import { CLAIMS_DIR, type ClaimResult, type ClusterIdentity, decodeClaim, encodeClaim, judgeClaim, type ListedEntry } from './ownership.js'
import type { RegistryRecord } from './record.js'

/** Keys a credentials Secret may hold (all optional). */
export const ETCD_SECRET_KEYS = { username: 'username', password: 'password', cert: 'tls.crt', key: 'tls.key' } as const

/** What a key under the prefix is. */
export type EtcdKey =
  | { kind: 'entry'; cluster: string | undefined; namespace: string; service: string; uid: string }
  | { kind: 'claim'; name: string }
  | { kind: 'other' }

/** Reads a key (without the prefix): 4 segments are a marked entry, 3 an old-layout unmarked
 *  one, `.clusters/<name>` a claim; anything else is not enlist's. Pure. */
export function parseEtcdKey(rest: string): EtcdKey {
  const parts = rest.split('/')
  if (parts.some((p) => p === '')) return { kind: 'other' }
  if (parts[0] === CLAIMS_DIR) return parts.length === 2 ? { kind: 'claim', name: parts[1]! } : { kind: 'other' }
  if (parts.length === 4) return { kind: 'entry', cluster: parts[0]!, namespace: parts[1]!, service: parts[2]!, uid: parts[3]! }
  if (parts.length === 3) return { kind: 'entry', cluster: undefined, namespace: parts[0]!, service: parts[1]!, uid: parts[2]! }
  return { kind: 'other' }
}

/** Whether the cache holds this pod, alive: its entry is this cluster's to migrate. */
function alive(pod: PodView | undefined, namespace: string): boolean {
  return pod !== undefined && pod.metadata.namespace === namespace && !pod.metadata.deletionTimestamp && pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed'
}

/** The old value with this cluster's mark, when it is a record (JSON object); else as it was. */
function stamped(value: string, cluster: string): string {
  try {
    const v = JSON.parse(value) as unknown
    if (v && typeof v === 'object' && !Array.isArray(v)) return JSON.stringify({ ...(v as Record<string, unknown>), cluster })
  } catch {
    // not JSON: moved as it is
  }
  return value
}

const NO_PODS: PodLookup = { pods: () => [] }

export class EtcdBackend implements Backend {
  readonly type = 'etcd'
  readonly name: string
  private client: Etcd3 | undefined
  private clientFor = ''
  private lastError: string | undefined
  /** key -> the entry it is: immutable facts, so the sweep reads values only for new keys. */
  private readonly entries = new Map<string, ListedEntry>()
  /** uid -> this cluster's key for it, as last written or listed. */
  private readonly own = new Map<string, string>()
  /** uid -> its unmarked (old-layout) key, as last listed. */
  private readonly unmarked = new Map<string, string>()

  constructor(
    private readonly spec: EtcdBackendSpec,
    private readonly secrets: SecretReader,
    /** This cluster's name (policy cluster.name), the first segment of its keys. Empty (no
     *  shared-backend policy allows it; kept for tools): the old, unmarked layout. */
    private readonly cluster = '',
    /** Managed pods: whose old-layout keys are this cluster's to migrate. */
    private readonly pods: PodLookup = NO_PODS,
  ) {
    this.name = spec.name
  }

  keyOf(r: { namespace: string; service: string; uid: string }): string {
    return this.cluster === '' ? this.oldKeyOf(r) : `${this.spec.prefix}${this.cluster}/${r.namespace}/${r.service}/${r.uid}`
  }

  /** The key before marks: `<prefix><namespace>/<service>/<uid>`. */
  oldKeyOf(r: { namespace: string; service: string; uid: string }): string {
    return `${this.spec.prefix}${r.namespace}/${r.service}/${r.uid}`
  }

  /** `<prefix>.clusters/<name>`. */
  claimKey(name: string): string {
    return `${this.spec.prefix}${CLAIMS_DIR}/${name}`
  }

  async register(record: RegistryRecord, opts: BackendCallOptions = {}): Promise<void> {
    const key = this.keyOf(record)
    const old = this.oldKeyOf(record)
    await opts.pace?.()
    await this.call('register', async (c) => {
      const put = c.put(key).value(JSON.stringify(record))
      // The pod's old-layout key, if any, goes in the same transaction: never twice, never none.
      if (old === key) await put.exec()
      else await c.if(old, 'Version', '>', 0).then(put, c.delete().key(old)).else(c.put(key).value(JSON.stringify(record))).commit()
    })
    if (old !== key) {
      this.entries.delete(old)
      this.unmarked.delete(record.uid)
    }
    this.entries.set(key, { ...this.ref(record), cluster: this.mark() })
    this.own.set(record.uid, key)
  }

  /** Removes this cluster's key of the pod and its old-layout key (a pod UID is this
   *  cluster's pod); never a key under another cluster's name. */
  async deregister(ref: PodRef, opts: BackendCallOptions = {}): Promise<void> {
    await opts.pace?.()
    const keys = await this.call('deregister', async (c) => {
      const known = [this.own.get(ref.uid), this.unmarked.get(ref.uid)].filter((k) => k !== undefined)
      if (known.length > 0) return known
      // Not seen by this replica: the uid's keys are under its namespace, in either layout.
      const mine = this.cluster === '' ? [] : await c.getAll().prefix(`${this.spec.prefix}${this.cluster}/${ref.namespace}/`).keys()
      const old = await c.getAll().prefix(`${this.spec.prefix}${ref.namespace}/`).keys()
      return [...mine, ...old].filter((k) => {
        const e = parseEtcdKey(k.slice(this.spec.prefix.length))
        return e.kind === 'entry' && e.uid === ref.uid && e.namespace === ref.namespace && (e.cluster === undefined || e.cluster === this.mark())
      })
    })
    for (const key of keys) {
      await opts.pace?.()
      await this.call('deregister', (c) => c.delete().key(key).exec())
      this.entries.delete(key)
    }
    this.own.delete(ref.uid)
    this.unmarked.delete(ref.uid)
  }

  async list(opts: BackendCallOptions = {}): Promise<ListedEntry[]> {
    await opts.pace?.()
    const keys = await this.call('list', (c) => c.getAll().prefix(this.spec.prefix).keys())
    const seen = new Set<string>()
    const unknown: Array<{ key: string; entry: Extract<EtcdKey, { kind: 'entry' }> }> = []
    for (const key of keys) {
      const e = parseEtcdKey(key.slice(this.spec.prefix.length))
      // Claims and keys of another shape under the prefix are not entries: leave them.
      if (e.kind !== 'entry') continue
      seen.add(key)
      if (!this.entries.has(key)) unknown.push({ key, entry: e })
    }
    for (const key of this.entries.keys()) if (!seen.has(key)) this.entries.delete(key)
    // Another cluster's entries are counted, never touched: their pod's name is not read.
    const toRead: typeof unknown = []
    for (const u of unknown) {
      if (u.entry.cluster === undefined || u.entry.cluster === this.cluster) toRead.push(u)
      else this.entries.set(u.key, { uid: u.entry.uid, namespace: u.entry.namespace, pod: '', cluster: u.entry.cluster })
    }
    for (let i = 0; i < toRead.length; i += 32) {
      const batch = toRead.slice(i, i + 32)
      await opts.pace?.()
      const values = await this.call('list', (c) => Promise.all(batch.map((u) => c.get(u.key).string())))
      batch.forEach((u, j) => {
        let pod = ''
        try {
          pod = (JSON.parse(values[j] ?? '{}') as Partial<RegistryRecord>).pod ?? ''
        } catch {
          // an unreadable value is still an entry, by uid
        }
        this.entries.set(u.key, { uid: u.entry.uid, namespace: u.entry.namespace, pod, cluster: u.entry.cluster })
      })
    }
    await this.migrate(opts)
    this.own.clear()
    this.unmarked.clear()
    for (const [key, e] of this.entries) {
      if (e.cluster === undefined) this.unmarked.set(e.uid, key)
      else if (e.cluster === this.cluster) this.own.set(e.uid, key)
    }
    return [...this.entries.values()].map((e) => ({ ...e }))
  }

  /** Moves the old-layout keys of this cluster's live pods to its own layout: put the
   *  marked key and delete the old one in one transaction, only if the old one is unchanged. */
  private async migrate(opts: BackendCallOptions): Promise<void> {
    if (this.cluster === '') return
    const old = [...this.entries].filter(([, e]) => e.cluster === undefined)
    if (old.length === 0) return
    const live = new Map<string, PodView>()
    for (const p of this.pods.pods()) live.set(p.metadata.uid, p)
    for (const [key, e] of old) {
      if (!alive(live.get(e.uid), e.namespace)) continue
      const parsed = parseEtcdKey(key.slice(this.spec.prefix.length))
      if (parsed.kind !== 'entry') continue
      const to = this.keyOf(parsed)
      await opts.pace?.()
      const moved = await this.call('list', async (c) => {
        const got = await c.get(key).exec()
        const kv = got.kvs[0]
        if (!kv) return false
        const unchanged = c.if(key, 'Mod', '==', kv.mod_revision)
        // Registered again meanwhile (a newer record at the new key): the old one only goes.
        if (await c.get(to).exists()) return (await unchanged.then(c.delete().key(key)).commit()).succeeded
        const value = stamped(kv.value.toString(), this.cluster)
        return (await unchanged.and(to, 'Create', '==', 0).then(c.put(to).value(value), c.delete().key(key)).commit()).succeeded
      })
      if (!moved) continue // gone or changed meanwhile: the next list looks again
      this.entries.delete(key)
      this.entries.set(to, { ...e, cluster: this.cluster })
      this.unmarked.delete(e.uid)
    }
  }

  /** Claims this cluster's name: `<prefix>.clusters/<name>` created if absent (createRevision
   *  0), else judged (judgeClaim); a take-over overwrites only the value it read. */
  async claim(self: ClusterIdentity, takeOver: boolean, opts: BackendCallOptions = {}): Promise<ClaimResult> {
    const key = this.claimKey(self.name)
    for (let attempt = 1; ; attempt++) {
      await opts.pace?.()
      const done = await this.call('claim', async (c) => {
        const kv = (await c.get(key).exec()).kvs[0]
        const { write, result } = judgeClaim(kv ? decodeClaim(kv.value.toString()) : undefined, self, takeOver)
        if (!write) return result
        const cmp = kv ? c.if(key, 'Mod', '==', kv.mod_revision) : c.if(key, 'Create', '==', 0)
        return (await cmp.then(c.put(key).value(encodeClaim(write))).commit()).succeeded ? result : undefined
      })
      if (done) return done
      // another writer between our read and write: read again, a few times
      if (attempt >= 3) throw new BackendError(this.name, 'claim', `the claim ${key} changed under every attempt; retrying later`, true)
    }
  }

  /** Makes an unmarked (old-layout) entry this cluster's: `record` given, the marked key is
   *  written and the unmarked one deleted in one transaction; undefined, the unmarked one is
   *  deleted. An entry with a mark is refused. */
  async adopt(entry: ListedEntry, record: RegistryRecord | undefined, opts: BackendCallOptions = {}): Promise<void> {
    if (entry.cluster !== undefined) {
      throw new BackendError(this.name, 'adopt', `entry ${entry.namespace}/${entry.pod || entry.uid} carries the mark of cluster "${entry.cluster}": only unmarked entries can be adopted`, false)
    }
    if (this.cluster === '') throw new BackendError(this.name, 'adopt', 'this cluster has no name (policy cluster.name): there is no mark to adopt entries with', false)
    if (record && record.uid !== entry.uid) throw new BackendError(this.name, 'adopt', `record of pod uid ${record.uid} given for the entry of uid ${entry.uid}: they must be the same pod`, false)
    await opts.pace?.()
    await this.call('adopt', async (c) => {
      // The unmarked key of this uid: known from the last list, else found under its namespace.
      const known = this.unmarked.get(entry.uid)
      const key =
        known ??
        (await c.getAll().prefix(`${this.spec.prefix}${entry.namespace}/`).keys()).find((k) => {
          const e = parseEtcdKey(k.slice(this.spec.prefix.length))
          return e.kind === 'entry' && e.cluster === undefined && e.uid === entry.uid
        })
      if (record) {
        const to = this.keyOf(record)
        const value = JSON.stringify({ ...record, cluster: this.cluster })
        if (key === undefined) await c.put(to).value(value).exec()
        else await c.if(key, 'Version', '>', 0).then(c.put(to).value(value), c.delete().key(key)).else(c.put(to).value(value)).commit()
        this.entries.set(to, { ...this.ref(record), cluster: this.cluster })
        this.own.set(record.uid, to)
      } else if (key !== undefined) {
        await c.delete().key(key).exec()
      }
      if (key !== undefined) this.entries.delete(key)
      this.unmarked.delete(entry.uid)
    })
  }

  private mark(): string | undefined {
    return this.cluster === '' ? undefined : this.cluster
  }

  private ref(r: PodRef): PodRef {
    return { namespace: r.namespace, pod: r.pod, uid: r.uid }
  }

  health(): string | undefined {
    return this.lastError
  }

  async close(): Promise<void> {
    const c = this.client
    this.client = undefined
    c?.close()
  }

  private async call<T>(op: BackendOp, fn: (c: Etcd3) => Promise<T>): Promise<T> {
    let client: Etcd3
    try {
      client = await this.connect()
    } catch (err) {
      const retryable = !(err instanceof SecretError) || err.retryable
      this.lastError = errorMessage(err)
      throw new BackendError(this.name, op, this.lastError, retryable, { cause: err })
    }
    try {
      const v = await fn(client)
      this.lastError = undefined
      return v
    } catch (err) {
      // Wrong credentials or a refused request will not change by retrying.
      const fatal =
        err instanceof EtcdPermissionDeniedError ||
        err instanceof EtcdAuthenticationFailedError ||
        err instanceof EtcdInvalidAuthTokenError ||
        err instanceof GRPCUnauthenticatedError ||
        err instanceof GRPCInvalidArgumentError
      this.lastError = `${this.spec.endpoints.join(',')}: ${errorMessage(err)}`
      throw new BackendError(this.name, op, this.lastError, !fatal, { cause: err })
    }
  }

  /** One client per credentials: a rotated Secret gets a new client within the Secret TTL. */
  private async connect(): Promise<Etcd3> {
    const data = this.spec.credentialsFromSecret ? await this.secrets.read(this.spec.credentialsFromSecret) : {}
    const id = createHash('sha256').update(JSON.stringify([data, this.spec])).digest('hex')
    if (this.client && this.clientFor === id) return this.client
    const opts: IOptions = {
      hosts: this.spec.endpoints,
      dialTimeout: this.spec.timeoutSeconds * 1000,
      defaultCallOptions: () => ({ deadline: Date.now() + this.spec.timeoutSeconds * 1000 }),
    }
    const cert = data[ETCD_SECRET_KEYS.cert]
    const key = data[ETCD_SECRET_KEYS.key]
    if ((cert === undefined) !== (key === undefined)) {
      throw new SecretError(`Secret ${this.spec.credentialsFromSecret} must hold both ${ETCD_SECRET_KEYS.cert} and ${ETCD_SECRET_KEYS.key}, or neither`, false)
    }
    if (this.spec.endpoints[0]!.startsWith('https:') && (this.spec.caBundle || cert)) {
      opts.credentials = {
        rootCertificate: Buffer.from(this.spec.caBundle || rootCertificates.join('\n')),
        ...(cert && key ? { certChain: Buffer.from(cert), privateKey: Buffer.from(key) } : {}),
      }
    }
    const user = data[ETCD_SECRET_KEYS.username]
    if (user !== undefined) opts.auth = { username: user.trim(), password: (data[ETCD_SECRET_KEYS.password] ?? '').trim() }
    const old = this.client
    this.client = new Etcd3(opts)
    this.clientFor = id
    old?.close()
    return this.client
  }
}
