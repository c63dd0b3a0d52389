// etcd v3: the record as JSON at `<prefix><namespace>/<service>/<pod uid>`. Plain keys, no
// lease: the entries are enlist's (persistent, owned by the controller, swept against live
// pods), so an enlist restart or a lost connection deregisters nothing.

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
import { SecretError, type SecretReader } from '../kube/secrets.js'
import { errorMessage } from '../lib/errors.js'
import type { EtcdBackendSpec } from '../policy/policy.js'
import { type Backend, BackendError, type BackendOp } from './backend.js'
import { type PodRef, podRef } from '../kube/pod-ref.js'
import type { ListedEntry } from './ownership.js'
import type { RegistryRecord } from './record.js'

/** Keys a credentials Secret may hold (all optional). */
export const ETCD_SECRET_KEYS = { username: 'username', password: 'password', cert: 'tls.crt', key: 'tls.key' } as const

interface Known {
  key: string
  ref: PodRef
}

export class EtcdBackend implements Backend {
  readonly type = 'etcd'
  readonly name: string
  private client: Etcd3 | undefined
  private clientFor = ''
  private lastError: string | undefined
  /** uid -> its key and pod: immutable facts, so the sweep reads values only for new keys. */
  private readonly known = new Map<string, Known>()

  constructor(
    private readonly spec: EtcdBackendSpec,
    private readonly secrets: SecretReader,
  ) {
    this.name = spec.name
  }

  keyOf(r: { namespace: string; service: string; uid: string }): string {
    return `${this.spec.prefix}${r.namespace}/${r.service}/${r.uid}`
  }

  async register(record: RegistryRecord): Promise<void> {
    const key = this.keyOf(record)
    await this.call('register', (c) => c.put(key).value(JSON.stringify(record)).exec())
    this.known.set(record.uid, { key, ref: podRef(record) })
  }

  async deregister(ref: PodRef): Promise<void> {
    const keys = await this.call('deregister', async (c) => {
      const known = this.known.get(ref.uid)
      if (known) return [known.key]
      // Not seen by this replica: the uid's key is somewhere under its namespace.
      const all = await c.getAll().prefix(`${this.spec.prefix}${ref.namespace}/`).keys()
      return all.filter((k) => k.endsWith(`/${ref.uid}`))
    })
    for (const key of keys) await this.call('deregister', (c) => c.delete().key(key).exec())
    this.known.delete(ref.uid)
  }

  async list(): Promise<ListedEntry[]> {
    const keys = await this.call('list', (c) => c.getAll().prefix(this.spec.prefix).keys())
    const seen = new Set<string>()
    const unknown: string[] = []
    for (const key of keys) {
      const parts = key.slice(this.spec.prefix.length).split('/')
      // Keys of another shape under the prefix are not enlist's records: leave them.
      if (parts.length !== 3 || parts.some((p) => p === '')) continue
      const uid = parts[2]!
      seen.add(uid)
      if (this.known.get(uid)?.key !== key) unknown.push(key)
    }
    for (let i = 0; i < unknown.length; i += 32) {
      const batch = unknown.slice(i, i + 32)
      const values = await this.call('list', (c) => Promise.all(batch.map((k) => c.get(k).string())))
      batch.forEach((key, j) => {
        const uid = key.slice(key.lastIndexOf('/') + 1)
        const ns = key.slice(this.spec.prefix.length).split('/')[0]!
        let pod = ''
        try {
          pod = (JSON.parse(values[j] ?? '{}') as Partial<RegistryRecord>).pod ?? ''
        } catch {
          // an unreadable value is still an entry to clean up, by uid
        }
        this.known.set(uid, { key, ref: { uid, namespace: ns, pod } })
      })
    }
    for (const uid of this.known.keys()) if (!seen.has(uid)) this.known.delete(uid)
    return [...this.known.values()].map((k) => ({ ...k.ref, cluster: undefined }))
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
