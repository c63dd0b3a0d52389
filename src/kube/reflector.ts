// List+watch into an in-memory store, with client-go's reflector's behaviour under faults:
//
// * list in pages whose size adapts to the objects': the next page asks for as many objects
//   as make about PAGE_TARGET_BYTES at the bytes per object of the last page (the apiserver
//   has only `limit`), never more than pageSize, at least one. A page that still passes
//   PAGE_MAX_BYTES (the objects grew from one page to the next: a tenant's huge pods after
//   small ones) is cut unread and asked again, same continue token, for a quarter as many;
//   so no page passes the client's answer cap, and a page's heap peak stays bounded;
// * a continue token that expired (410: etcd compacted the list's snapshot
//   away mid-list) starts the list over at once from its first page, a new snapshot. Here
//   enlist parts from client-go, whose pager falls back to one unpaged list: at bank size
//   that is a body of a gigabyte, which a bounded heap cannot hold and the apiserver pays
//   for in full. A second expiry in a row is a failure, and backs off;
// * watch from the list's resourceVersion with bookmarks; a watch that ends normally is
//   resumed at once from the last resourceVersion seen, without a relist;
// * a watch that ends within a second having delivered nothing, a 410, or any other
//   failure waits out a jittered exponential backoff (0.8 s doubling to 30 s, delays in
//   [d, 2d)) and then relists; a 429 or a refused connection backs off and rewatches;
//   Retry-After, when sent, is waited at least;
// * the backoff starts over only after two minutes without a failure, so a fault that
//   recurs keeps its pace however the watches in between end.
//
// Handlers see level changes (add/update/delete) only. An object replaced at the same key
// by another with a different uid (a pod deleted and re-created under its name while the
// watch was down) is a delete of the old and an add of the new, never an update.

import type { KubernetesObject } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { BackoffManager, type Clock, realClock } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import { type CallOptions, type KubeMetrics, KubeApiError, type Query } from './client.js'

/** What a reflector needs of a client (KubeClient; fakes in tests). */
export interface ListWatchClient {
  get<T>(path: string, query?: Query, opts?: CallOptions): Promise<T>
  watch(path: string, query: Query, onEvent: (event: unknown) => void, signal: AbortSignal, onOpen?: () => void): Promise<void>
  readonly metrics?: KubeMetrics
}

/** What a stored object must have: a name (and namespace) to key it, and a version and
 *  uid to tell changes and replacements. KubernetesObjects have them; so do slim views. */
export interface Keyed {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string }
}

