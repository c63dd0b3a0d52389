// Where the apiserver is and how to prove who we are, as kubectl finds them: in-cluster,
// or the kubeconfig files of --kubeconfig or $KUBECONFIG (merged, the first file to name a
// thing wins), or ~/.kube/config. Tokens, token files, client certificates, basic auth and
// impersonation are read here, directly, because client-node's KubeConfig loads its whole
// generated API (some 70 MB of memory) with it. A kubeconfig that needs anything more (an
// exec plugin, an auth provider, a proxy) is handed whole to client-node, imported only
// then, and asked for every connection, so a plugin's rotating certificate is used too.

import { createHash } from 'node:crypto'
import { existsSync, readFileSync, type Stats } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import type http from 'node:http'
import https from 'node:https'
import { homedir } from 'node:os'
import { delimiter, dirname, isAbsolute, join } from 'node:path'
import type { KubeConfig } from '@kubernetes/client-node'
import { parse } from 'yaml'
import { OptionError } from '../lib/errors.js'

export interface TlsOptions {
  ca?: string
  cert?: string
  key?: string
  rejectUnauthorized: boolean
  servername?: string
}

export type Headers = Record<string, string | string[]>

/** What one request goes out with when client-node builds it. */
export interface Connection {
  agent: http.Agent
  headers: Headers
}

export interface Credentials {
  server: URL
  tls: TlsOptions
  /** The Authorization header, refreshed as its source requires; undefined: none. */
  authorization(): Promise<string | undefined>
  /** Headers every request carries besides Authorization (impersonation). */
  headers?: Headers
  /** Set when client-node builds each connection (exec plugins, auth providers, proxies):
   *  it then supplies the agent and every header, and `tls` is only informative. */
  connection?(): Promise<Connection>
  /** The apiserver refused the credentials (401): re-read what can be re-read before one
   *  more try. True when something may have changed. */
  refresh?(): boolean
  /** Where these came from, for messages. */
  source: string
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
// Bound service-account tokens are rotated by the kubelet (an atomic swap of the projected
// volume's files); client-go re-reads the file each minute. We also notice the swap itself
// (the file's identity changes) within a second, and re-read at once after a 401.
const TOKEN_REREAD_MS = 60_000
const TOKEN_STAT_MS = 1_000

function fail(message: string): never {
  throw new OptionError(message)
}

const stampOf = (s: Stats): string => `${s.ino}:${s.mtimeMs}:${s.size}`

/** A bearer token file, re-read when it changes, every minute, and after a 401. */
export class TokenFile {
  private value: string | undefined
  private stamp = ''
  private readAt = 0
  private checkedAt = 0

  constructor(
    readonly path: string,
    private readonly now: () => number = Date.now,
  ) {}

  async header(): Promise<string> {
    const now = this.now()
    if (this.value === undefined || now - this.readAt >= TOKEN_REREAD_MS) return this.read(now)
    if (now - this.checkedAt >= TOKEN_STAT_MS) {
      this.checkedAt = now
      const s = await stat(this.path).catch(() => undefined)
      if (s && stampOf(s) !== this.stamp) return this.read(now)
    }
    return `Bearer ${this.value}`
  }

  /** Forces a re-read on the next request. */
  refresh(): boolean {
    this.readAt = 0
    return true
  }

  private async read(now: number): Promise<string> {
    try {
      const [text, s] = await Promise.all([readFile(this.path, 'utf8'), stat(this.path)])
      this.value = text.trim()
      this.stamp = stampOf(s)
      this.readAt = this.checkedAt = now
    } catch (err) {
      // as client-go: the last value read stays in use while the file cannot be read
      if (this.value === undefined) throw new OptionError(`cannot read token file ${this.path}: ${(err as Error).message}`)
      this.readAt = now - TOKEN_REREAD_MS + TOKEN_STAT_MS
    }
    return `Bearer ${this.value}`
  }
}

export function inClusterCredentials(dir = SA_DIR, env: NodeJS.ProcessEnv = process.env): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT ?? '443'
  if (!host) fail('not in a cluster: KUBERNETES_SERVICE_HOST is not set')
  const token = new TokenFile(join(dir, 'token'))
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    tls: { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), rejectUnauthorized: true },
    authorization: () => token.header(),
    refresh: () => token.refresh(),
    source: 'in-cluster service account',
  }
}

interface Named {
  name: string
}
interface RawKubeconfig {
  'current-context'?: string
  contexts?: Array<Named & { context?: { cluster?: string; user?: string } }>
  clusters?: Array<Named & { cluster?: Record<string, unknown> }>
  users?: Array<Named & { user?: Record<string, unknown> }>
}

