// A durable key-value store in ConfigMaps of enlist's namespace, sharded by key hash so
// that each object stays far below the 1 MiB object limit: the amqp backend's ledger and the
// relay's tombstones. Writes to one shard from one process are batched (group commit: one
// read-modify-write carries every change queued meanwhile); writes from several processes
// (every enlist replica serves registrations) are serialised by the apiserver through the
// object's resourceVersion: a conflict re-reads and re-applies, never loses a change.

import { createHash } from 'node:crypto'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { type KubeClient, KubeApiError } from '../../kube/client.js'
import { Backoff, sleep } from '../../lib/backoff.js'
import type { ErrorCode } from '../../lib/errors.js'

export interface ConfigMapStoreOptions {
  client: KubeClient
  namespace: string
  /** Shard names are `<prefix>-00` .. `<prefix>-<shards-1>`. */
  prefix: string
  shards: number
  /** Keys are stored as `<keyPrefix><key>`, so several stores can share the shards. */
  keyPrefix: string
  /** Labels on every shard (what the store is, for humans and RBAC audits). */
  labels: Record<string, string>
  /** A shard never grows past this many bytes of data (the object limit is 1 MiB). */
  maxShardBytes?: number
  timeoutMs?: number
}

/** A write was refused because its shard is full: a configuration problem (too many entries). */
export class StoreFullError extends Error {
  readonly code = 'ENLIST_LEDGER_FULL' satisfies ErrorCode
}

interface Pending {
  changes: Map<string, string | undefined>
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>
}

/** The shard of a key: stable across versions and processes (it must be), and spread evenly
 *  whatever the keys look like (the low bits of FNV-style hashes are not). */
export function shardHash(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0)
}

const KEY = /^[-._a-zA-Z0-9]+$/

export class ConfigMapStore {
  private readonly pending = new Map<number, Pending>()
  /** The last version of each shard this process read or wrote: a write starts from it and
   *  reads again only on a conflict, saving a GET of the shard per write. */
  private readonly known = new Map<number, V1ConfigMap>()
  private readonly writing = new Set<number>()
  private readonly maxBytes: number

  constructor(private readonly o: ConfigMapStoreOptions) {
    this.maxBytes = o.maxShardBytes ?? 900 * 1024
  }

  shardName(i: number): string {
    return `${this.o.prefix}-${String(i).padStart(2, '0')}`
  }

  shardOf(key: string): number {
    return shardHash(key) % this.o.shards
  }

  async get(key: string): Promise<string | undefined> {
    const cm = await this.read(this.shardOf(key))
    return cm?.data?.[this.o.keyPrefix + key]
  }

  /** Sets (or with undefined, removes) a key; resolves once the apiserver stored it. */
  set(key: string, value: string | undefined): Promise<void> {
    if (!KEY.test(this.o.keyPrefix + key)) return Promise.reject(new Error(`"${key}" cannot be a ConfigMap key`))
    const shard = this.shardOf(key)
    let p = this.pending.get(shard)
    if (!p) {
      p = { changes: new Map(), waiters: [] }
      this.pending.set(shard, p)
    }
    p.changes.set(this.o.keyPrefix + key, value)
    const done = new Promise<void>((resolve, reject) => p.waiters.push({ resolve, reject }))
    if (!this.writing.has(shard)) void this.drain(shard)
    return done
  }

  /** Every key and value of this store, reading the shards a few at a time. */
  async entries(): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = []
    const next = { i: 0 }
    const worker = async (): Promise<void> => {
      while (next.i < this.o.shards) {
        const cm = await this.read(next.i++)
        for (const [k, v] of Object.entries(cm?.data ?? {})) if (k.startsWith(this.o.keyPrefix)) out.push([k.slice(this.o.keyPrefix.length), v])
      }
    }
    await Promise.all(Array.from({ length: Math.min(8, this.o.shards) }, worker))
    return out
  }

  /** The keys and values of one shard. */
  async shardEntries(shard: number): Promise<Array<[string, string]>> {
    const cm = await this.read(shard)
    return Object.entries(cm?.data ?? {})
      .filter(([k]) => k.startsWith(this.o.keyPrefix))
      .map(([k, v]) => [k.slice(this.o.keyPrefix.length), v])
  }

  private path(name?: string): string {
    const base = `/api/v1/namespaces/${encodeURIComponent(this.o.namespace)}/configmaps`
    return name ? `${base}/${encodeURIComponent(name)}` : base
  }

  private async read(shard: number): Promise<V1ConfigMap | undefined> {
    try {
      const cm = await this.o.client.get<V1ConfigMap>(this.path(this.shardName(shard)))
      this.known.set(shard, cm)
      return cm
    } catch (err) {
      if (err instanceof KubeApiError && err.notFound) {
        this.known.delete(shard)
        return undefined
      }
      throw err
    }
  }

  private async drain(shard: number): Promise<void> {
    this.writing.add(shard)
    try {
      for (;;) {
        const batch = this.pending.get(shard)
        if (!batch) return
        this.pending.delete(shard)
        try {
          await this.commit(shard, batch.changes)
          for (const w of batch.waiters) w.resolve()
        } catch (err) {
          for (const w of batch.waiters) w.reject(err)
        }
      }
    } finally {
      this.writing.delete(shard)
    }
  }

  private async commit(shard: number, changes: Map<string, string | undefined>): Promise<void> {
    const backoff = new Backoff({ initialMs: 20, maxMs: 1000 })
    const name = this.shardName(shard)
    let fresh = !this.known.has(shard)
    let cm = this.known.get(shard) ?? (await this.read(shard))
    for (let attempt = 1; ; attempt++) {
      const data: Record<string, string> = { ...(cm?.data ?? {}) }
      let changed = false
      for (const [k, v] of changes) {
        if (v === undefined) {
          if (k in data) {
            delete data[k]
            changed = true
          }
        } else if (data[k] !== v) {
          data[k] = v
          changed = true
        }
      }
      if (!changed) {
        // Unchanged against a version held from before: it may be stale; read before concluding.
        if (fresh) return
        cm = await this.read(shard)
        fresh = true
        continue
      }
      const bytes = Object.entries(data).reduce((n, [k, v]) => n + k.length + Buffer.byteLength(v), 0)
      if (bytes > this.maxBytes && [...changes.values()].some((v) => v !== undefined)) {
        throw new StoreFullError(`ConfigMap ${this.o.namespace}/${name} would hold ${bytes} bytes, over ${this.maxBytes}: the ledger is full (see docs/events.md, capacity)`)
      }
      try {
        const written = cm
          ? await this.o.client.replace<V1ConfigMap>(this.path(name), { ...cm, data })
          : await this.o.client.create<V1ConfigMap>(this.path(), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: this.o.namespace, labels: this.o.labels }, data })
        this.known.set(shard, written)
        return
      } catch (err) {
        // Another replica wrote first (409 on update, or on a create racing a create), or the
        // shard we knew is gone: read it again and re-apply.
        const stale = err instanceof KubeApiError && (err.conflict || (err.notFound && cm !== undefined))
        if (!stale || attempt >= 20) throw err
        await sleep(backoff.next())
        cm = await this.read(shard)
        fresh = true
      }
    }
  }
}