export interface ReflectorOptions<T extends KubernetesObject, S extends Keyed = T> {
  client: ListWatchClient
  /** Collection path, e.g. /api/v1/namespaces or /api/v1/pods. */
  path: string
  name: string
  log: Logger
  labelSelector?: string
  fieldSelector?: string
  /** Slims objects before they are stored (memory, and copies on the hot path). */
  transform?: (obj: T) => S
  /** Objects per list page at most (default 500, as client-go). */
  pageSize?: number
  /** Bytes a list page aims at (default PAGE_TARGET_BYTES). */
  pageTargetBytes?: number
  /** Bytes past which a page of more than one object is cut and asked again smaller
   *  (default PAGE_MAX_BYTES). */
  pageMaxBytes?: number
  /** Time, for tests (default: the real clock). */
  clock?: Clock
  /** Backoff between failed list/watch attempts (client-go's values by default). */
  backoff?: { initialMs: number; maxMs: number; resetAfterMs: number }
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

interface ListPage<T> {
  metadata?: { resourceVersion?: string; continue?: string }
  items?: T[]
}

const PAGE_SIZE = 500
/** A page's aim: a few MiB, a small part of the answer cap (64 MiB) and of the heap. */
export const PAGE_TARGET_BYTES = 4 * 1024 * 1024
/** A page of more objects than one is cut past this (a quarter of the answer cap). */
export const PAGE_MAX_BYTES = 16 * 1024 * 1024
// client-go: "backoff will stop at [30,60) sec interval which is 0.22 QPS. If we don't
// backoff for 2min, assume API server is healthy and we reset the backoff."
const BACKOFF = { initialMs: 800, maxMs: 30_000, resetAfterMs: 120_000 }
// A watch shorter than this that delivered nothing is a failure (client-go's "very short watch").
const SHORT_WATCH_MS = 1000
// Retry-After beyond this is not honoured in full: the cache would stay stale too long.
const MAX_RETRY_AFTER_MS = 60_000
// Watches spread their renewals over 5 to 10 minutes, as client-go's do.
const MIN_WATCH_TIMEOUT_S = 300

export function objectKey(obj: Keyed): string {
  const m = obj.metadata
  return m?.namespace ? `${m.namespace}/${m.name ?? ''}` : (m?.name ?? '')
}

/** Why a list/watch cycle ended, for the log and enlist_reflector_failures_total. */
type FailureReason = 'expired' | 'throttled' | 'refused' | 'short_watch' | 'error'

class ShortWatch extends Error {
  constructor() {
    super('the watch ended within a second having delivered nothing')
    this.name = 'ShortWatch'
  }
}

/** Lists and watches objects T, and stores them as S (T itself unless a transform slims them). */
export class Reflector<T extends KubernetesObject, S extends Keyed = T> {
  private readonly store = new Map<string, S>()
  private readonly handlers: Array<ReflectorHandlers<S>> = []
  private readonly abort = new AbortController()
  private readonly clock: Clock
  private readonly backoff: BackoffManager
  private resourceVersion = ''
  private syncedFlag = false
  private syncWaiters: Array<() => void> = []
  private loop: Promise<void> | undefined
  private lastError: string | undefined
  private watchAbort: AbortController | undefined
  private relistWanted = false
  /** Objects received by lists so far (the first list's progress, for readiness). */
  listed = 0
  /** Objects the next list page asks for: adapted to the bytes per object of the last page. */
  private pageLimit: number

  constructor(private readonly opts: ReflectorOptions<T, S>) {
    this.clock = opts.clock ?? realClock
    this.backoff = new BackoffManager({ ...(opts.backoff ?? BACKOFF), jitter: 1, now: () => this.clock.now() })
    this.pageLimit = this.maxPage
  }

  private get maxPage(): number {
    return Math.max(1, this.opts.pageSize ?? PAGE_SIZE)
  }

  /**
   * Stores `raw` in place of `expected` (read again from the apiserver: a seal whose key has
   * arrived), unless the watch has replaced `expected` meanwhile. Emits as a watch event would.
   */
  refresh(expected: S, raw: T): void {
    const obj = this.slim(raw)
    const key = objectKey(obj)
    if (this.store.get(key) !== expected) return
    this.upsert(key, obj)
  }

  /**
   * Lists again now (what the transform keeps has changed): the watch in progress ends, and
   * a fresh list replaces every stored object, emitting updates for those that changed.
   */
  relistNow(): void {
    if (!this.loop) return
    this.relistWanted = true
    this.watchAbort?.abort()
  }

  on(handlers: ReflectorHandlers<S>): void {
    this.handlers.push(handlers)
  }

  get synced(): boolean {
    return this.syncedFlag
  }

  /** Why the last list or watch failed, for readiness messages. */
  get error(): string | undefined {
    return this.lastError
  }

  get(key: string): S | undefined {
    return this.store.get(key)
  }

