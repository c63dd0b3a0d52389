// An in-memory apiserver for unit tests of classes that talk to one: the KubeClient methods
// RegistrationService, RegistryController, ManagedPods, KeyStore, EventRecorder,
// TokenAuthenticator and LeaderElector call (get, list, watch, create, replace, patch,
// delete), over an object store keyed by the object's API path. What it does as the
// apiserver does: every write bumps one resourceVersion counter; a replace whose
// resourceVersion is stale, or a patch whose metadata.uid precondition names another object,
// is a 409; a missing object is a 404, as KubeApiError (the type the real client throws); a
// list carries a resourceVersion a watch resumes from; watches replay what happened since it.
//
// What it does not: field validation, defaulting, admission, generateName, and strategic
// merge beyond what enlist sends (lists merge by key only for `conditions`, by `type`).
//
// Failures: `fail(match, error, times)` makes the next matching calls throw; `calls` logs
// every call. TokenReviews are answered from `tokens` (a token bound to a pod).

import { isDeepStrictEqual } from 'node:util'
import type { V1Pod } from '@kubernetes/client-node'
import type { CallOptions, KubeClient, Query } from '../../src/kube/client.js'
import { KubeApiError, PatchType } from '../../src/kube/client.js'
import type { ListWatchClient } from '../../src/kube/reflector.js'
import { AbortedError } from '../../src/lib/errors.js'
import { TOKEN_AUDIENCE, TOKEN_REVIEW_POD_NAME, TOKEN_REVIEW_POD_UID } from '../../src/names.js'

type Obj = Record<string, unknown> & { metadata?: Record<string, unknown> }
export type Verb = 'GET' | 'LIST' | 'WATCH' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

export interface Call {
  verb: Verb
  path: string
  body?: unknown
  patchType?: string
}

/** Which calls a failure applies to: a verb, a path (exact, or a pattern), or both. */
export interface CallMatch {
  verb?: Verb
  path?: string | RegExp
}

interface Failure {
  match: CallMatch
  error: () => Error
  times: number
}

interface Where {
  /** The object's path, subresource stripped: its key in the store. */
  key: string
  /** The collection's path (/api/v1/namespaces/ns/pods), for lists and creates. */
  collection: string
  resource: string
  namespace?: string
  name?: string
  subresource?: string
}

interface StoredEvent {
  rv: number
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  key: string
  resource: string
  object: Obj
}

interface Watcher {
  resource: string
  namespace?: string
  selector: (o: Obj) => boolean
  onEvent: (e: unknown) => void
  /** Keys the watcher has been sent as present (a label change out of its selector is DELETED). */
  present: Set<string>
}

/** The identity a projected token is bound to. */
export interface BoundToken {
  namespace: string
  serviceAccount: string
  pod: string
  uid: string
}

/** A JWT-shaped token for audience enlist, valid for an hour: it passes the precheck; only
 *  the fake's TokenReview decides what it is. */
