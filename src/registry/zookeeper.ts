// ZooKeeper, persistent nodes owned by enlist (swept against live pods like every backend):
// * layout dubbo: Dubbo's own registry layout (src/registry/dubbo.ts), so unchanged Dubbo
//   consumers find the providers: `<root>/<interface>/providers/<URL.encode(provider URL)>`,
//   the node's data the JSON record. Only nodes whose URL names an enlist pod are enlist's;
//   the URL parameter enlist.cluster is the mark of the cluster that wrote it.
// * layout enlist: `<root>/<cluster>/<namespace>/<service>/<pod uid>`, the JSON record as data.
// The mark (src/registry/ownership.ts) decides every delete: a node of another cluster is never
// removed. Nodes written before marks (no enlist.cluster; `<root>/<namespace>/<service>/<uid>`)
// are unmarked: each list() moves those of this cluster's live pods to the marked form, in one
// multi each, and leaves the rest. `<root>/.clusters/<name>` holds the claims on cluster names.
// ACLs and digest credentials come from a Secret (ZOOKEEPER_SECRET_KEYS).

import type { ACL } from 'node-zookeeper-client'
import type { Logger } from 'pino'
import type { PodView } from '../kube/pod-view.js'
import { SecretError, type SecretReader } from '../kube/secrets.js'
import { errorMessage } from '../lib/errors.js'
import { zookeeperRoot } from '../policy/backends/zookeeper.js'
import type { ZookeeperBackendSpec } from '../policy/policy.js'
import { type Backend, type BackendCallOptions, BackendError, type BackendOp } from './backend.js'
import { CLUSTER_PARAM, type DubboProvider, dubboProviderOf, enlistOwner, javaUrlDecode, parseFullString, providerNodeName, providersPath } from './dubbo.js'
import { type PodRef, podRef } from '../kube/pod-ref.js'
import type { PodLookup } from './kubernetes.js'
import { CLAIMS_DIR, type ClaimResult, type ClusterIdentity, decodeClaim, encodeClaim, judgeClaim, type ListedEntry } from './ownership.js'
import type { RegistryRecord } from './record.js'
import { ZK, ZkError, ZkSession } from './zookeeper-session.js'

/** Keys a credentials Secret may hold (both optional). */
export const ZOOKEEPER_SECRET_KEYS = {
  /** `user:password`, added to the session as digest credentials. */
  digest: 'digest',
  /** One ACL entry per line, `scheme:id:perms` (perms of `cdrwa`), e.g. `world:anyone:r`,
   *  `digest:enlist:<base64 sha1>:cdrwa`, `auth::cdrwa`. Every node enlist creates gets it. */
  acl: 'acl',
} as const

const PERMS: Record<string, number> = { c: ZK.Permission.CREATE, d: ZK.Permission.DELETE, r: ZK.Permission.READ, w: ZK.Permission.WRITE, a: ZK.Permission.ADMIN }

/** Parses the Secret's ACL lines; throws SecretError naming the bad line. */
export function parseAcl(text: string, secret: string): ACL[] {
  const out: ACL[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const first = line.indexOf(':')
    const last = line.lastIndexOf(':')
    const perms = line.slice(last + 1)
    if (first === -1 || first === last || !/^[cdrwa]+$/.test(perms)) {
      throw new SecretError(`Secret ${secret} key acl line ${i + 1} ${JSON.stringify(line)}: expected scheme:id:perms, perms of "cdrwa", e.g. world:anyone:r`, false)
    }
    let mask = 0
    for (const p of perms) mask |= PERMS[p]!
    out.push(new ZK.ACL(mask, new ZK.Id(line.slice(0, first), line.slice(first + 1, last))))
  })
  if (out.length === 0) throw new SecretError(`Secret ${secret} key acl holds no ACL entry`, false)
  return out
}

const OPEN_ACL: ACL[] = [new ZK.ACL(ZK.Permission.ALL, new ZK.Id('world', 'anyone'))]

/** A pod UID (what the apiserver gives, a UUID): tells an old-layout leaf
 *  `<root>/<ns>/<svc>/<uid>` from a service directory of the marked layout. */
const POD_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function isPodUid(s: string): boolean {
  return POD_UID.test(s)
}

/** The provider node name with the cluster mark added (parameters kept sorted, as
 *  toFullString writes them); undefined for a name that is no provider URL. Pure. */