/** --kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config. */
export async function loadCredentials(kubeconfig?: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  if (kubeconfig !== undefined) {
    if (!existsSync(kubeconfig)) fail(`--kubeconfig: ${kubeconfig}: no such file`)
    return fromKubeconfigFiles([kubeconfig])
  }
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean)
  if (listed.length > 0) {
    // as kubectl: files of the list that do not exist are skipped, but one must
    if (!listed.some((p) => existsSync(p))) fail(`KUBECONFIG: none of its files exists: ${listed.join(delimiter)}`)
    return fromKubeconfigFiles(listed)
  }
  if (env.KUBERNETES_SERVICE_HOST) return inClusterCredentials(SA_DIR, env)
  const home = join(env.HOME ?? homedir(), '.kube', 'config')
  if (existsSync(home)) return fromKubeconfigFiles([home])
  fail('no Kubernetes cluster configured: set KUBECONFIG or --kubeconfig, or run in a pod')
}

// Anything here in the current user or cluster needs client-node.
const CLIENT_NODE_USER = ['exec', 'auth-provider'] as const
const CLIENT_NODE_CLUSTER = ['proxy-url'] as const

export async function fromKubeconfigFiles(paths: readonly string[]): Promise<Credentials> {
  const present = paths.filter((p) => existsSync(p))
  const where = paths.join(delimiter)
  if (present.length === 0) fail(`kubeconfig ${where}: no such file`)
  // Merged as client-go merges: the first file to name a thing wins.
  const merged = { contexts: [] as NonNullable<RawKubeconfig['contexts']>, clusters: [] as NonNullable<RawKubeconfig['clusters']>, users: [] as NonNullable<RawKubeconfig['users']>, current: undefined as string | undefined }
  const dirOf = new Map<object, string>()
  for (const p of present) {
    let doc: RawKubeconfig
    try {
      doc = (parse(readFileSync(p, 'utf8')) ?? {}) as RawKubeconfig
    } catch (err) {
      fail(`kubeconfig ${p} is not YAML: ${(err as Error).message}`)
    }
    if (typeof doc !== 'object') fail(`kubeconfig ${p} is not a kubeconfig (a YAML mapping)`)
    merged.current ??= doc['current-context'] || undefined
    for (const kind of ['contexts', 'clusters', 'users'] as const) {
      const into = merged[kind] as Named[]
      for (const item of (doc[kind] ?? []) as Named[]) {
        if (!item || typeof item.name !== 'string' || into.some((x) => x.name === item.name)) continue
        into.push(item)
        dirOf.set(item, dirname(p))
      }
    }
  }
  if (!merged.current) fail(`kubeconfig ${where} has no current-context`)
  const ctx = merged.contexts.find((c) => c.name === merged.current)?.context
  if (!ctx) fail(`kubeconfig ${where}: context ${merged.current} not found`)
  const clusterEntry = merged.clusters.find((c) => c.name === ctx.cluster)
  const userEntry = merged.users.find((u) => u.name === ctx.user)
  const cluster = clusterEntry?.cluster
  if (!cluster?.server) fail(`kubeconfig ${where}: cluster ${ctx.cluster ?? '(none)'} has no server`)
  const user = userEntry?.user ?? {}
  const headers = impersonation(user)

  if (CLIENT_NODE_USER.some((k) => user[k] !== undefined) || CLIENT_NODE_CLUSTER.some((k) => cluster[k] !== undefined)) {
    return viaClientNode(present, merged.current, headers, `kubeconfig ${where} (via client-node)`)
  }

  const cdir = dirOf.get(clusterEntry!) ?? '.'
  const udir = userEntry ? (dirOf.get(userEntry) ?? '.') : '.'
  const file = (base: string, f: unknown): string => {
    const path = isAbsolute(String(f)) ? String(f) : join(base, String(f))
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      fail(`kubeconfig ${where}: cannot read ${path}: ${(err as Error).message}`)
    }
  }
  const data = (v: unknown) => Buffer.from(String(v), 'base64').toString('utf8')
  const pick = (o: Record<string, unknown>, base: string, dataKey: string, fileKey: string) =>
    o[dataKey] !== undefined ? data(o[dataKey]) : o[fileKey] !== undefined ? file(base, o[fileKey]) : undefined

  const tls: TlsOptions = {
    ca: pick(cluster, cdir, 'certificate-authority-data', 'certificate-authority'),
    cert: pick(user, udir, 'client-certificate-data', 'client-certificate'),
    key: pick(user, udir, 'client-key-data', 'client-key'),
    rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true,
    servername: typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined,
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) fail(`kubeconfig ${where}: user ${ctx.user ?? ''} has a client certificate without its key, or a key without its certificate`)
  const base = { server: new URL(String(cluster.server)), tls, headers, source: `kubeconfig ${where}` }
  // client-go: a token file, when given, takes precedence over a token
  if (typeof user.tokenFile === 'string' && user.tokenFile !== '') {
    const token = new TokenFile(isAbsolute(user.tokenFile) ? user.tokenFile : join(udir, user.tokenFile))
    return { ...base, authorization: () => token.header(), refresh: () => token.refresh() }
  }
  if (typeof user.token === 'string' && user.token !== '') {
    const bearer = `Bearer ${user.token}`
    return { ...base, authorization: async () => bearer }
  }
  if (user.username !== undefined) {
    const basic = `Basic ${Buffer.from(`${String(user.username)}:${String(user.password ?? '')}`).toString('base64')}`
    return { ...base, authorization: async () => basic }
  }
  return { ...base, authorization: async () => undefined }
}

