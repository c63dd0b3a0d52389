// Where the apiserver is and how to prove who we are: in-cluster, or a kubeconfig with a
// token, token file or client certificate. These are read here, directly, because
// client-node's KubeConfig loads its whole generated API (some 70 MB of memory) with it.
// Kubeconfigs that need an exec plugin or an auth-provider are handed to client-node,
// imported only then, so every kind of credential keeps working.

import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
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

export interface Credentials {
  server: URL
  tls: TlsOptions
  /** The Authorization header, refreshed as its source requires; undefined: none. */
  authorization(): Promise<string | undefined>
  /** Where these came from, for messages. */
  source: string
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
// Bound service-account tokens are rotated by the kubelet; client-go re-reads each minute.
const TOKEN_REREAD_MS = 60_000

function fail(message: string): never {
  throw new OptionError(message)
}

/** A token file, re-read at most once a minute. */
function tokenFile(path: string): () => Promise<string | undefined> {
  let cached: { at: number; value: string } | undefined
  return async () => {
    if (!cached || Date.now() - cached.at > TOKEN_REREAD_MS) {
      cached = { at: Date.now(), value: (await readFile(path, 'utf8')).trim() }
    }
    return `Bearer ${cached.value}`
  }
}

export function inClusterCredentials(dir = SA_DIR, env: NodeJS.ProcessEnv = process.env): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT ?? '443'
  if (!host) fail('not in a cluster: KUBERNETES_SERVICE_HOST is not set')
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    tls: { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), rejectUnauthorized: true },
    authorization: tokenFile(join(dir, 'token')),
    source: 'in-cluster service account',
  }
}

interface RawKubeconfig {
  'current-context'?: string
  contexts?: Array<{ name: string; context?: { cluster?: string; user?: string } }>
  clusters?: Array<{ name: string; cluster?: Record<string, unknown> }>
  users?: Array<{ name: string; user?: Record<string, unknown> }>
}

/** $KUBECONFIG (or the path given), in-cluster, or ~/.kube/config: as kubectl and client-go look. */
export async function loadCredentials(kubeconfig?: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const paths = kubeconfig ? [kubeconfig] : (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean)
  if (paths.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST) return inClusterCredentials(SA_DIR, env)
    const home = join(homedir(), '.kube', 'config')
    if (existsSync(home)) paths.push(home)
    else fail('no Kubernetes cluster configured: set KUBECONFIG or --kubeconfig, or run in a pod')
  }
  return fromKubeconfigFiles(paths)
}

export async function fromKubeconfigFiles(paths: readonly string[]): Promise<Credentials> {
  // Merged as client-go merges: the first file to name a thing wins.
  const merged: Required<Pick<RawKubeconfig, 'contexts' | 'clusters' | 'users'>> & { current?: string; dirOf: Map<object, string> } = {
    contexts: [],
    clusters: [],
    users: [],
    dirOf: new Map(),
  }
  for (const p of paths) {
    if (!existsSync(p)) continue
    let doc: RawKubeconfig
    try {
      doc = (parse(readFileSync(p, 'utf8')) ?? {}) as RawKubeconfig
    } catch (err) {
      fail(`kubeconfig ${p} is not YAML: ${(err as Error).message}`)
    }
    merged.current ??= doc['current-context']
    for (const kind of ['contexts', 'clusters', 'users'] as const) {
      for (const item of (doc[kind] ?? []) as Array<{ name: string }>) {
        if ((merged[kind] as Array<{ name: string }>).some((x) => x.name === item.name)) continue
        ;(merged[kind] as Array<{ name: string }>).push(item)
        merged.dirOf.set(item, dirname(p))
      }
    }
  }
  const where = paths.join(delimiter)
  if (!merged.current) fail(`kubeconfig ${where} has no current-context`)
  const ctx = merged.contexts.find((c) => c.name === merged.current)?.context
  if (!ctx) fail(`kubeconfig ${where}: context ${merged.current} not found`)
  const clusterEntry = merged.clusters.find((c) => c.name === ctx.cluster)
  const userEntry = merged.users.find((u) => u.name === ctx.user)
  const cluster = clusterEntry?.cluster
  if (!cluster?.server) fail(`kubeconfig ${where}: cluster ${ctx.cluster ?? '(none)'} has no server`)
  const user = userEntry?.user ?? {}

  if (user.exec !== undefined || user['auth-provider'] !== undefined) return viaClientNode(paths)

  const cdir = merged.dirOf.get(clusterEntry!) ?? '.'
  const udir = userEntry ? (merged.dirOf.get(userEntry) ?? '.') : '.'
  const file = (base: string, f: unknown) => readFileSync(isAbsolute(String(f)) ? String(f) : join(base, String(f)), 'utf8')
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
  let authorization: () => Promise<string | undefined> = async () => undefined
  if (typeof user.token === 'string' && user.token !== '') authorization = async () => `Bearer ${String(user.token)}`
  else if (user.tokenFile !== undefined) authorization = tokenFile(isAbsolute(String(user.tokenFile)) ? String(user.tokenFile) : join(udir, String(user.tokenFile)))
  else if (user.username !== undefined) {
    const basic = `Basic ${Buffer.from(`${String(user.username)}:${String(user.password ?? '')}`).toString('base64')}`
    authorization = async () => basic
  }
  return { server: new URL(String(cluster.server)), tls, authorization, source: `kubeconfig ${where}` }
}

/** client-node's KubeConfig, for credentials only it can produce (exec, auth-provider). */
async function viaClientNode(paths: readonly string[]): Promise<Credentials> {
  const { KubeConfig } = await import('@kubernetes/client-node')
  const kc = new KubeConfig()
  kc.loadFromFile(paths[0]!)
  return fromKubeConfig(kc, `kubeconfig ${paths[0]} (exec or auth-provider, via client-node)`)
}

/** Adapts a client-node KubeConfig (for callers that already have one). */
export function fromKubeConfig(kc: KubeConfig, source = 'client-node KubeConfig'): Credentials {
  const cluster = kc.getCurrentCluster()
  if (!cluster) fail('the KubeConfig has no current cluster')
  const user = kc.getCurrentUser()
  const read = (d?: string, f?: string) => (d ? Buffer.from(d, 'base64').toString('utf8') : f ? readFileSync(f, 'utf8') : undefined)
  return {
    server: new URL(cluster.server),
    tls: {
      ca: read(cluster.caData, cluster.caFile),
      cert: read(user?.certData, user?.certFile),
      key: read(user?.keyData, user?.keyFile),
      rejectUnauthorized: !cluster.skipTLSVerify,
      servername: cluster.tlsServerName,
    },
    authorization: async () => {
      const opts: { headers?: Record<string, string> } = {}
      await kc.applyToHTTPSOptions(opts)
      return opts.headers?.Authorization
    },
    source,
  }
}