export function fakeToken(subject: string): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${part({ alg: 'RS256' })}.${part({ aud: [TOKEN_AUDIENCE], exp: Math.floor(Date.now() / 1000) + 3600, sub: subject })}.c2ln`
}

export class FakeKube implements ListWatchClient {
  readonly metrics = undefined
  readonly objects = new Map<string, Obj>()
  readonly calls: Call[] = []
  /** token -> what TokenReview says it is bound to; absent: not authenticated. */
  readonly tokens = new Map<string, BoundToken>()
  rv = 1
  private readonly history: StoredEvent[] = []
  private readonly watchers = new Set<Watcher>()
  private failures: Failure[] = []
  private uids = 0

  /** This fake as the client type the classes under test take (KubeClient has private fields). */
  get client(): KubeClient {
    return this as unknown as KubeClient
  }

  /** The next `times` calls matching `match` throw `error` (a KubeApiError by default status). */
  fail(match: CallMatch, error: number | (() => Error), times = 1): void {
    const make = typeof error === 'number' ? () => new KubeApiError(error, reasonOf(error), 'injected failure', match.verb ?? 'GET', String(match.path ?? '')) : error
    this.failures.push({ match, error: make, times })
  }

  /** Drops every injected failure not yet used. */
  heal(): void {
    this.failures = []
  }

  callsTo(verb: Verb, path?: string | RegExp): Call[] {
    return this.calls.filter((c) => c.verb === verb && (path === undefined || matches(c.path, path)))
  }

  // ---- seeding and inspection, outside the client interface (no failures, no call log) ----

  /** Stores an object at its path as the apiserver would have it (uid and resourceVersion set). */
  put<T>(path: string, obj: T): T {
    const o = structuredClone(obj) as Obj
    const where = parse(path)
    o.metadata ??= {}
    o.metadata.name ??= where.name
    if (where.namespace) o.metadata.namespace ??= where.namespace
    o.metadata.uid ??= `uid-${++this.uids}`
    o.metadata.creationTimestamp ??= new Date().toISOString()
    this.write(where, o, this.objects.has(where.key) ? 'MODIFIED' : 'ADDED')
    return structuredClone(o) as T
  }

  /** The stored object (a copy), or undefined. */
  peek<T = Obj>(path: string): T | undefined {
    const o = this.objects.get(parse(path).key)
    return o === undefined ? undefined : (structuredClone(o) as T)
  }

  /** Changes a stored object in place, as another client's update would (a new resourceVersion, watchers told). */
  edit<T = Obj>(path: string, fn: (o: T) => void): T {
    const where = parse(path)
    const o = this.objects.get(where.key)
    if (!o) throw new Error(`fake kube: nothing at ${path}`)
    const copy = structuredClone(o)
    fn(copy as T)
    this.write(where, copy, 'MODIFIED')
    return structuredClone(copy) as T
  }

  /** Removes an object at once (a force delete, or the end of a graceful one). */
  remove(path: string): void {
    const where = parse(path)
    const o = this.objects.get(where.key)
    if (!o) throw new Error(`fake kube: nothing at ${path}`)
    this.erase(where, o)
  }

  /** Objects of a resource, in a namespace or every one. */
  all<T = Obj>(resource: string, namespace?: string): T[] {
    return [...this.objects.entries()].filter(([k]) => keyMatches(k, resource, namespace)).map(([, o]) => structuredClone(o) as T)
  }

  // ---- the client interface ----

  async get<T>(path: string, query: Query = {}, opts?: CallOptions): Promise<T> {
    const where = parse(path)
    if (where.name === undefined) {
      await this.enter('LIST', path, undefined, opts)
      const selector = selectorOf(query)
      const items = this.all<Obj>(where.resource, where.namespace).filter(selector)
      return { metadata: { resourceVersion: String(this.rv) }, items } as T
    }
    await this.enter('GET', path, undefined, opts)
    const o = this.objects.get(where.key)
    if (!o) throw notFound('GET', path, where)
    return structuredClone(o) as T
  }

  async create<T>(path: string, body: unknown, _query?: Query, opts?: CallOptions): Promise<T> {
    await this.enter('POST', path, body, opts)
    const where = parse(path)
    if (where.resource === 'tokenreviews') return this.review(body) as T
    const o = structuredClone(body) as Obj
    const name = o.metadata?.name
    if (typeof name !== 'string' || name === '') throw new KubeApiError(422, 'Invalid', 'metadata.name: Required value', 'POST', path)
    const at = parse(`${where.collection}/${encodeURIComponent(name)}`)
    if (this.objects.has(at.key)) throw new KubeApiError(409, 'AlreadyExists', `${where.resource} "${name}" already exists`, 'POST', path)
    o.metadata!.uid ??= `uid-${++this.uids}`
    if (at.namespace) o.metadata!.namespace = at.namespace
    this.write(at, o, 'ADDED')
    return structuredClone(o) as T
  }

  async replace<T>(path: string, body: unknown, opts?: CallOptions): Promise<T> {
    await this.enter('PUT', path, body, opts)
    const where = parse(path)
    const old = this.objects.get(where.key)
    if (!old) throw notFound('PUT', path, where)
    const o = structuredClone(body) as Obj
    const rv = o.metadata?.resourceVersion
    if (rv !== undefined && rv !== old.metadata?.resourceVersion) {
      throw new KubeApiError(409, 'Conflict', `Operation cannot be fulfilled on ${where.resource} "${where.name}": the object has been modified; please apply your changes to the latest version and try again`, 'PUT', path)
    }
    o.metadata = { ...o.metadata, uid: old.metadata?.uid }
    this.write(where, o, 'MODIFIED')
    return structuredClone(o) as T
  }

  async patch<T>(path: string, body: unknown, type: PatchType, _query?: Query, opts?: CallOptions): Promise<T> {
    await this.enter('PATCH', path, body, opts, type)
    const where = parse(path)
    const old = this.objects.get(where.key)
    if (!old) throw notFound('PATCH', path, where)
    const p = structuredClone(body) as Obj
    const uid = p.metadata?.uid
    if (uid !== undefined && uid !== old.metadata?.uid) {
      throw new KubeApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${String(uid)}, UID in object meta: ${String(old.metadata?.uid)}`, 'PATCH', path)
    }
    let next: Obj
    if (type === PatchType.merge) next = mergePatch(old, p, false) as Obj
    else if (type === PatchType.strategic) next = mergePatch(old, p, true) as Obj
    else throw new Error(`fake kube: patch type ${type} is not implemented`)
    if (where.subresource === 'status') next = { ...old, status: next.status } // the status subresource changes status only
    else if (where.subresource) throw new Error(`fake kube: patch of ${where.subresource} is not implemented`)
    else if (old.status !== undefined) next.status = old.status // and the main resource leaves status alone
    if (isDeepStrictEqual(next, old)) return structuredClone(old) as T // a patch that changes nothing writes nothing
    this.write(where, next, 'MODIFIED')
    return structuredClone(next) as T
  }

  async delete<T>(path: string, _body?: unknown, opts?: CallOptions): Promise<T> {
    await this.enter('DELETE', path, undefined, opts)
    const where = parse(path)
    const o = this.objects.get(where.key)
    if (!o) throw notFound('DELETE', path, where)
    this.erase(where, o)
    return { kind: 'Status', status: 'Success' } as T
  }

  async watch(path: string, query: Query, onEvent: (event: unknown) => void, signal: AbortSignal, onOpen?: () => void): Promise<void> {
    await this.enter('WATCH', path, undefined, { signal })
    const where = parse(path)
    const from = Number(query.resourceVersion ?? 0)
    const w: Watcher = { resource: where.resource, namespace: where.namespace, selector: selectorOf(query), onEvent, present: new Set() }
    // what a list at `from` returned is present for the watcher: what is unchanged since,
    // and what changed or went since but was there before (its first later event is no ADDED)
    for (const [k, o] of this.objects) if (keyMatches(k, w.resource, w.namespace) && w.selector(o) && rvOf(o) <= from) w.present.add(k)
    const seen = new Set<string>()
    for (const e of this.history) {
      if (e.rv <= from || seen.has(e.key)) continue
      seen.add(e.key)
      if (e.type !== 'ADDED' && keyMatches(e.key, w.resource, w.namespace) && w.selector(e.object)) w.present.add(e.key)
    }
    onOpen?.()
    for (const e of this.history) if (e.rv > from) this.deliver(w, e)
    if (signal.aborted) return
    this.watchers.add(w)
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
    this.watchers.delete(w)
  }

  // ---- internals ----

  private async enter(verb: Verb, path: string, body: unknown, opts: CallOptions | undefined, patchType?: string): Promise<void> {
    this.calls.push({ verb, path, ...(body !== undefined ? { body: structuredClone(body) } : {}), ...(patchType ? { patchType } : {}) })
    await new Promise((r) => setImmediate(r)) // as a real request, an answer comes later
    if (opts?.signal?.aborted) throw new AbortedError(`${verb} ${path}`)
    const i = this.failures.findIndex((f) => (f.match.verb === undefined || f.match.verb === verb) && (f.match.path === undefined || matches(path, f.match.path)))
    if (i < 0) return
    const f = this.failures[i]!
    if (--f.times <= 0) this.failures.splice(i, 1)
    throw f.error()
  }

  private review(body: unknown): unknown {
    const token = (body as { spec?: { token?: string } }).spec?.token ?? ''
    const id = this.tokens.get(token)
    if (!id) return { kind: 'TokenReview', status: { authenticated: false, error: 'invalid bearer token' } }
    return {
      kind: 'TokenReview',
      status: {
        authenticated: true,
        audiences: [TOKEN_AUDIENCE],
        user: {
          username: `system:serviceaccount:${id.namespace}:${id.serviceAccount}`,
          extra: { [TOKEN_REVIEW_POD_NAME]: [id.pod], [TOKEN_REVIEW_POD_UID]: [id.uid] },
        },
      },
    }
  }

  private write(where: Where, o: Obj, type: 'ADDED' | 'MODIFIED'): void {
    o.metadata ??= {}
    o.metadata.resourceVersion = String(++this.rv)
    this.objects.set(where.key, o)
    this.publish({ rv: this.rv, type, key: where.key, resource: where.resource, object: o })
  }

  private erase(where: Where, o: Obj): void {
    this.objects.delete(where.key)
    const gone = structuredClone(o)
    gone.metadata!.resourceVersion = String(++this.rv)
    this.publish({ rv: this.rv, type: 'DELETED', key: where.key, resource: where.resource, object: gone })
  }

  private publish(e: StoredEvent): void {
    this.history.push(e)
    for (const w of this.watchers) this.deliver(w, e)
  }

  private deliver(w: Watcher, e: StoredEvent): void {
    if (!keyMatches(e.key, w.resource, w.namespace)) return
    const object = structuredClone(e.object)
    const was = w.present.has(e.key)
    if (e.type !== 'DELETED' && w.selector(e.object)) {
      w.present.add(e.key)
      w.onEvent({ type: was ? 'MODIFIED' : 'ADDED', object })
    } else if (was) {
      // deleted, or changed out of the selector: gone for this watcher
      w.present.delete(e.key)
      w.onEvent({ type: 'DELETED', object })
    }
  }
}

