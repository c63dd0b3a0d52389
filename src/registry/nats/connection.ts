// One supervised NATS connection (the backend's and the relay's): connects with the
// credentials of the moment (a rotated Secret is read again on every connect), lets the
// client reconnect with jittered backoff while the connection lives, and starts over with
// capped backoff when it dies for good (wrong credentials, every server gone). Whatever is
// wrong is kept as one sentence for /readyz?verbose; it never names a credential.

import { connect, credsAuthenticator, errors, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { Backoff, sleep } from '../../lib/backoff.js'
import { errorMessage } from '../../lib/errors.js'

/** What a Secret (or the relay's files) may hold; every field optional. */
export interface NatsCredentials {
  user?: string
  password?: string
  token?: string
  /** A NATS .creds file (JWT and NKey seed). */
  creds?: string
  ca?: string
  cert?: string
  key?: string
}

export interface NatsLinkOptions {
  /** Comma-separated nats:// or tls:// URLs, no credentials. */
  url: string
  name: string
  timeoutMs: number
  credentials: () => Promise<NatsCredentials>
  /** Called on every new connection before it counts as usable (ensure the stream, ...). */
  setup?: (nc: NatsConnection) => Promise<void>
  log: Logger
}

export class NatsLink {
  private nc: NatsConnection | undefined
  private usable = false
  private problem: string | undefined = 'connecting'
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined
  private waiters: Array<() => void> = []

  constructor(private readonly o: NatsLinkOptions) {}

  /** Starts connecting in the background; never throws. */
  start(): this {
    this.loop ??= this.run()
    return this
  }

  /** Undefined when usable; else why not. */
  health(): string | undefined {
    return this.usable ? undefined : this.problem
  }

  /** The connection once usable, waiting at most `ms`; else throws the reason. */
  async connection(ms: number): Promise<NatsConnection> {
    if (this.usable && this.nc) return this.nc
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      const waiter = (): void => done()
      this.waiters.push(waiter)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
    })
    if (this.usable && this.nc) return this.nc
    throw new NotConnectedError(`not connected to NATS at ${this.o.url}: ${this.problem ?? 'connecting'}`)
  }

  async close(): Promise<void> {
    this.abort.abort()
    const nc = this.nc
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close())
    await this.loop
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private async run(): Promise<void> {
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000 })
    const signal = this.abort.signal
    while (!signal.aborted) {
      let nc: NatsConnection | undefined
      try {
        nc = await connect(await this.options())
        this.nc = nc
        void this.watchStatus(nc)
        if (signal.aborted) break
        await this.o.setup?.(nc)
        this.usable = true
        this.problem = undefined
        backoff.reset()
        this.o.log.info({ url: this.o.url, server: nc.getServer() }, 'connected to NATS')
        this.wake()
        const err = await nc.closed()
        this.usable = false
        if (signal.aborted) break
        this.problem = `connection closed${err ? `: ${describe(err)}` : ''}`
      } catch (err) {
        this.usable = false
        this.problem = describe(err)
        if (nc && !nc.isClosed()) await nc.close().catch(() => undefined)
      }
      const delay = backoff.next()
      this.o.log.warn({ url: this.o.url, err: this.problem, retryInMs: Math.round(delay) }, 'NATS unavailable; reconnecting')
      this.wake()
      await sleep(delay, signal)
    }
    this.usable = false
    this.problem = 'closed'
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this.usable = false
          this.problem = `disconnected from ${s.server}; reconnecting`
          break
        case 'reconnect':
          this.usable = true
          this.problem = undefined
          this.o.log.info({ server: s.server }, 'reconnected to NATS')
          this.wake()
          break
        case 'error':
          this.problem = describe(s.error)
          this.o.log.warn({ url: this.o.url, err: this.problem }, 'NATS reported an error')
          break
        default:
          break
      }
    }
  }

  private async options(): Promise<NodeConnectionOptions> {
    const c = await this.o.credentials()
    const servers = this.o.url.split(',').map((s) => s.trim()).filter(Boolean)
    const tlsWanted = servers.some((s) => s.startsWith('tls://')) || c.ca !== undefined || c.cert !== undefined
    const opts: NodeConnectionOptions = {
      servers,
      name: this.o.name,
      timeout: this.o.timeoutMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      reconnectJitter: 1000,
      reconnectJitterTLS: 1000,
      pingInterval: 10_000,
      maxPingOut: 3,
      waitOnFirstConnect: false,
    }
    if (c.creds) opts.authenticator = credsAuthenticator(new TextEncoder().encode(c.creds))
    else if (c.token) opts.token = c.token
    else if (c.user) {
      opts.user = c.user
      opts.pass = c.password ?? ''
    }
    if (tlsWanted) opts.tls = { ...(c.ca ? { ca: c.ca } : {}), ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}) }
    return opts
  }
}

export class NotConnectedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NotConnectedError'
  }
}

/** One sentence an admin can act on; the client's errors name no credential. */
export function describe(err: unknown): string {
  if (err instanceof errors.AuthorizationError) return `authorization failed: check the user, password, token or creds in the credentials Secret (${err.message})`
  if (err instanceof errors.PermissionViolationError) return `permission denied: ${err.message}; grant the NATS user publish/subscribe on it`
  if (err instanceof errors.TimeoutError) return 'timed out waiting for the server'
  if (err instanceof errors.NoRespondersError) return 'no responders: is JetStream enabled, and does a stream capture the subject?'
  const msg = errorMessage(err)
  return msg.replace(/\/\/[^/@\s]*@/g, '//') // never echo userinfo, should a URL ever carry it
}
