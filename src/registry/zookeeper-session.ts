// A ZooKeeper session for enlist's own use, over node-zookeeper-client (pure JavaScript: no
// native build, and it has the multi/transaction, ACL and session-state events we need).
//
// enlist's nodes are persistent, so the session holds nothing: a disconnect is retried by the
// client on the next server, and an expired session is simply replaced by a new one (with the
// credentials added again); no node is lost either way. Every operation is bounded by the
// backend's timeout, so a dead ensemble fails calls instead of queueing them forever.

import zookeeper, { type ACL, type Client, type Exception } from 'node-zookeeper-client'
import type { Logger } from 'pino'

export const ZK = zookeeper

export class ZkError extends Error {
  constructor(
    message: string,
    /** The ZooKeeper error code (Exception.*), or 0 for our own timeout. */
    readonly zkCode: number,
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'ZkError'
  }
}

export interface ZkSessionOptions {
  connect: string
  sessionTimeoutMs: number
  timeoutMs: number
  log: Logger
  /** Called on state changes (connected, disconnected, expired): metrics and logs. */
  onState?: (state: string) => void
}

export interface ZkAuth {
  scheme: string
  auth: string
}

// Errors a retry cannot fix: the request itself or the credentials are wrong.
const FATAL = new Set([ZK.Exception.NO_AUTH, ZK.Exception.AUTH_FAILED, ZK.Exception.INVALID_ACL, ZK.Exception.BAD_ARGUMENTS])

export class ZkSession {
  private client: Client | undefined
  private connected: Promise<Client> | undefined
  private auth: readonly ZkAuth[] = []
  private state = 'not connected'
  private closed = false
  /** Sessions this process has had expire (each replaced by a new one). */
  expirations = 0

  constructor(private readonly o: ZkSessionOptions) {}

  /** Why the session cannot serve now, or undefined. */
  problem(): string | undefined {
    return this.state === 'connected' ? undefined : `ZooKeeper ${this.o.connect}: ${this.state}`
  }

  /** Credentials for every session from now on; a change starts a new session. */
  setAuth(auth: readonly ZkAuth[]): void {
    if (JSON.stringify(auth) === JSON.stringify(this.auth)) return
    this.auth = auth
    this.reset('credentials changed')
  }

  close(): void {
    this.closed = true
    this.reset('closed')
  }

  async create(path: string, data: Buffer, acl: ACL[]): Promise<void> {
    const c = await this.ready()
    await this.bounded(`create ${path}`, (cb) => c.create(path, data, acl, ZK.CreateMode.PERSISTENT, (e) => cb(e, undefined)))
  }

  /** Creates the path and its missing parents, persistent; existing ones are fine. */
  async mkdirp(path: string, acl: ACL[]): Promise<void> {
    const c = await this.ready()
    await this.bounded(`mkdirp ${path}`, (cb) => c.mkdirp(path, Buffer.alloc(0), acl, ZK.CreateMode.PERSISTENT, (e) => cb(e, undefined)))
  }

  async remove(path: string): Promise<void> {
    const c = await this.ready()
    await this.bounded(`delete ${path}`, (cb) => c.remove(path, -1, (e) => cb(e, undefined)))
  }

  async children(path: string): Promise<string[]> {
    const c = await this.ready()
    return this.bounded<string[]>(`getChildren ${path}`, (cb) => c.getChildren(path, (e, children) => cb(e, children)))
  }

  async data(path: string): Promise<Buffer> {
    const c = await this.ready()
    return this.bounded<Buffer>(`getData ${path}`, (cb) => c.getData(path, (e, data) => cb(e, data ?? Buffer.alloc(0))))
  }

  /** One multi: every op succeeds, or none does. */
  async multi(what: string, build: (t: ReturnType<Client['transaction']>) => void): Promise<void> {
    const c = await this.ready()
    const t = c.transaction()
    build(t)
    await this.bounded(what, (cb) => t.commit((e) => cb(e, undefined)))
  }

  /** The client once connected, within the timeout; a new session if the last one expired. */
  private async ready(): Promise<Client> {
    if (this.closed) throw new ZkError('the backend is closed', 0, false)
    if (!this.connected) this.start()
    const connected = this.connected!
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        connected,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ZkError(`no ZooKeeper session within ${this.o.timeoutMs} ms (${this.o.connect}: ${this.state})`, 0, true)), this.o.timeoutMs)
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  private start(): void {
    const client = ZK.createClient(this.o.connect, { sessionTimeout: this.o.sessionTimeoutMs, spinDelay: 500, retries: 0 })
    this.client = client
    for (const a of this.auth) client.addAuthInfo(a.scheme, Buffer.from(a.auth))
    this.connected = new Promise<Client>((resolve) => {
      client.on('connected', () => {
        if (this.client !== client) return
        this.setState('connected')
        resolve(client)
      })
    })
    this.connected.catch(() => undefined)
    client.on('disconnected', () => {
      if (this.client === client) this.setState('disconnected, reconnecting')
    })
    client.on('authenticationFailed', () => {
      if (this.client === client) this.setState('authentication failed (check the credentials Secret)')
    })
    client.on('expired', () => {
      if (this.client !== client) return
      // The session's ephemeral nodes are gone, but enlist's are persistent: nothing to redo
      // but to open a new session.
      this.expirations++
      this.o.log.warn({ connect: this.o.connect }, 'ZooKeeper session expired; opening a new one (enlist\'s nodes are persistent: nothing is lost)')
      this.setState('session expired, reconnecting')
      this.reset('expired')
      if (!this.closed) this.start()
    })
    client.connect()
  }

  private reset(why: string): void {
    const c = this.client
    this.client = undefined
    this.connected = undefined
    if (why !== 'expired') this.setState(this.closed ? 'closed' : 'not connected')
    c?.close()
  }

  private setState(s: string): void {
    if (this.state === s) return
    this.state = s
    this.o.onState?.(s)
  }

  private bounded<T>(what: string, op: (cb: (e: Error | Exception | null, v: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ZkError(`${what}: no answer within ${this.o.timeoutMs} ms`, 0, true)), this.o.timeoutMs)
      op((e, v) => {
        clearTimeout(timer)
        if (!e) return resolve(v)
        const code = typeof (e as Exception).getCode === 'function' ? (e as Exception).getCode() : 0
        reject(new ZkError(`${what}: ${e instanceof Error ? e.message : e.toString()}`, code, !FATAL.has(code), { cause: e }))
      })
    })
  }
}