// ---- paths ----

/** /api/v1/namespaces/ns/pods/name/status, /apis/g/v/namespaces/ns/leases, /api/v1/pods. */
function parse(path: string): Where {
  const segs = path.split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent)
  const prefixLen = segs[0] === 'api' ? 2 : segs[0] === 'apis' ? 3 : -1
  if (prefixLen < 0 || segs.length <= prefixLen) throw new Error(`fake kube: cannot parse path ${path}`)
  const prefix = `/${segs.slice(0, prefixLen).join('/')}`
  const rest = segs.slice(prefixLen)
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1]
    rest.splice(0, 2)
  }
  const [resource, name, subresource] = rest as [string, string | undefined, string | undefined]
  const collection = `${prefix}${namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${resource}`
  return { key: name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`, collection, resource, namespace, name, subresource }
}

function keyMatches(key: string, resource: string, namespace: string | undefined): boolean {
  let where: Where
  try {
    where = parse(key)
  } catch {
    return false
  }
  return where.name !== undefined && where.resource === resource && (namespace === undefined || where.namespace === namespace)
}

function matches(path: string, p: string | RegExp): boolean {
  return typeof p === 'string' ? path === p : p.test(path)
}

function rvOf(o: Obj): number {
  return Number(o.metadata?.resourceVersion ?? 0)
}

function reasonOf(status: number): string {
  return { 0: 'ConnectionFailed', 404: 'NotFound', 409: 'Conflict', 410: 'Expired', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable' }[status] ?? 'Unknown'
}

function notFound(verb: string, path: string, where: Where): KubeApiError {
  return new KubeApiError(404, 'NotFound', `${where.resource} "${where.name ?? ''}" not found`, verb, path)
}

/** Equality label selectors (a=b,c=d) and metadata.name/metadata.namespace field selectors. */
function selectorOf(query: Query): (o: Obj) => boolean {
  const pairs = (s: unknown): Array<[string, string]> =>
    typeof s === 'string' && s !== ''
      ? s.split(',').map((term) => {
          const m = /^([^=!]+)==?(.*)$/.exec(term.trim())
          if (!m) throw new Error(`fake kube: selector term ${term} is not implemented`)
          return [m[1]!, m[2]!]
        })
      : []
  const labels = pairs(query.labelSelector)
  const fields = pairs(query.fieldSelector)
  return (o) => {
    const l = (o.metadata?.labels ?? {}) as Record<string, string>
    return labels.every(([k, v]) => l[k] === v) && fields.every(([k, v]) => (k === 'metadata.name' ? o.metadata?.name : k === 'metadata.namespace' ? o.metadata?.namespace : undefined) === v)
  }
}

// ---- patches ----

/** RFC 7386 merge patch; `strategic` merges `conditions` lists by `type`, as the pod status's
 *  patch strategy does (other lists are replaced, as their strategy is for what enlist sends). */
function mergePatch(target: unknown, patch: unknown, strategic: boolean, key = ''): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    if (strategic && key === 'conditions' && Array.isArray(patch) && Array.isArray(target)) {
      const out = (target as Array<{ type?: string }>).map((c) => structuredClone(c))
      for (const c of patch as Array<{ type?: string }>) {
        const i = out.findIndex((x) => x.type === c.type)
        const merged = mergePatch(i >= 0 ? out[i] : {}, c, strategic) as { type?: string }
        if (i >= 0) out[i] = merged
        else out.push(merged)
      }
      return out
    }
    return structuredClone(patch)
  }
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? structuredClone(target as Record<string, unknown>) : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v, strategic, k)
  }
  return out
}

// ---- pods ----

/** The path of a pod. */
export function podAt(namespace: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`
}

/** A running pod as the apiserver holds it after admission and scheduling. */
export function runningPod(o: { namespace: string; name: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ip?: string; serviceAccount?: string; ports?: number[] }): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: o.namespace, name: o.name, ...(o.uid ? { uid: o.uid } : {}), labels: o.labels ?? {}, annotations: o.annotations ?? {} },
    spec: {
      serviceAccountName: o.serviceAccount ?? 'default',
      nodeName: 'node-1',
      containers: [{ name: 'app', image: 'app:1', ports: (o.ports ?? [8080]).map((p) => ({ name: `p${p}`, containerPort: p, protocol: 'TCP' })) }],
    },
    status: { phase: 'Running', podIP: o.ip ?? '10.0.0.10', podIPs: [{ ip: o.ip ?? '10.0.0.10' }], hostIP: '192.168.0.1' },
  }
}
