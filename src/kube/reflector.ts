// List+watch into an in-memory store, as client-go's reflector does: list, then watch
// from the list's resourceVersion with bookmarks; on 410 Gone relist; on any other
// failure back off and resume. Handlers see level changes (add/update/delete) only.

import type { KubernetesObject } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import { type KubeClient, KubeApiError } from './client.js'

export interface ReflectorOptions<T extends KubernetesObject> {
  client: KubeClient
  /** Collection path, e.g. /api/v1/namespaces or /api/v1/pods. */
  path: string
  name: string
  log: Logger
  labelSelector?: string
  fieldSelector?: string
  /** Slims objects before they are stored (memory, and copies on the hot path). */
  transform?: (obj: T) => T
  /** Objects per list page (default 500, as client-go). */
  pageSize?: number
}

export interface ReflectorHandlers<T> {
  add?: (obj: T) => void
  update?: (obj: T, old: T) => void
  delete?: (obj: T) => void
}

interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  object: T & { code?: number; message?: string; reason?: string }
}

const PAGE_SIZE = 500

export function objectKey(obj: KubernetesObject): string {
  const m = obj.metadata
  return m?.namespace ? `${m.namespace}/${m.name ?? ''}` : (m?.name ?? '')
}

export class Reflector<T extends KubernetesObject> {
  private readonly store = new Map<string, T>()
  private readonly handlers: Array<ReflectorHandlers<T>> = []
  private readonly abort = new AbortController()
  private resourceVersion = ''
  private syncedFlag = false
  private syncWaiters: Array<() => void> = []
  private loop: Promise<void> | undefined
  private lastError: string | undefined

  constructor(private readonly opts: ReflectorOptions<T>) {}

  on(handlers: ReflectorHandlers<T>): void {
    this.handlers.push(handlers)
  }

  get synced(): boolean {
    return this.syncedFlag
  }

  /** Why the last list or watch failed, for readiness messages. */
  get error(): string | undefined {
    return this.lastError
  }

  get(key: string): T | undefined {
    return this.store.get(key)
  }

  list(): IterableIterator<T> {
    return this.store.values()
  }

  get size(): number {
    return this.store.size
  }

  start(): void {
    this.loop ??= this.run()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
  }

  /** Resolves once the first list has been stored (or the reflector stops). */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.syncedFlag) return Promise.resolve(true)
    // an abort that already happened fires no listener
    if (this.abort.signal.aborted || signal?.aborted) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (): void => resolve(this.syncedFlag)
      this.syncWaiters.push(done)
      signal?.addEventListener('abort', done, { once: true })
      this.abort.signal.addEventListener('abort', done, { once: true })
    })
  }

  private async run(): Promise<void> {
    const { log, name } = this.opts
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000 })
    let needList = true
    while (!this.abort.signal.aborted) {
      try {
        if (needList) {
          await this.relist()
          needList = false
        }
        await this.watchOnce()
        backoff.reset()
      } catch (err) {
        if (this.abort.signal.aborted) break
        if (err instanceof KubeApiError && err.gone) {
          log.debug({ reflector: name }, 'resourceVersion too old; relisting')
          needList = true
          continue
        }
        this.lastError = errorMessage(err)
        const delay = backoff.next()
        log.warn({ reflector: name, err: this.lastError, retryInMs: Math.round(delay) }, 'list/watch failed; retrying')
        await sleep(delay, this.abort.signal)
      }
    }
  }

  private async relist(): Promise<void> {
    const { client, path, labelSelector, fieldSelector, transform } = this.opts
    // In pages, as client-go does: a list of thousands of objects never sits in memory whole.
    // The pages of one list share one consistent snapshot, and its resourceVersion.
    const seen = new Set<string>()
    let cont: string | undefined
    let rv = ''
    do {
      const page = await client.get<{ metadata?: { resourceVersion?: string; continue?: string }; items?: T[] }>(path, {
        labelSelector,
        fieldSelector,
        limit: this.opts.pageSize ?? PAGE_SIZE,
        continue: cont,
      })
      for (const raw of page.items ?? []) {
        const obj = transform ? transform(raw) : raw
        const key = objectKey(obj)
        seen.add(key)
        this.upsert(key, obj)
      }
      rv = page.metadata?.resourceVersion ?? rv
      cont = page.metadata?.continue || undefined
    } while (cont)
    for (const [key, old] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key)
        this.emit('delete', old)
      }
    }
    this.resourceVersion = rv
    this.lastError = undefined
    if (!this.syncedFlag) {
      this.syncedFlag = true
      for (const w of this.syncWaiters) w()
      this.syncWaiters = []
    }
  }

  private async watchOnce(): Promise<void> {
    const { client, path, labelSelector, fieldSelector, transform } = this.opts
    // Spread the servers' watch renewals, as client-go does (5-10 minutes).
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300)
    await client.watch(
      path,
      { labelSelector, fieldSelector, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      (raw) => {
        const ev = raw as WatchEvent<T>
        if (ev.type === 'ERROR') {
          const code = ev.object.code ?? 500
          throw new KubeApiError(code, ev.object.reason ?? 'WatchError', ev.object.message ?? 'watch error', 'WATCH', path)
        }
        const rv = ev.object.metadata?.resourceVersion
        if (rv) this.resourceVersion = rv
        if (ev.type === 'BOOKMARK') return
        const obj = transform ? transform(ev.object) : ev.object
        const key = objectKey(obj)
        if (ev.type === 'DELETED') {
          const old = this.store.get(key)
          this.store.delete(key)
          this.emit('delete', old ?? obj)
        } else {
          this.upsert(key, obj)
        }
      },
      this.abort.signal,
    )
  }

  private upsert(key: string, obj: T): void {
    const old = this.store.get(key)
    this.store.set(key, obj)
    if (!old) this.emit('add', obj)
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old)
  }

  private emit(kind: 'add' | 'delete', obj: T): void
  private emit(kind: 'update', obj: T, old: T): void
  private emit(kind: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        if (kind === 'add') h.add?.(obj)
        else if (kind === 'update') h.update?.(obj, old!)
        else h.delete?.(obj)
      } catch (err) {
        this.opts.log.error({ reflector: this.opts.name, err: errorMessage(err) }, 'event handler failed')
      }
    }
  }
}