/** Impersonation headers, as kubectl sends them for `as`, `as-uid`, `as-groups`, `as-user-extra`. */
function impersonation(user: Record<string, unknown>): Headers {
  const h: Headers = {}
  if (typeof user.as === 'string' && user.as !== '') h['Impersonate-User'] = user.as
  if (typeof user['as-uid'] === 'string' && user['as-uid'] !== '') h['Impersonate-Uid'] = user['as-uid']
  if (Array.isArray(user['as-groups']) && user['as-groups'].length > 0) h['Impersonate-Group'] = user['as-groups'].map(String)
  const extra = user['as-user-extra']
  if (extra && typeof extra === 'object') {
    for (const [k, v] of Object.entries(extra as Record<string, unknown>)) {
      h[`Impersonate-Extra-${encodeURIComponent(k)}`] = (Array.isArray(v) ? v : [v]).map(String)
    }
  }
  return h
}

/** The merged kubeconfig, handed whole to client-node. */
async function viaClientNode(paths: readonly string[], current: string, headers: Headers, source: string): Promise<Credentials> {
  const { KubeConfig } = await import('@kubernetes/client-node')
  const kc = new KubeConfig()
  // client-node merges files by refusing duplicates; kubectl lets the first win
  const parts = paths.map((p) => {
    const one = new KubeConfig()
    one.loadFromFile(p) // relative certificate paths become absolute here
    return one
  })
  const firstWins = <T extends Named>(lists: T[][]): T[] => {
    const out: T[] = []
    for (const l of lists) for (const x of l) if (!out.some((y) => y.name === x.name)) out.push(x)
    return out
  }
  kc.loadFromOptions({
    clusters: firstWins(parts.map((p) => p.clusters)),
    users: firstWins(parts.map((p) => p.users)),
    contexts: firstWins(parts.map((p) => p.contexts)),
    currentContext: current,
  })
  return fromKubeConfig(kc, source, headers)
}

/** Adapts a client-node KubeConfig: each connection is built by it, so whatever its
 *  authenticators and proxies produce (a plugin's certificate included) is used. */
export function fromKubeConfig(kc: KubeConfig, source = 'client-node KubeConfig', headers: Headers = {}): Credentials {
  const cluster = kc.getCurrentCluster()
  if (!cluster) fail('the KubeConfig has no current cluster')
  let current: { fingerprint: string; agent: http.Agent } | undefined
  const connection = async (): Promise<Connection> => {
    const opts: https.RequestOptions & { headers?: http.OutgoingHttpHeaders; auth?: string } = {}
    await kc.applyToHTTPSOptions(opts)
    // A new agent only when what it connects with changed (a rotated plugin certificate):
    // otherwise keep-alive connections are reused.
    const fingerprint = createHash('sha256')
      .update([opts.ca, opts.cert, opts.key, String(opts.rejectUnauthorized), opts.servername].map((v) => (v === undefined ? '' : String(v))).join('\u0000'))
      .digest('hex')
    if (current?.fingerprint !== fingerprint) {
      current?.agent.destroy()
      const agent: http.Agent & { keepAlive?: boolean } = (opts.agent as http.Agent | undefined) ?? new https.Agent()
      // client-node makes its agents without keep-alive; Node reads the flag per socket
      agent.keepAlive = true
      current = { fingerprint, agent }
    }
    const out: Headers = { ...headers }
    for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) out[k] = Array.isArray(v) ? v.map(String) : String(v)
    if (opts.auth) out.Authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`
    return { agent: current.agent, headers: out }
  }
  return {
    server: new URL(cluster.server),
    tls: { rejectUnauthorized: !cluster.skipTLSVerify, servername: cluster.tlsServerName },
    authorization: async () => {
      const h = (await connection()).headers.Authorization
      return Array.isArray(h) ? h[0] : h
    },
    connection,
    source,
  }
}