export function markedProviderNode(nodeName: string, cluster: string): string | undefined {
  let p: DubboProvider | undefined
  try {
    p = parseFullString(javaUrlDecode(nodeName))
  } catch {
    return undefined
  }
  if (!p) return undefined
  const params = p.params.filter(([k]) => k !== CLUSTER_PARAM)
  params.push([CLUSTER_PARAM, cluster])
  params.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return providerNodeName({ ...p, params })
}

/** Whether the cache holds this pod, alive: its unmarked node is this cluster's to migrate. */
function alive(pod: PodView | undefined, namespace: string): boolean {
  return pod !== undefined && pod.metadata.namespace === namespace && !pod.metadata.deletionTimestamp && pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed'
}

/** The data with this cluster's mark, when it is a record (a JSON object); else as it was. */
function stamped(data: Buffer, cluster: string): Buffer {
  try {
    const v = JSON.parse(data.toString('utf8')) as unknown
    if (v && typeof v === 'object' && !Array.isArray(v)) return Buffer.from(JSON.stringify({ ...(v as Record<string, unknown>), cluster }))
  } catch {
    // not JSON: moved as it is
  }
  return data
}

/** One entry node: where it is and the entry it is. */
interface Node {
  dir: string
  name: string
  entry: ListedEntry
}

const NO_PODS: PodLookup = { pods: () => [] }

export class ZookeeperBackend implements Backend {
  readonly type = 'zookeeper'
  readonly name: string
  private readonly root: string
  private readonly session: ZkSession
  private lastError: string | undefined
  /** path -> the entry node there (immutable facts), as last listed or written. */
  private readonly nodes = new Map<string, Node>()
  /** uid -> the directories its nodes of this cluster, or unmarked ones, are in: deregistration
   *  needs no scan for pods this replica has seen. */
  private readonly dirsOf = new Map<string, Set<string>>()
  /** Directories known to exist (skips mkdirp's round trips; forgotten on NO_NODE). */
  private readonly dirs = new Set<string>()

  constructor(
    private readonly spec: ZookeeperBackendSpec,
    private readonly secrets: SecretReader,
    log: Logger,
    onState?: (state: string) => void,
    /** This cluster's name (policy cluster.name): the mark. Empty (no shared-backend policy
     *  allows it; kept for tools): nodes are written unmarked, in the old layout. */
    private readonly cluster = '',
    /** Managed pods: whose unmarked nodes are this cluster's to migrate. */
    private readonly pods: PodLookup = NO_PODS,
    /** Metadata keys the provider URL may carry (policy tenancy.dubbo.parameters); undefined: the built-in list. */
    private readonly dubboParameters?: ReadonlySet<string>,
  ) {
    this.name = spec.name
    this.root = zookeeperRoot(spec)
    this.session = new ZkSession({
      connect: spec.connect,
      sessionTimeoutMs: spec.sessionTimeoutSeconds * 1000,
      timeoutMs: spec.timeoutSeconds * 1000,
      log: log.child({ backend: spec.name }),
      onState: (s) => {
        log.info({ backend: spec.name, state: s }, 'ZooKeeper session state')
        onState?.(s)
      },
    })
  }

  get sessionExpirations(): number {
    return this.session.expirations
  }

  async register(record: RegistryRecord): Promise<void> {
    await this.call('register', async () => {
      const acl = await this.prepare()
      await this.write(record, acl)
    })
  }

  private async write(record: RegistryRecord, acl: ACL[]): Promise<void> {
    const data = Buffer.from(JSON.stringify(record))
    const ref = podRef(record)
    if (this.spec.layout === 'dubbo') {
      let provider: DubboProvider
      try {
        provider = dubboProviderOf(record, this.cluster, this.dubboParameters)
      } catch (err) {
        throw new ZkError(errorMessage(err), 0, false, { cause: err })
      }
      const dir = providersPath(this.root, provider.interface)
      const name = providerNodeName(provider)
      // the pod's older node (an old address, or no mark) goes in the same multi
      const removed = await this.writeNode(dir, name, data, acl, (c) => this.isOurs(enlistOwner(c), record.uid))
      for (const r of removed) this.forget(`${dir}/${r}`)
      this.remember({ dir, name, entry: { ...ref, cluster: this.mark() } })
    } else {
      const dir = `${this.clusterBase()}/${record.namespace}/${record.service}`
      await this.writeNode(dir, record.uid, data, acl, () => false)
      this.remember({ dir, name: record.uid, entry: { ...ref, cluster: this.mark() } })
    }
  }

