// One supervised AMQP 0-9-1 connection with a confirm channel (the backend's and the
// relay's): connects with the credentials of the moment (a rotated Secret is read again on
// every connect), runs `setup` on the new channel, and starts over with capped, jittered
// backoff whenever the connection or channel closes. Credentials go in the handshake, never
// in a URL, so no error or log line can carry them.

import amqp, { type ChannelModel, type ConfirmChannel, type Options } from 'amqplib'
import type { Logger } from 'pino'
import { Backoff, sleep } from '../../lib/backoff.js'
import { errorMessage } from '../../lib/errors.js'

export interface AmqpCredentials {
  username?: string
  password?: string
  ca?: string
  cert?: string
  key?: string
}

export interface AmqpLinkOptions {
  /** amqp:// or amqps:// host, port and vhost; no credentials. */
  url: string
  name: string
  heartbeatSeconds: number
  timeoutMs: number
  credentials: () => Promise<AmqpCredentials>
  /** Runs on every new channel before it counts as usable (declare the exchange, ...). */
  setup?: (ch: ConfirmChannel, conn: ChannelModel) => Promise<void>
  /** Prefetch for consumers (the relay); unset for publishers. */
  prefetch?: number
  log: Logger
}

export class AmqpLink {
  private conn: ChannelModel | undefined
  private ch: ConfirmChannel | undefined
  private usable = false
  private problem: string | undefined = 'connecting'
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined
  private waiters: Array<() => void> = []
  private closedSignal: (() => void) | undefined

  constructor(private readonly o: AmqpLinkOptions) {}

  start(): this {
    this.loop ??= this.run()
    return this
  }

  health(): string | undefined {
    return this.usable ? undefined : this.problem
  }

  /** The channel once usable, waiting at most `ms`; else throws the reason. */
  async channel(ms: number): Promise<ConfirmChannel> {
    if (this.usable && this.ch) return this.ch
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      this.waiters.push(done)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
    })
    if (this.usable && this.ch) return this.ch
    throw new Error(`not connected to ${redact(this.o.url)}: ${this.problem ?? 'connecting'}`)
  }

  async close(): Promise<void> {
    this.abort.abort()
    this.closedSignal?.()
    await this.conn?.close().catch(() => undefined)
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
      try {
        const { closed } = await this.connect()
        if (signal.aborted) break
        this.usable = true
        this.problem = undefined
        backoff.reset()
        this.o.log.info({ url: redact(this.o.url) }, 'connected to the AMQP broker')
        this.wake()
        const why = await closed
        this.usable = false
        if (signal.aborted) break
        this.problem = why
      } catch (err) {
        this.usable = false
        this.problem = describe(err)
        await this.conn?.close().catch(() => undefined)
      }
      const delay = backoff.next()
      this.o.log.warn({ url: redact(this.o.url), err: this.problem, retryInMs: Math.round(delay) }, 'AMQP broker unavailable; reconnecting')
      this.wake()
      await sleep(delay, signal)
    }
    this.usable = false
    this.problem = 'closed'
  }

  /** Connects and sets up; resolves with a promise of why the link closed (wrapped: an
   *  async function returning a bare promise would wait for it). */
  private async connect(): Promise<{ closed: Promise<string> }> {
    const c = await this.o.credentials()
    const u = new URL(this.o.url)
    const tls = u.protocol === 'amqps:'
    const opts: Options.Connect = {
      protocol: tls ? 'amqps' : 'amqp',
      hostname: u.hostname,
      port: u.port ? Number(u.port) : tls ? 5671 : 5672,
      vhost: decodeURIComponent(u.pathname.replace(/^\//, '')) || '/',
      username: c.username ?? 'guest',
      password: c.password ?? 'guest',
      heartbeat: this.o.heartbeatSeconds,
    }
    const conn = await amqp.connect(opts, {
      timeout: this.o.timeoutMs,
      clientProperties: { connection_name: this.o.name },
      ...(tls ? { ca: c.ca, cert: c.cert, key: c.key, servername: u.hostname } : {}),
    })
    this.conn = conn
    const closed = new Promise<string>((resolve) => {
      this.closedSignal = () => resolve('closed')
      conn.on('error', (err: Error) => resolve(`connection error: ${describe(err)}`))
      conn.on('close', (err?: Error) => resolve(`connection closed${err ? `: ${describe(err)}` : ''}`))
      conn.on('blocked', (reason: string) => {
        this.usable = false
        this.problem = `the broker blocked publishing: ${reason} (a resource alarm: memory or disk)`
      })
      conn.on('unblocked', () => {
        this.usable = true
        this.problem = undefined
        this.wake()
      })
    })
    const ch = await conn.createConfirmChannel()
    const chClosed = new Promise<string>((resolve) => {
      ch.on('error', (err: Error) => resolve(`channel error: ${describe(err)}`))
      ch.on('close', () => resolve('channel closed'))
    })
    if (this.o.prefetch) await ch.prefetch(this.o.prefetch)
    await this.o.setup?.(ch, conn)
    this.ch = ch
    // A dead channel is a dead link: start over on a fresh connection.
    return {
      closed: Promise.race([closed, chClosed]).then(async (why) => {
        this.usable = false
        await conn.close().catch(() => undefined)
        return why
      }),
    }
  }
}

/** The URL without userinfo (policy validation refuses it; a flag might still carry it). */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    u.username = ''
    u.password = ''
    return u.toString()
  } catch {
    return '(invalid URL)'
  }
}

export function describe(err: unknown): string {
  const msg = errorMessage(err)
  if (/ACCESS.?REFUSED|403/.test(msg) && /PLAIN|login|Handshake/i.test(msg)) return `authentication failed: check username and password in the credentials Secret (${msg})`
  if (/ACCESS.?REFUSED|403/.test(msg)) return `permission denied: ${msg}; grant the user configure/write on the exchange (or read for the relay's queue)`
  if (/NOT_ALLOWED|530/.test(msg)) return `vhost access refused: ${msg}`
  if (/ECONNREFUSED/.test(msg)) return `connection refused: ${msg}`
  return msg.replace(/\/\/[^/@\s]*@/g, '//')
}
