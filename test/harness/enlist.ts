// enlist on a test control plane, installed as a user installs it: the manifests from
// manifests/base (only the webhook's clientConfig points at loopback), and the server
// running as the enlist ServiceAccount, so RBAC is exercised for real.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, parseAllDocuments, stringify } from 'yaml'
import { cleanEnv, ENLIST } from '../helpers/cli.js'
import { makePki, request, type TestPki } from '../helpers/https.js'
import { type ControlPlane, kubeconfigYaml } from './control-plane.js'
import { freePort, type Owner, owned, supervise, type Supervised, waitFor } from './processes.js'
import { requestToken } from './k8s.js'
import { tempDir } from '../helpers/temp.js'
import { kustomize } from './kustomize.js'

const REPO = new URL('../../', import.meta.url).pathname

// No kubelet runs the Deployment; policy/v1 PodDisruptionBudgets are not served by 1.20.
const NOT_INSTALLED = new Set(['Deployment', 'PodDisruptionBudget'])

export interface InstalledManifests {
  objects: Array<Record<string, unknown>>
}

/**
 * Applies manifests/base with the webhook pointed at https://127.0.0.1:port, and the
 * policy's registrationURL too (what an admin sets when enlist is reached by URL).
 */
export async function installManifests(
  cp: ControlPlane,
  port: number,
  caPem: string,
  opts: { dir?: string; policy?: (p: Record<string, unknown>) => void } = {},
): Promise<InstalledManifests> {
  const dir = opts.dir ?? 'manifests/base'
  const k = await kustomize(join(REPO, dir))
  if (k.code !== 0) throw new Error(`kustomize ${dir}: ${k.stderr}`)
  const objects = parseAllDocuments(k.stdout)
    .map((d) => d.toJS() as Record<string, unknown>)
    .filter((o) => o && !NOT_INSTALLED.has(String(o.kind)))
  for (const o of objects) {
    if (o.kind === 'MutatingWebhookConfiguration') pointWebhooksAt(o, port, caPem)
    if (o.kind === 'ConfigMap' && (o.metadata as { name: string }).name === 'enlist-policy') {
      const data = o.data as Record<string, string>
      const policy = parse(data['policy.yaml']!) as Record<string, Record<string, unknown>>
      policy.registrar = { ...(policy.registrar ?? {}), registrationURL: `https://127.0.0.1:${port}/v1/registrations` }
      // every test cluster has a name: the shared backends the tests run need one
      policy.cluster = { name: 'e2e', ...(policy.cluster ?? {}) }
      opts.policy?.(policy)
      data['policy.yaml'] = stringify(policy)
    }
  }
  const r = await cp.kubectl(['apply', '-f', '-'], { input: objects.map((o) => stringify(o)).join('---\n') })
  if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`)
  return { objects }
}

export function pointWebhooksAt(o: Record<string, unknown>, port: number, caPem: string): void {
  for (const w of o.webhooks as Array<{ clientConfig: Record<string, unknown> }>) {
    w.clientConfig = { url: `https://127.0.0.1:${port}/mutate`, caBundle: Buffer.from(caPem).toString('base64') }
  }
}

/** A kubeconfig for a ServiceAccount, from a TokenRequest; `server` overrides the apiserver URL. */
export async function serviceAccountKubeconfig(cp: ControlPlane, namespace: string, name: string, dir: string, server = cp.server): Promise<string> {
  const token = await requestToken(cp, namespace, name, { expirationSeconds: 86400 })
  const path = join(dir, `kubeconfig-${namespace}-${name}`)
  writeFileSync(path, kubeconfigYaml(server, cp.ca.cert, token, namespace), { mode: 0o600 })
  return path
}

export interface LogLine {
  level: string
  msg: string
  [k: string]: unknown
}