  /** Removes the pod's nodes of this cluster and its unmarked ones (a pod UID is this
   *  cluster's pod); never a node marked with another cluster's name. */
  async deregister(ref: PodRef): Promise<void> {
    await this.call('deregister', async () => {
      await this.prepare()
      const known = this.dirsOf.get(ref.uid)
      const dirs = known && known.size > 0 ? [...known] : await this.findDirs(ref)
      for (const dir of dirs) {
        for (const child of await this.childrenOrNone(dir)) {
          if (this.spec.layout === 'dubbo' ? this.isOurs(enlistOwner(child), ref.uid) : child === ref.uid) {
            await this.removeIfThere(`${dir}/${child}`)
            this.forget(`${dir}/${child}`)
          }
        }
        // enlist's own layout: drop directories it emptied (best effort, others may add)
        if (this.spec.layout === 'enlist') {
          this.dirs.delete(dir)
          await this.removeIfEmpty(dir)
        }
      }
      this.dirsOf.delete(ref.uid)
    })
  }

  async list(opts: BackendCallOptions = {}): Promise<ListedEntry[]> {
    return this.call('list', async () => {
      const acl = await this.prepare()
      const seen = new Map<string, Node>()
      if (this.spec.layout === 'dubbo') {
        for (const iface of await this.childrenOrNone(this.root === '/' ? '/' : this.root)) {
          if (iface === CLAIMS_DIR) continue
          const dir = `${this.base()}/${iface}/providers`
          await opts.pace?.()
          for (const child of await this.childrenOrNone(dir)) {
            const owner = enlistOwner(child)
            if (owner) seen.set(`${dir}/${child}`, { dir, name: child, entry: owner })
          }
        }
      } else {
        await this.listEnlistLayout(seen, opts)
      }
      this.nodes.clear()
      this.dirsOf.clear()
      for (const n of seen.values()) this.remember(n)
      await this.migrate(acl, opts)
      return [...this.nodes.values()].map((n) => ({ ...n.entry }))
    })
  }

  /** Walks `<root>/<cluster>/<ns>/<svc>/<uid>` (marked) and `<root>/<ns>/<svc>/<uid>` (old,
   *  unmarked: a pod UID at depth three). Reads the record of this cluster's and unmarked
   *  nodes once, for the pod's name; another cluster's are counted, never read. */
  private async listEnlistLayout(seen: Map<string, Node>, opts: BackendCallOptions): Promise<void> {
    const add = async (dir: string, uid: string, namespace: string, cluster: string | undefined): Promise<void> => {
      const path = `${dir}/${uid}`
      const known = this.nodes.get(path)
      if (known) return void seen.set(path, known)
      let pod = ''
      if (cluster === undefined || cluster === this.cluster) {
        try {
          await opts.pace?.()
          pod = (JSON.parse((await this.session.data(path)).toString('utf8')) as Partial<RegistryRecord>).pod ?? ''
        } catch (err) {
          if (err instanceof ZkError && err.zkCode === ZK.Exception.NO_NODE) return
          if (err instanceof ZkError) throw err
          // unreadable data: still an entry, by uid
        }
      }
      seen.set(path, { dir, name: uid, entry: { uid, namespace, pod, cluster } })
    }
    for (const top of await this.childrenOrNone(this.root)) {
      if (top === CLAIMS_DIR) continue
      await opts.pace?.()
      for (const second of await this.childrenOrNone(`${this.base()}/${top}`)) {
        const dir2 = `${this.base()}/${top}/${second}`
        await opts.pace?.()
        for (const third of await this.childrenOrNone(dir2)) {
          // `<root>/<ns>/<svc>/<uid>`: a node of the old layout
          if (isPodUid(third)) {
            await add(dir2, third, top, undefined)
            continue
          }
          // `<root>/<cluster>/<ns>/<svc>`: the marked layout
          const dir3 = `${dir2}/${third}`
          await opts.pace?.()
          for (const uid of await this.childrenOrNone(dir3)) await add(dir3, uid, second, top)
        }
      }
    }
  }

