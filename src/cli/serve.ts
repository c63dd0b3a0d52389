// `enlist serve`: the composition root. It validates every option, builds the caches,
// the policy source and the server, hands them to the manager, and maps SIGTERM to a
// draining stop.

import { type KubeVersion, parseKubeVersion } from '../admission/settings.js'
import { KubeClient, loadKubeConfig } from '../kube/client.js'
import { NamespaceCache } from '../kube/namespaces.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage, OptionError } from '../lib/errors.js'
import { isDns1123Label, isDns1123Subdomain } from '../lib/validation.js'
import { createLogger, type Logger } from '../log.js'
import { Manager, type Runnable } from '../manager.js'
import { createMetrics } from '../metrics.js'
import { INSTALL_NAMESPACE, LEASE_NAME, POLICY_CONFIGMAP } from '../names.js'
import { ConfigMapPolicySource, FilePolicySource, PolicyStore, type PolicySource } from '../policy/source.js'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { LeaderElector } from '../controller/leader.js'
import { RegistryController } from '../controller/registry-controller.js'
import { EventRecorder } from '../kube/events.js'
import { ManagedPods } from '../kube/pods.js'
import { TokenAuthenticator } from '../registration/auth.js'
import { DependencyCache } from '../registration/dependencies.js'
import { RegistrationService } from '../registration/service.js'
import { Registry } from '../registry/registry.js'
import { buildServer } from '../server/app.js'
import { registrationRoutes } from '../server/routes/registrations.js'
import { Readiness } from '../server/readiness.js'
import { CertificateFiles } from '../server/tls.js'
import { type FlagSpecs, helpText, type Parsed, parseFlags } from './flags.js'