  list(): IterableIterator<S> {
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

  private get metrics(): KubeMetrics | undefined {
    return this.opts.client.metrics
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal
    while (!signal.aborted) {
      try {
        await this.listAndWatch()
      } catch (err) {
        if (signal.aborted) break
        await this.backOff(err)
      }
    }
    this.metrics?.reflectorBackoff.set({ reflector: this.opts.name }, 0)
  }

  /** Lists, then watches until a watch fails in a way that needs a relist (thrown), or a
   *  relist is asked for (returns). */
  private async listAndWatch(): Promise<void> {
    const signal = this.abort.signal
    this.relistWanted = false
    await this.relist()
    while (!signal.aborted) {
      const started = this.clock.now()
      let events = 0
      const watch = new AbortController()
      this.watchAbort = watch
      const onStop = (): void => watch.abort()
      signal.addEventListener('abort', onStop, { once: true })
      try {
        await this.watchOnce(() => events++, watch.signal)
      } catch (err) {
        if (signal.aborted || this.relistWanted) return
        // the apiserver is there but busy, or not listening yet: the resourceVersion is
        // still good, so back off and watch again without relisting
        if (err instanceof KubeApiError && (err.tooManyRequests || err.connectionRefused)) {
          await this.backOff(err)
          continue
        }
        throw err
      } finally {
        signal.removeEventListener('abort', onStop)
        this.watchAbort = undefined
      }
      if (signal.aborted || this.relistWanted) return
      if (events === 0 && this.clock.now() - started < SHORT_WATCH_MS) throw new ShortWatch()
      // a watch that lasted or delivered ended normally: resume from where it was
    }
  }

  private async backOff(err: unknown): Promise<void> {
    const { log, name } = this.opts
    const reason = failureReason(err)
    const retryAfter = err instanceof KubeApiError && err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, MAX_RETRY_AFTER_MS) : 0
    const delay = Math.max(this.backoff.next(), retryAfter)
    this.lastError = errorMessage(err)
    this.metrics?.reflectorFailures.inc({ reflector: name, reason })
    this.metrics?.reflectorBackoff.set({ reflector: name }, delay / 1000)
    const line = { reflector: name, reason, err: this.lastError, retryInMs: Math.round(delay) }
    // a 410 is routine (the watch fell behind compaction); the rest is worth a warning
    if (reason === 'expired') log.info(line, 'resourceVersion too old; relisting after a backoff')
    else log.warn(line, 'list/watch failed; retrying after a backoff')
    await this.clock.sleep(delay, this.abort.signal)
  }