  /** Moves the unmarked nodes of this cluster's live pods to the marked form: the marked node
   *  created and the old one removed (at the version read) in one multi. */
  private async migrate(acl: ACL[], opts: BackendCallOptions): Promise<void> {
    if (this.cluster === '') return
    const unmarked = [...this.nodes.values()].filter((n) => n.entry.cluster === undefined)
    if (unmarked.length === 0) return
    const live = new Map<string, PodView>()
    for (const p of this.pods.pods()) live.set(p.metadata.uid, p)
    for (const n of unmarked) {
      if (!alive(live.get(n.entry.uid), n.entry.namespace)) continue
      const from = `${n.dir}/${n.name}`
      let dir: string
      let name: string
      if (this.spec.layout === 'dubbo') {
        const marked = markedProviderNode(n.name, this.cluster)
        if (!marked) continue
        dir = n.dir
        name = marked
      } else {
        const service = n.dir.slice(n.dir.lastIndexOf('/') + 1)
        dir = `${this.clusterBase()}/${n.entry.namespace}/${service}`
        name = n.name
      }
      await opts.pace?.()
      try {
        const old = await this.session.data(from)
        if (!this.dirs.has(dir)) {
          await this.session.mkdirp(dir, acl)
          this.dirs.add(dir)
        }
        // Registered again meanwhile: the marked node is newer, the old one only goes.
        const exists = (await this.session.children(dir)).includes(name)
        await this.session.multi(`migrate ${from} to ${dir}/${name}`, (t) => {
          if (!exists) t.create(`${dir}/${name}`, stamped(old, this.cluster), acl, ZK.CreateMode.PERSISTENT)
          t.remove(from, -1)
        })
      } catch (err) {
        // gone or changed meanwhile: the next list looks again
        if (err instanceof ZkError && (err.zkCode === ZK.Exception.NO_NODE || err.zkCode === ZK.Exception.NODE_EXISTS)) continue
        throw err
      }
      this.forget(from)
      this.remember({ dir, name, entry: { ...n.entry, cluster: this.cluster } })
      if (this.spec.layout === 'enlist') await this.removeIfEmpty(n.dir)
    }
  }

  /** Claims this cluster's name: `<root>/.clusters/<name>` created if absent, else judged
   *  (judgeClaim); a take-over sets its data. */
  async claim(self: ClusterIdentity, takeOver: boolean): Promise<ClaimResult> {
    return this.call('claim', async () => {
      const acl = await this.prepare()
      const dir = `${this.base()}/${CLAIMS_DIR}`
      const path = `${dir}/${self.name}`
      for (let attempt = 1; ; attempt++) {
        let existing: Buffer | undefined
        try {
          existing = await this.session.data(path)
        } catch (err) {
          if (!(err instanceof ZkError && err.zkCode === ZK.Exception.NO_NODE)) throw err
        }
        const { write, result } = judgeClaim(existing ? decodeClaim(existing.toString('utf8')) : undefined, self, takeOver)
        if (!write) return result
        const data = Buffer.from(encodeClaim(write))
        try {
          if (existing) {
            await this.session.multi(`claim ${path}`, (t) => t.setData(path, data, -1))
          } else {
            await this.session.mkdirp(dir, acl)
            await this.session.create(path, data, acl)
          }
          return result
        } catch (err) {
          // another cluster claimed it, or it went, between the read and the write: read again
          const race = err instanceof ZkError && (err.zkCode === ZK.Exception.NODE_EXISTS || err.zkCode === ZK.Exception.NO_NODE)
          if (!race || attempt >= 3) throw err
        }
      }
    })
  }