export interface EnlistServer {
  url: string
  port: number
  pki: TestPki
  /** The CA that verifies this server now (the self-managed one reads its Secret). */
  ca(): Promise<string>
  process: Supervised
  kubeconfig: string
  /** Parsed JSON log lines so far. */
  logs(): LogLine[]
  metrics(): Promise<string>
  /** One series' value (`name` or `name{labels}` as exposed), undefined when absent. */
  metric(series: string): Promise<number | undefined>
  /** Waits for a log line matching `pred`. */
  waitForLog(what: string, pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** The plain-HTTP metrics listener (--metrics-bind-address), where /readyz?verbose says why. */
  metricsUrl: string
  /** /readyz?verbose from the metrics listener: the checks that fail and the warnings. */
  readyz(): Promise<{ status: number; warnings: Array<{ check: string; reason: string }> }>
  stop(): Promise<number | null>
  /** Starts the same server again (same port, certificate and flags). */
  restart(opts?: { waitReady?: boolean }): Promise<void>
}

export interface StartEnlistOptions {
  port?: number
  pki?: TestPki
  args?: string[]
  /** Run as this kubeconfig instead of the enlist ServiceAccount. */
  kubeconfig?: string
  /** Reach the apiserver at this URL (a fault proxy in front of it), as the enlist ServiceAccount. */
  apiserver?: string
  env?: NodeJS.ProcessEnv
  install?: boolean
  /** Edits the installed policy (a parsed policy.yaml). */
  policy?: (p: Record<string, unknown>) => void
  /** Manifests to install (default manifests/base). */
  manifests?: string
  /** Run with --self-signed: the server's CA is in the Secret enlist-system/enlist-tls. */
  selfSigned?: boolean
}

/** One series' value in a Prometheus exposition (`name` or `name{labels}`), undefined when absent. */
export function metricValue(exposition: string, series: string): number | undefined {
  const m = new RegExp(`^${series.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')} (\\S+)$`, 'm').exec(exposition)
  return m ? Number(m[1]) : undefined
}

export interface Namespaces {
  /** Labelled enlist.io/inject=enabled. */
  optIn?: readonly string[]
  /** Unlabelled. */
  plain?: readonly string[]
  /** Labelled enlist.io/inject=disabled. */
  disabled?: readonly string[]
}

/** Creates the namespaces a test uses: opted in, then plain, then disabled. */
export async function createNamespaces(cp: ControlPlane, ns: Namespaces): Promise<void> {
  for (const n of ns.optIn ?? []) await cp.namespace(n, { 'enlist.io/inject': 'enabled' })
  for (const n of ns.plain ?? []) await cp.namespace(n)
  for (const n of ns.disabled ?? []) await cp.namespace(n, { 'enlist.io/inject': 'disabled' })
}

/**
 * How an end-to-end file starts enlist: installed and serving (startEnlist), stopped when `t`
 * ends, then the namespaces the file uses created.
 */
export async function enlistFor(t: Owner, cp: ControlPlane, opts: StartEnlistOptions & Namespaces = {}): Promise<EnlistServer> {
  const server = await owned(t, startEnlist(cp, opts), (s) => s.stop())
  await createNamespaces(cp, opts)
  return server
}

export async function startEnlist(cp: ControlPlane, opts: StartEnlistOptions = {}): Promise<EnlistServer> {
  const port = opts.port ?? (await freePort())
  const pki = opts.pki ?? (await makePki())
  if (opts.install !== false) await installManifests(cp, port, pki.ca.cert, { policy: opts.policy, dir: opts.manifests })
  const dir = tempDir('enlist-srv-')
  const kubeconfig = opts.kubeconfig ?? (await serviceAccountKubeconfig(cp, 'enlist-system', 'enlist', dir, opts.apiserver))
  const metricsPort = opts.args?.some((a) => a.startsWith('--metrics-bind-address')) ? undefined : await freePort()
  const args = [
    ENLIST,
    'serve',
    `--kubeconfig=${kubeconfig}`,
    `--port=${port}`,
    // readiness details are served on the metrics listener only (never to tenants)
    ...(metricsPort ? [`--metrics-bind-address=127.0.0.1:${metricsPort}`] : []),
    '--bind-address=127.0.0.1',
    `--tls-cert=${pki.certFile}`,
    `--tls-key=${pki.keyFile}`,
    '--log-level=debug',
    ...(opts.args ?? []),
  ]
  let proc!: Supervised
  const ca = async (): Promise<string> => {
    if (!opts.selfSigned) return pki.ca.cert
    const secret = await cp.client.get<{ data?: Record<string, string> }>('/api/v1/namespaces/enlist-system/secrets/enlist-tls')
    return Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString()
  }
  const server: EnlistServer = {
    url: `https://127.0.0.1:${port}`,
    port,
    pki,
    ca,
    get process() {
      return proc
    },
    kubeconfig,
    logs: () => {
      const out: LogLine[] = []
      for (const l of proc.lines) {
        try {
          out.push(JSON.parse(l) as LogLine)
        } catch {
          // not JSON (a crash trace): kept in the log file
        }
      }
      return out
    },
    metrics: async () => (await request(`${server.url}/metrics`, { ca: await ca() })).body,
    metric: async (series) => metricValue(await server.metrics(), series),
    waitForLog: (what, pred, timeoutMs = 15_000) => waitFor(what, async () => server.logs().find(pred), timeoutMs, 50),
    metricsUrl: metricsPort ? `http://127.0.0.1:${metricsPort}` : '',
    readyz: async () => {
      if (!metricsPort) throw new Error('this enlist was started with its own --metrics-bind-address')
      const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz?verbose`)
      const body = (await r.json()) as { warnings?: Array<{ check: string; reason: string }> }
      return { status: r.status, warnings: body.warnings ?? [] }
    },
    stop: () => proc.stop('SIGTERM', 15_000),
    restart: async (o = {}) => {
      await launch(o.waitReady ?? true)
    },
  }
  const launch = async (waitReady = true): Promise<void> => {
    proc = supervise('enlist', process.execPath, args, { logFile: join(cp.dir, `enlist-${port}.log`), env: { ...cleanEnv(), ...opts.env }, keepLines: true })
    if (!waitReady) return
    await waitFor(
      'enlist /readyz',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`enlist exited ${proc.child.exitCode}: ${proc.lines.slice(-5).join('\n')}`)
        return (await request(`${server.url}/readyz`, { ca: await ca(), timeoutMs: 1000 })).status === 200
      },
      30_000,
      100,
    )
  }
  await launch()
  return server
}
