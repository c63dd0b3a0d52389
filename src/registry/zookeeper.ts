// ZooKeeper, persistent nodes owned by enlist (swept against live pods like every backend):
// * layout dubbo: Dubbo's own registry layout (src/registry/dubbo.ts), so unchanged Dubbo
//   consumers find the providers: `<root>/<interface>/providers/<URL.encode(provider URL)>`,
//   the node's data the JSON record. Only nodes whose URL names an enlist pod are enlist's.
// * layout enlist: `<root>/<namespace>/<service>/<pod uid>`, the JSON record as data.
// ACLs and digest credentials come from a Secret (ZOOKEEPER_SECRET_KEYS).

import type { ACL } from 'node-zookeeper-client'
import type { Logger } from 'pino'
import { SecretError, type SecretReader } from '../kube/secrets.js'
import { errorMessage } from '../lib/errors.js'
import { zookeeperRoot } from '../policy/backends/zookeeper.js'
import type { ZookeeperBackendSpec } from '../policy/policy.js'
import { type Backend, BackendError, type BackendOp } from './backend.js'
import { type DubboProvider, dubboProviderOf, enlistOwner, providerNodeName, providersPath } from './dubbo.js'
import { type PodRef, podRef } from '../kube/pod-ref.js'
import type { ListedEntry } from './ownership.js'
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

export class ZookeeperBackend implements Backend {
  readonly type = 'zookeeper'
  readonly name: string
  private readonly root: string
  private readonly session: ZkSession
  private lastError: string | undefined
  /** uid -> where its node lives and whose it is (immutable facts), so deregistration and the
   *  sweep need no scan for pods this replica has seen. */
  private readonly known = new Map<string, { dir: string; ref: PodRef }>()
  /** Directories known to exist (skips mkdirp's round trips; forgotten on NO_NODE). */
  private readonly dirs = new Set<string>()

  constructor(
    private readonly spec: ZookeeperBackendSpec,
    private readonly secrets: SecretReader,
    log: Logger,
    onState?: (state: string) => void,
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
    const ref = podRef(record)
    const data = Buffer.from(JSON.stringify(record))
    await this.call('register', async () => {
      const acl = await this.prepare()
      if (this.spec.layout === 'dubbo') {
        let provider: DubboProvider
        try {
          provider = dubboProviderOf(record)
        } catch (err) {
          throw new ZkError(errorMessage(err), 0, false, { cause: err })
        }
        const dir = providersPath(this.root, provider.interface)
        await this.writeNode(dir, providerNodeName(provider), data, acl, (c) => enlistOwner(c)?.uid === record.uid)
        this.known.set(record.uid, { dir, ref })
      } else {
        const dir = `${this.base()}/${record.namespace}/${record.service}`
        await this.writeNode(dir, record.uid, data, acl, () => false)
        this.known.set(record.uid, { dir, ref })
      }
    })
  }

  async deregister(ref: PodRef): Promise<void> {
    await this.call('deregister', async () => {
      await this.prepare()
      const dirs = this.known.has(ref.uid) ? [this.known.get(ref.uid)!.dir] : await this.findDirs(ref)
      for (const dir of dirs) {
        for (const child of await this.childrenOrNone(dir)) {
          if (this.owner(dir, child)?.uid === ref.uid) await this.removeIfThere(`${dir}/${child}`)
        }
        // enlist's own layout: drop directories it emptied (best effort, others may add)
        if (this.spec.layout === 'enlist') {
          this.dirs.delete(dir)
          await this.removeIfEmpty(dir)
        }
      }
      this.known.delete(ref.uid)
    })
  }

  async list(): Promise<ListedEntry[]> {
    return this.call('list', async () => {
      await this.prepare()
      const seen = new Map<string, { dir: string; ref: PodRef }>()
      if (this.spec.layout === 'dubbo') {
        for (const iface of await this.childrenOrNone(this.root === '/' ? '/' : this.root)) {
          const dir = `${this.base()}/${iface}/providers`
          for (const child of await this.childrenOrNone(dir)) {
            const ref = this.owner(dir, child)
            if (ref) seen.set(ref.uid, { dir, ref })
          }
        }
      } else {
        for (const ns of await this.childrenOrNone(this.root)) {
          for (const service of await this.childrenOrNone(`${this.base()}/${ns}`)) {
            const dir = `${this.base()}/${ns}/${service}`
            for (const uid of await this.childrenOrNone(dir)) {
              const known = this.known.get(uid)
              if (known && known.dir === dir) {
                seen.set(uid, known)
                continue
              }
              // The pod's name is in the record: read it once, then remember it.
              let pod = ''
              try {
                pod = (JSON.parse((await this.session.data(`${dir}/${uid}`)).toString('utf8')) as Partial<RegistryRecord>).pod ?? ''
              } catch (err) {
                if (err instanceof ZkError && err.zkCode === ZK.Exception.NO_NODE) continue
                if (err instanceof ZkError) throw err
                // unreadable data: still an entry to clean up, by uid
              }
              seen.set(uid, { dir, ref: { uid, namespace: ns, pod } })
            }
          }
        }
      }
      this.known.clear()
      for (const [uid, v] of seen) this.known.set(uid, v)
      return [...seen.values()].map((v) => ({ ...v.ref, cluster: undefined }))
    })
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
  private async writeNode(dir: string, node: string, data: Buffer, acl: ACL[], isStale: (child: string) => boolean): Promise<void> {
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
        return
      } catch (err) {
        // A race with another writer, or the directory was removed: look again.
        const race = err instanceof ZkError && (err.zkCode === ZK.Exception.NODE_EXISTS || err.zkCode === ZK.Exception.NO_NODE)
        if (!race || attempt >= 3) throw err
        this.dirs.delete(dir)
      }
    }
  }

  private owner(dir: string, child: string): PodRef | undefined {
    if (this.spec.layout === 'dubbo') return enlistOwner(child)
    const known = this.known.get(child)
    if (known) return known.ref
    const parts = dir.slice(this.base().length + 1).split('/')
    return { uid: child, namespace: parts[0] ?? '', pod: '' }
  }

  /** Where a pod this replica has not seen may have its node. */
  private async findDirs(ref: PodRef): Promise<string[]> {
    if (this.spec.layout === 'dubbo') {
      const dirs: string[] = []
      for (const iface of await this.childrenOrNone(this.root === '/' ? '/' : this.root)) {
        const dir = `${this.base()}/${iface}/providers`
        if ((await this.childrenOrNone(dir)).some((c) => enlistOwner(c)?.uid === ref.uid)) dirs.push(dir)
      }
      return dirs
    }
    const nsDir = `${this.base()}/${ref.namespace}`
    const out: string[] = []
    for (const service of await this.childrenOrNone(nsDir)) {
      if ((await this.childrenOrNone(`${nsDir}/${service}`)).includes(ref.uid)) out.push(`${nsDir}/${service}`)
    }
    return out
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