  /** Makes an unmarked node this cluster's: `record` given, the marked node is written and
   *  the unmarked one removed in one multi; undefined, the unmarked one is removed. An entry
   *  with a mark is refused. */
  async adopt(entry: ListedEntry, record: RegistryRecord | undefined): Promise<void> {
    if (entry.cluster !== undefined) {
      throw new BackendError(this.name, 'adopt', `entry ${entry.namespace}/${entry.pod || entry.uid} carries the mark of cluster "${entry.cluster}": only unmarked entries can be adopted`, false)
    }
    if (this.cluster === '') throw new BackendError(this.name, 'adopt', 'this cluster has no name (policy cluster.name): there is no mark to adopt entries with', false)
    if (record && record.uid !== entry.uid) throw new BackendError(this.name, 'adopt', `record of pod uid ${record.uid} given for the entry of uid ${entry.uid}: they must be the same pod`, false)
    await this.call('adopt', async () => {
      const acl = await this.prepare()
      const unmarked = [...this.nodes.values()].filter((n) => n.entry.uid === entry.uid && n.entry.cluster === undefined)
      const paths = unmarked.length > 0 ? unmarked.map((n) => `${n.dir}/${n.name}`) : await this.findUnmarked(entry)
      if (record && this.spec.layout === 'dubbo') {
        // writeNode removes the unmarked sibling of this uid in the same multi
        await this.write(record, acl)
      } else if (record) {
        const dir = `${this.clusterBase()}/${record.namespace}/${record.service}`
        if (!this.dirs.has(dir)) {
          await this.session.mkdirp(dir, acl)
          this.dirs.add(dir)
        }
        const exists = (await this.session.children(dir)).includes(record.uid)
        const data = Buffer.from(JSON.stringify({ ...record, cluster: this.cluster }))
        await this.session.multi(`adopt ${entry.uid} to ${dir}`, (t) => {
          if (exists) t.setData(`${dir}/${record.uid}`, data, -1)
          else t.create(`${dir}/${record.uid}`, data, acl, ZK.CreateMode.PERSISTENT)
          for (const p of paths) t.remove(p, -1)
        })
        this.remember({ dir, name: record.uid, entry: { ...podRef(record), cluster: this.cluster } })
      }
      // gone already where the multi removed it; elsewhere (another interface) removed here
      for (const p of paths) {
        await this.removeIfThere(p)
        this.forget(p)
      }
    })
  }

  /** The unmarked nodes of an entry this replica has not listed. */
  private async findUnmarked(entry: ListedEntry): Promise<string[]> {
    if (this.spec.layout === 'dubbo') {
      const out: string[] = []
      for (const dir of await this.findDirs(entry)) {
        for (const c of await this.childrenOrNone(dir)) {
          const o = enlistOwner(c)
          if (o?.uid === entry.uid && o.cluster === undefined) out.push(`${dir}/${c}`)
        }
      }
      return out
    }
    return (await this.oldDirs(entry)).map((d) => `${d}/${entry.uid}`)
  }

  health(): string | undefined {
    return this.session.problem() ?? this.lastError
  }

  close(): void {
    this.session.close()
  }

  // --- the layouts -----------------------------------------------------------------

  /** Writes the node (create, or set its data) and removes `isStale` siblings in one multi,
   *  so Dubbo consumers never see a pod twice (an old address) or not at all. */
  private async writeNode(dir: string, node: string, data: Buffer, acl: ACL[], isStale: (child: string) => boolean): Promise<string[]> {
    for (let attempt = 1; ; attempt++) {
      if (!this.dirs.has(dir)) {
        await this.session.mkdirp(dir, acl)
        this.dirs.add(dir)
      }
      try {
        const children = await this.session.children(dir)
        const stale = children.filter((c) => c !== node && isStale(c))
        const exists = children.includes(node)
        await this.session.multi(`${exists ? 'setData' : 'create'} ${dir}/${node}`, (t) => {
          if (exists) t.setData(`${dir}/${node}`, data, -1)
          else t.create(`${dir}/${node}`, data, acl, ZK.CreateMode.PERSISTENT)
          for (const c of stale) t.remove(`${dir}/${c}`, -1)
        })
        return stale
      } catch (err) {
        // A race with another writer, or the directory was removed: look again.
        const race = err instanceof ZkError && (err.zkCode === ZK.Exception.NODE_EXISTS || err.zkCode === ZK.Exception.NO_NODE)
        if (!race || attempt >= 3) throw err
        this.dirs.delete(dir)
      }
    }
  }

  /** Whether a node's owner is pod `uid` and this cluster's to remove: marked with its name,
   *  or unmarked (a pod UID is this cluster's pod). Another cluster's mark: never. */
  private isOurs(owner: { uid: string; cluster: string | undefined } | undefined, uid: string): boolean {
    return owner !== undefined && owner.uid === uid && (owner.cluster === undefined || owner.cluster === this.cluster)
  }

  private mark(): string | undefined {
    return this.cluster === '' ? undefined : this.cluster
  }

