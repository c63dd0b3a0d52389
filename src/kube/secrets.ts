// Secrets in enlist's own namespace (backend credentials, CA bundles), read on demand and
// cached briefly, so a rotated credential is picked up within the TTL without a watch on
// Secrets (the Role names each one). Errors say what to fix, never what the Secret holds.

import type { V1Secret } from '@kubernetes/client-node'
import { type KubeClient, KubeApiError } from './client.js'
import type { ErrorCode } from '../lib/errors.js'

export class SecretError extends Error {
  readonly code = 'ENLIST_SECRET_UNAVAILABLE' satisfies ErrorCode
  constructor(
    message: string,
    /** A retry may help (the apiserver was unreachable), or not (missing, forbidden). */
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'SecretError'
  }
}

export class SecretReader {
  private readonly cache = new Map<string, { at: number; data: Readonly<Record<string, string>> }>()

  constructor(
    private readonly client: KubeClient,
    readonly namespace: string,
    private readonly ttlMs = 30_000,
  ) {}

  /** The Secret's keys and their values as UTF-8 text. */
  async read(name: string): Promise<Readonly<Record<string, string>>> {
    const hit = this.cache.get(name)
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.data
    let secret: V1Secret
    try {
      secret = await this.client.get<V1Secret>(`/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets/${encodeURIComponent(name)}`)
    } catch (err) {
      if (err instanceof KubeApiError && err.notFound) throw new SecretError(`Secret ${this.namespace}/${name} not found`, false, { cause: err })
      if (err instanceof KubeApiError && err.status === 403) {
        throw new SecretError(`Secret ${this.namespace}/${name} is forbidden: add its name to the enlist Role`, false, { cause: err })
      }
      throw new SecretError(`cannot read Secret ${this.namespace}/${name}: ${(err as Error).message}`, true, { cause: err })
    }
    const data: Record<string, string> = Object.create(null) as Record<string, string>
    for (const [k, v] of Object.entries(secret.data ?? {})) data[k] = Buffer.from(v, 'base64').toString('utf8')
    for (const [k, v] of Object.entries(secret.stringData ?? {})) data[k] = v
    const frozen = Object.freeze(data)
    this.cache.set(name, { at: Date.now(), data: frozen })
    return frozen
  }

  /** One key of a Secret; a missing key is a configuration error naming the key. */
  async key(name: string, key: string): Promise<string> {
    const data = await this.read(name)
    const v = data[key]
    if (v === undefined) throw new SecretError(`Secret ${this.namespace}/${name} has no key "${key}"`, false)
    return v
  }
}