  private async relist(): Promise<void> {
    const { name, log } = this.opts
    // Objects go into the store page by page (a list of thousands never sits in memory
    // twice); what the list did not return is deleted at the end.
    let seen = new Set<string>()
    let rv: string
    try {
      rv = await this.listPaged(seen)
    } catch (err) {
      // compactions are minutes apart, so a list started over right away gets through
      if (!(err instanceof ContinueExpired)) throw err
      log.info({ reflector: name, pages: err.pages }, 'list continue token expired; listing again from the first page')
      seen = new Set()
      rv = await this.listPaged(seen)
    }
    for (const [key, old] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key)
        this.emit('delete', old)
      }
    }
    this.resourceVersion = rv
    this.lastError = undefined
    this.metrics?.reflectorLists.inc({ reflector: name })
    this.metrics?.reflectorBackoff.set({ reflector: name }, 0)
    if (!this.syncedFlag) {
      this.syncedFlag = true
      for (const w of this.syncWaiters) w()
      this.syncWaiters = []
    }
  }

  private async listPaged(seen: Set<string>): Promise<string> {
    const { client, path, labelSelector, fieldSelector, log, name } = this.opts
    const target = this.opts.pageTargetBytes ?? PAGE_TARGET_BYTES
    const cut = this.opts.pageMaxBytes ?? PAGE_MAX_BYTES
    // The pages of one list share one consistent snapshot, and its resourceVersion.
    let cont: string | undefined
    let rv = ''
    let pages = 0
    do {
      let page: ListPage<T> | undefined
      let bytes = 0
      let limit = this.pageLimit
      while (!page) {
        try {
          // one object is read whatever its size, up to the client's own cap
          const opts: CallOptions = { signal: this.abort.signal, onBytes: (n) => (bytes = n), ...(limit > 1 ? { maxBytes: cut } : {}) }
          page = await client.get<ListPage<T>>(path, { labelSelector, fieldSelector, limit, continue: cont }, opts)
        } catch (err) {
          if (err instanceof KubeApiError && err.tooLarge && limit > 1) {
            // the same continue token: the snapshot and the place in it stay the same
            log.info({ reflector: name, limit, maxBytes: cut }, 'a list page passed its size cap; asking again for fewer objects')
            limit = Math.max(1, Math.floor(limit / 4))
            continue
          }
          if (cont !== undefined && err instanceof KubeApiError && err.gone) throw new ContinueExpired(pages)
          throw err
        }
      }
      pages++
      const items = page.items ?? []
      if (items.length > 0 && bytes > 0) this.pageLimit = Math.min(this.maxPage, Math.max(1, Math.floor((target * items.length) / bytes)))
      this.storeAll(items, seen)
      rv = page.metadata?.resourceVersion ?? rv
      cont = page.metadata?.continue || undefined
    } while (cont)
    return rv
  }

  private slim(raw: T): S {
    return this.opts.transform ? this.opts.transform(raw) : (raw as unknown as S)
  }

  private storeAll(items: readonly T[], seen: Set<string>): void {
    for (const raw of items) {
      const obj = this.slim(raw)
      this.listed++
      const key = objectKey(obj)
      seen.add(key)
      this.upsert(key, obj)
    }
  }

  private async watchOnce(delivered: () => void, signal: AbortSignal): Promise<void> {
    const { client, path, labelSelector, fieldSelector } = this.opts
    const timeoutSeconds = MIN_WATCH_TIMEOUT_S + Math.floor(Math.random() * MIN_WATCH_TIMEOUT_S)
    await client.watch(
      path,
      { labelSelector, fieldSelector, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      (raw) => {
        const ev = raw as WatchEvent<T>
        if (ev.type === 'ERROR') {
          const code = ev.object.code ?? 500
          throw new KubeApiError(code, ev.object.reason ?? 'WatchError', ev.object.message ?? 'watch error', 'WATCH', path)
        }
        delivered()
        const rv = ev.object.metadata?.resourceVersion
        if (rv) this.resourceVersion = rv
        if (ev.type === 'BOOKMARK') return
        const obj = this.slim(ev.object)
        const key = objectKey(obj)
        if (ev.type === 'DELETED') {
          const old = this.store.get(key)
          this.store.delete(key)
          this.emit('delete', old ?? obj)
        } else {
          this.upsert(key, obj)
        }
      },
      signal,
      // accepted: whatever it waited out before, this reflector is not backing off now
      () => this.metrics?.reflectorBackoff.set({ reflector: this.opts.name }, 0),
    )
  }

  private upsert(key: string, obj: S): void {
    const old = this.store.get(key)
    this.store.set(key, obj)
    if (!old) this.emit('add', obj)
    else if (old.metadata?.uid !== undefined && obj.metadata?.uid !== undefined && old.metadata.uid !== obj.metadata.uid) {
      // another object under the same name: the old one is gone
      this.emit('delete', old)
      this.emit('add', obj)
    } else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old)
  }

  private emit(kind: 'add' | 'delete', obj: S): void
  private emit(kind: 'update', obj: S, old: S): void
  private emit(kind: 'add' | 'update' | 'delete', obj: S, old?: S): void {
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

class ContinueExpired extends Error {
  constructor(readonly pages: number) {
    super('the list continue token expired')
  }
}

function failureReason(err: unknown): FailureReason {
  if (err instanceof ShortWatch) return 'short_watch'
  if (err instanceof ContinueExpired) return 'expired'
  if (err instanceof KubeApiError) {
    if (err.gone) return 'expired'
    if (err.tooManyRequests) return 'throttled'
    if (err.connectionRefused) return 'refused'
  }
  return 'error'
}