  private remember(n: Node): void {
    this.nodes.set(`${n.dir}/${n.name}`, n)
    const c = n.entry.cluster
    if (c !== undefined && c !== this.cluster) return
    let set = this.dirsOf.get(n.entry.uid)
    if (!set) this.dirsOf.set(n.entry.uid, (set = new Set()))
    set.add(n.dir)
  }

  /** The node is gone. Its directory stays in dirsOf: at worst one needless look at deregistration. */
  private forget(path: string): void {
    this.nodes.delete(path)
  }

  /** Where a pod this replica has not seen may have its nodes. */
  private async findDirs(ref: PodRef): Promise<string[]> {
    if (this.spec.layout === 'dubbo') {
      const dirs: string[] = []
      for (const iface of await this.childrenOrNone(this.root === '/' ? '/' : this.root)) {
        if (iface === CLAIMS_DIR) continue
        const dir = `${this.base()}/${iface}/providers`
        if ((await this.childrenOrNone(dir)).some((c) => this.isOurs(enlistOwner(c), ref.uid))) dirs.push(dir)
      }
      return dirs
    }
    const out = await this.oldDirs(ref)
    if (this.cluster === '') return out
    const nsDir = `${this.clusterBase()}/${ref.namespace}`
    for (const service of await this.childrenOrNone(nsDir)) {
      if ((await this.childrenOrNone(`${nsDir}/${service}`)).includes(ref.uid)) out.push(`${nsDir}/${service}`)
    }
    return out
  }

  /** The old-layout directories `<root>/<ns>/<svc>` holding a node named by the pod's UID. */
  private async oldDirs(ref: Pick<PodRef, 'namespace' | 'uid'>): Promise<string[]> {
    const nsDir = `${this.base()}/${ref.namespace}`
    const out: string[] = []
    for (const service of await this.childrenOrNone(nsDir)) {
      if ((await this.childrenOrNone(`${nsDir}/${service}`)).includes(ref.uid)) out.push(`${nsDir}/${service}`)
    }
    return out
  }

  /** Where this cluster's nodes of layout enlist live: `<root>/<cluster>`. */
  private clusterBase(): string {
    return this.cluster === '' ? this.base() : `${this.base()}/${this.cluster}`
  }

  private base(): string {
    return this.root === '/' ? '' : this.root
  }

  private async childrenOrNone(path: string): Promise<string[]> {
    try {
      return await this.session.children(path)
    } catch (err) {
      if (err instanceof ZkError && err.zkCode === ZK.Exception.NO_NODE) return []
      throw err
    }
  }

  private async removeIfThere(path: string): Promise<void> {
    try {
      await this.session.remove(path)
    } catch (err) {
      if (!(err instanceof ZkError && err.zkCode === ZK.Exception.NO_NODE)) throw err
    }
  }

  private async removeIfEmpty(dir: string): Promise<void> {
    for (let d = dir; d.length > this.base().length && d !== this.root; d = d.slice(0, d.lastIndexOf('/'))) {
      try {
        await this.session.remove(d)
      } catch (err) {
        if (err instanceof ZkError && (err.zkCode === ZK.Exception.NOT_EMPTY || err.zkCode === ZK.Exception.NO_NODE)) return
        throw err
      }
    }
  }

  /** Credentials and ACL from the Secret (re-read within its TTL, so rotation applies). */
  private async prepare(): Promise<ACL[]> {
    const name = this.spec.credentialsFromSecret
    if (name === '') return OPEN_ACL
    const data = await this.secrets.read(name)
    const digest = data[ZOOKEEPER_SECRET_KEYS.digest]?.trim()
    if (digest !== undefined && !/^[^:]+:.+$/.test(digest)) throw new SecretError(`Secret ${name} key digest must be user:password`, false)
    this.session.setAuth(digest ? [{ scheme: 'digest', auth: digest }] : [])
    const acl = data[ZOOKEEPER_SECRET_KEYS.acl]
    return acl === undefined ? OPEN_ACL : parseAcl(acl, name)
  }

  private async call<T>(op: BackendOp, fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn()
      this.lastError = undefined
      return v
    } catch (err) {
      const retryable = err instanceof ZkError ? err.retryable : err instanceof SecretError ? err.retryable : true
      this.lastError = errorMessage(err)
      throw new BackendError(this.name, op, `${this.spec.connect}: ${this.lastError}`, retryable, { cause: err })
    }
  }
}