export const serveFlags = {
  port: { kind: 'int', env: 'ENLIST_PORT', default: '8443', min: 1, max: 65535, help: 'HTTPS port for every endpoint' },
  'bind-address': { kind: 'string', env: 'ENLIST_BIND_ADDRESS', default: '0.0.0.0', help: 'address to listen on' },
  'tls-cert': { kind: 'string', env: 'ENLIST_TLS_CERT', default: '/etc/enlist/tls/tls.crt', help: 'serving certificate (PEM), re-read when it changes' },
  'tls-key': { kind: 'string', env: 'ENLIST_TLS_KEY', default: '/etc/enlist/tls/tls.key', help: 'serving key (PEM), re-read when it changes' },
  'tls-ca': { kind: 'string', env: 'ENLIST_TLS_CA', help: 'CA bundle the registrar trusts (default: ca.crt beside --tls-cert)' },
  policy: { kind: 'string', env: 'ENLIST_POLICY', help: 'policy file, watched; instead of the ConfigMap' },
  'policy-configmap': {
    kind: 'string',
    env: 'ENLIST_POLICY_CONFIGMAP',
    default: `${INSTALL_NAMESPACE}/${POLICY_CONFIGMAP}`,
    help: 'policy ConfigMap as namespace/name, watched (key policy.yaml)',
  },
  kubeconfig: { kind: 'string', help: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  'kube-version': { kind: 'string', env: 'ENLIST_KUBE_VERSION', help: 'target Kubernetes version, e.g. 1.30 (default: ask the apiserver)' },
  'body-limit': { kind: 'bytes', env: 'ENLIST_BODY_LIMIT', default: '8Mi', min: 1024, help: 'largest request body accepted; larger ones get 413' },
  'shutdown-delay': { kind: 'duration', env: 'ENLIST_SHUTDOWN_DELAY', default: '0s', help: 'on SIGTERM, keep serving this long while not ready' },
  'namespace-wait': { kind: 'duration', env: 'ENLIST_NAMESPACE_WAIT', default: '1s', max: 10_000, help: 'wait this long for a namespace the cache has not seen' },
  'leader-elect': { kind: 'bool', env: 'ENLIST_LEADER_ELECT', default: 'true', help: 'run the controller only on the replica holding the lease' },
  'leader-election-namespace': { kind: 'string', env: 'ENLIST_POD_NAMESPACE', default: INSTALL_NAMESPACE, help: 'namespace of the lease and of backend Secrets' },
  identity: { kind: 'string', env: 'ENLIST_POD_NAME', help: 'this replica in the lease (default: hostname and a random suffix)' },
  'lease-duration': { kind: 'duration', env: 'ENLIST_LEASE_DURATION', default: '15s', min: 1000, help: 'how long followers wait on a silent leader' },
  'renew-deadline': { kind: 'duration', env: 'ENLIST_RENEW_DEADLINE', default: '10s', min: 500, help: 'a leader that cannot renew for this long steps down' },
  'retry-period': { kind: 'duration', env: 'ENLIST_RETRY_PERIOD', default: '2s', min: 100, help: 'how often the lease is renewed or tried' },
  'backend-budget': { kind: 'duration', env: 'ENLIST_BACKEND_BUDGET', default: '10s', min: 100, help: 'a registration retries backend writes this long before answering 503' },
  'log-level': { kind: 'string', env: 'ENLIST_LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error or fatal' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export type ServeOptions = Parsed<typeof serveFlags>

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']

export function validateServeOptions(o: ServeOptions): void {
  if (!LEVELS.includes(o['log-level'])) throw new OptionError(`--log-level: ${JSON.stringify(o['log-level'])} is invalid; accepted: ${LEVELS.join(', ')}`)
  const cm = o['policy-configmap'].split('/')
  if (cm.length !== 2 || !isDns1123Label(cm[0]!) || !isDns1123Subdomain(cm[1]!)) {
    throw new OptionError(`--policy-configmap: ${JSON.stringify(o['policy-configmap'])} is invalid; accepted: namespace/name`)
  }
  if (o['kube-version'] !== undefined) parseKubeVersion(o['kube-version'])
  if (o['renew-deadline'] >= o['lease-duration']) throw new OptionError('--renew-deadline must be shorter than --lease-duration')
  if (o['retry-period'] >= o['renew-deadline']) throw new OptionError('--retry-period must be shorter than --renew-deadline')
}

/** Asks the apiserver its version once at start (retrying until it answers). */
class ServerVersion implements Runnable {
  readonly name = 'server-version'
  value: KubeVersion | undefined
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    fixed: KubeVersion | undefined,
  ) {
    this.value = fixed
  }

  start(): void {
    if (this.value) return
    this.loop = (async () => {
      const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 })
      while (!this.abort.signal.aborted) {
        try {
          const v = await this.client.version()
          this.value = { major: v.major, minor: v.minor }
          this.log.info({ version: v.gitVersion }, 'kube-apiserver version')
          return
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'cannot read the apiserver version; retrying')
          await sleep(backoff.next(), this.abort.signal)
        }
      }
    })()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
  }
}

export async function serve(argv: readonly string[]): Promise<void> {
  const o = parseFlags(serveFlags, argv)
  if (o.help) {
    console.log(helpText('serve [flags]', 'Run the webhook, the registration API and the controller.', serveFlags))
    return
  }
  validateServeOptions(o)

  const log = createLogger(o['log-level'])
  const metrics = createMetrics()
  const readiness = new Readiness()
  const certificate = new CertificateFiles({ certFile: o['tls-cert'], keyFile: o['tls-key'], caFile: o['tls-ca'], log, metrics })
  const client = new KubeClient(loadKubeConfig(o.kubeconfig))
  const version = new ServerVersion(client, log, o['kube-version'] ? parseKubeVersion(o['kube-version']) : undefined)

  const namespaces = new NamespaceCache(client, log)
  metrics.probes.namespaces = () => namespaces.size
  const policy = new PolicyStore(log, metrics)
  let source: PolicySource
  if (o.policy) source = new FilePolicySource(o.policy, policy, log)
  else {
    const [ns, name] = o['policy-configmap'].split('/') as [string, string]
    source = new ConfigMapPolicySource(client, ns, name, policy, log)
  }

  // Registration: caches on every replica, the API on every replica, the controller on the leader.
  const installNamespace = o['leader-election-namespace']
  const identity = o.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`
  const pods = new ManagedPods(client, log)
  const dependencies = new DependencyCache(client, log)
  const registry = new Registry(client, pods, installNamespace, metrics, log)
  policy.onChange((p) => registry.configure(p.spec))
  const events = new EventRecorder(client, log, identity)
  const registration = new RegistrationService({
    client,
    auth: new TokenAuthenticator(client, metrics),
    pods,
    dependencies,
    registry,
    events,
    log,
    backendBudgetMs: o['backend-budget'],
  })
  const controller = new RegistryController({
    client,
    pods,
    registry,
    events,
    metrics,
    log,
    sweepIntervalMs: () => (policy.current?.spec.registry.reconcileIntervalSeconds ?? 60) * 1000,
  })
  const leader: Pick<Runnable, 'start' | 'stop'> = o['leader-elect']
    ? new LeaderElector({
        client,
        namespace: installNamespace,
        name: LEASE_NAME,
        identity,
        leaseDurationMs: o['lease-duration'],
        renewDeadlineMs: o['renew-deadline'],
        retryPeriodMs: o['retry-period'],
        log,
        metrics,
        onStartedLeading: () => controller.start(),
        onStoppedLeading: () => controller.stop(),
      })
    : { start: () => controller.start(), stop: () => controller.stop() }

  readiness.add('certificate', () => undefined)
  readiness.add('policy', () => (policy.current ? undefined : `no valid policy loaded${policy.lastError ? `: ${policy.lastError}` : ' yet'}`))
  readiness.add('namespace-cache', () => (namespaces.synced ? undefined : `namespace cache not synced${namespaces.reflector.error ? `: ${namespaces.reflector.error}` : ''}`))
  readiness.add('server-version', () => (version.value ? undefined : 'apiserver version not known yet'))
  readiness.add('pod-cache', () => (pods.synced ? undefined : `managed pod cache not synced${pods.reflector.error ? `: ${pods.reflector.error}` : ''}`))
  readiness.add('dependency-cache', () => (dependencies.synced ? undefined : 'service and endpoints caches not synced'))

  const app = await buildServer({
    host: o['bind-address'],
    port: o.port,
    bodyLimit: o['body-limit'],
    certificate,
    log,
    metrics,
    readiness,
    admission: {
      policy,
      namespaces,
      serverVersion: () => version.value,
      caBundle: () => certificate.current.ca,
      namespaceWaitMs: o['namespace-wait'],
    },
    plugins: [
      async (app) => {
        await app.register(registrationRoutes, { service: registration, metrics })
      },
    ],
  })

  const manager = new Manager(log, readiness, o['shutdown-delay'])
    .add({ name: 'kube-client', start: () => undefined, stop: async () => client.close() })
    .add({ name: 'certificate', start: () => certificate.start(), stop: () => certificate.stop() })
    .add(version)
    .add({ name: 'namespace-cache', start: () => namespaces.start(), stop: () => namespaces.stop() })
    .add({ name: 'policy-source', start: () => source.start(), stop: () => source.stop() })
    .add({ name: 'pod-cache', start: () => pods.start(), stop: () => pods.stop() })
    .add({ name: 'dependency-cache', start: () => dependencies.start(), stop: () => dependencies.stop() })
    .add({
      name: 'server',
      start: async () => {
        await app.listen({ host: o['bind-address'], port: o.port })
        log.info({ address: `https://${o['bind-address']}:${o.port}`, policy: o.policy ?? o['policy-configmap'] }, 'enlist serving')
      },
      stop: () => app.close(),
    })
    // last to start, first to stop: the controller stops and the lease is released first
    .add({ name: 'leader-election', start: () => leader.start(), stop: () => leader.stop() })

  runUntilSignal(manager, log)
  await manager.start()
}

/** SIGTERM or SIGINT: drain and exit 0; a second signal exits at once. */
export function runUntilSignal(manager: Manager, log: Logger): void {
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      log.flush()
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down')
    manager
      .stop()
      .then(() => {
        log.info('stopped')
        log.flush(() => process.exit(0))
      })
      .catch((err: unknown) => {
        log.error({ err: errorMessage(err) }, 'shutdown failed')
        log.flush(() => process.exit(1))
      })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
