// `enlist serve`: the composition root. It validates every option, builds the caches, the
// policy source, the registration service, the controller and the server, hands them to
// the manager, and maps SIGTERM to a draining stop.

import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { parseKubeVersion } from '../admission/settings.js'
import type { CertificateAuthority } from '../certs/self-managed.js'
import { LeaderElector } from '../controller/leader.js'
import { KeyRotator, KeyStore } from '../decision/keys.js'
import { RegistryController } from '../controller/registry-controller.js'
import { StatusPublisher } from '../controller/status-publisher.js'
import { KubeClient } from '../kube/client.js'
import { ServerVersion } from '../kube/server-version.js'
import { loadCredentials } from '../kube/credentials.js'
import { EventRecorder } from '../kube/events.js'
import { NamespaceCache } from '../kube/namespaces.js'
import { ClusterUid } from '../kube/cluster-uid.js'
import { sealKeyOfView } from '../kube/pod-view.js'
import { ManagedPods } from '../kube/pods.js'
import { SecretReader } from '../kube/secrets.js'
import { errorMessage, OptionError } from '../lib/errors.js'
import { isDns1123Label, isDns1123Subdomain } from '../lib/validation.js'
import { createLogger, type Logger } from '../log.js'
import { Manager } from '../manager.js'
import { createMetrics } from '../metrics.js'
import { DECISION_KEYS_SECRET, INSTALL_NAMESPACE, LEASE_NAME, POLICY_CONFIGMAP, WEBHOOK_CONFIGURATION } from '../names.js'
import { imageReferenceError } from '../policy/load.js'
import { ConfigMapPolicySource, FilePolicySource, type PolicySource, PolicyStore } from '../policy/source.js'
import { DEFAULT_AUTH_LIMITS, TokenAuthenticator } from '../registration/auth.js'
import { DependencyCache } from '../registration/dependencies.js'
import { RegistrationService } from '../registration/service.js'
import { kubeJwks, TokenVerifier } from '../registration/token-verifier.js'
import { recordAnnotationsOf, recordLabelsOf } from '../registry/kubernetes.js'
import { BackendSet } from '../registry/backend-set.js'
import type { FastifyInstance } from 'fastify'
import { buildMetricsServer, buildServer, closeGracefully, type EnlistServer, parseBindAddress } from '../server/app.js'
import { Readiness } from '../server/readiness.js'
import { CertificateFiles } from '../certs/files.js'
import type { CertificateProvider } from '../certs/provider.js'
import { type FlagSpecs, helpText, type Parsed, parseFlags, requireReadable } from './flags.js'

export const serveFlags = {
  port: { kind: 'int', env: 'ENLIST_PORT', default: '8443', min: 1, max: 65535, help: 'HTTPS port for every endpoint' },
  'bind-address': { kind: 'string', env: 'ENLIST_BIND_ADDRESS', default: '0.0.0.0', help: 'address to listen on' },
  'metrics-bind-address': {
    kind: 'string',
    env: 'ENLIST_METRICS_BIND_ADDRESS',
    help: 'also serve /metrics, /healthz and /readyz over plain HTTP at HOST:PORT or :PORT (default: off; HTTPS only)',
  },
  image: {
    kind: 'string',
    env: 'ENLIST_IMAGE',
    help: "enlist's own image: the registrar's when the policy sets no registrar.image (the manifests set it from the Deployment)",
  },
  'tls-cert': { kind: 'string', env: 'ENLIST_TLS_CERT', default: '/etc/enlist/tls/tls.crt', help: 'serving certificate (PEM), re-read when it changes' },
  'tls-key': { kind: 'string', env: 'ENLIST_TLS_KEY', default: '/etc/enlist/tls/tls.key', help: 'serving key (PEM), re-read when it changes' },
  'tls-ca': { kind: 'string', env: 'ENLIST_TLS_CA', help: 'CA bundle the registrar trusts (default: ca.crt beside --tls-cert)' },
  'self-signed': { kind: 'bool', env: 'ENLIST_SELF_SIGNED', default: 'false', help: 'make, store, publish and rotate its own CA and certificate (no --tls-* files)' },
  'tls-secret': { kind: 'string', env: 'ENLIST_TLS_SECRET', default: 'enlist-tls', help: 'self-signed: the Secret holding CA and certificate' },
  'webhook-configuration': { kind: 'string', env: 'ENLIST_WEBHOOK_CONFIGURATION', default: WEBHOOK_CONFIGURATION, help: 'self-signed: the MutatingWebhookConfiguration whose caBundle is kept current' },
  'cert-dns-names': { kind: 'list', env: 'ENLIST_CERT_DNS_NAMES', help: 'self-signed: DNS names (default: the enlist Service\'s names in the install namespace)' },
  'cert-ip-addresses': { kind: 'list', env: 'ENLIST_CERT_IP_ADDRESSES', default: '', help: 'self-signed: IP addresses in the certificate' },
  'cert-validity': { kind: 'duration', env: 'ENLIST_CERT_VALIDITY', default: '2160h', min: 3000, help: 'self-signed: serving certificate lifetime; renewed with a third left' },
  'ca-validity': { kind: 'duration', env: 'ENLIST_CA_VALIDITY', default: '87600h', min: 6000, help: 'self-signed: CA lifetime; renewed with a third left' },
  'ca-overlap': { kind: 'duration', env: 'ENLIST_CA_OVERLAP', default: '24h', min: 1000, help: 'self-signed: a new CA is trusted this long before it signs' },
  'cert-check-interval': { kind: 'duration', env: 'ENLIST_CERT_CHECK_INTERVAL', default: '1m', min: 500, help: 'self-signed: how often the leader checks the certificates' },
  policy: { kind: 'string', env: 'ENLIST_POLICY', help: 'policy file, watched; instead of the ConfigMap' },
  'policy-configmap': {
    kind: 'string',
    env: 'ENLIST_POLICY_CONFIGMAP',
    default: `${INSTALL_NAMESPACE}/${POLICY_CONFIGMAP}`,
    help: 'policy ConfigMap as namespace/name, watched (key policy.yaml)',
  },
  kubeconfig: { kind: 'string', help: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  'api-request-timeout': {
    kind: 'duration',
    env: 'ENLIST_API_REQUEST_TIMEOUT',
    default: '30s',
    min: 100,
    max: 600_000,
    help: 'each apiserver request but a watch (TokenReview, pod reads, list pages, writes) completes within this, answer included',
  },
  'api-max-response-size': { kind: 'bytes', env: 'ENLIST_API_MAX_RESPONSE_SIZE', default: '64Mi', min: 65536, help: 'the largest apiserver answer (a list page) or watch event accepted' },
  'kube-version': { kind: 'string', env: 'ENLIST_KUBE_VERSION', help: 'target Kubernetes version, e.g. 1.30 (default: ask the apiserver)' },
  'body-limit': {
    kind: 'bytes',
    env: 'ENLIST_BODY_LIMIT',
    default: '3Mi',
    min: 1024,
    help: 'largest AdmissionReview accepted; larger ones get 413 (the apiserver sends at most 3 MiB)',
  },
  'max-long-polls': {
    kind: 'int',
    env: 'ENLIST_MAX_LONG_POLLS',
    default: '2000',
    min: 1,
    help: 'registrations held waiting for dependencies at once; more get 429 and Retry-After',
  },
  'max-long-polls-per-pod': {
    kind: 'int',
    env: 'ENLIST_MAX_LONG_POLLS_PER_POD',
    default: '2',
    min: 1,
    help: 'registrations one pod may have waiting at once',
  },
  'token-reviews-per-second': {
    kind: 'int',
    env: 'ENLIST_TOKEN_REVIEWS_PER_SECOND',
    default: '100',
    min: 1,
    help: 'TokenReviews of tokens not in the cache per second (burst 4x; past it, a token queues up to 2 s, then 429)',
  },
  'token-reviews-per-pod': {
    kind: 'int',
    env: 'ENLIST_TOKEN_REVIEWS_PER_POD',
    default: '5',
    min: 1,
    help: 'new tokens one pod may have reviewed at once (then one every 10 s; more get 429): a tenant minting tokens cannot use up the TokenReview budget',
  },
  'max-namespace-waiters': {
    kind: 'int',
    env: 'ENLIST_MAX_NAMESPACE_WAITERS',
    default: '1000',
    min: 1,
    help: 'admission reviews waiting at once for a namespace the cache has not seen; more are decided at once as if it were unknown (counted)',
  },
  'shutdown-delay': { kind: 'duration', env: 'ENLIST_SHUTDOWN_DELAY', default: '0s', help: 'on SIGTERM, keep serving this long while not ready' },
  'namespace-wait': { kind: 'duration', env: 'ENLIST_NAMESPACE_WAIT', default: '1s', max: 10_000, help: 'wait this long for a namespace the cache has not seen' },
  'leader-elect': { kind: 'bool', env: 'ENLIST_LEADER_ELECT', default: 'true', help: 'run the controller only on the replica holding the lease (false: on this replica, alone)' },
  'leader-election-namespace': { kind: 'string', env: 'ENLIST_POD_NAMESPACE', default: INSTALL_NAMESPACE, help: 'namespace of the lease, the TLS Secret and backend Secrets' },
  identity: { kind: 'string', env: 'ENLIST_POD_NAME', help: 'this replica in the lease (default: hostname and a random suffix)' },
  'lease-duration': { kind: 'duration', env: 'ENLIST_LEASE_DURATION', default: '15s', min: 1000, help: 'how long followers wait on a silent leader' },
  'renew-deadline': { kind: 'duration', env: 'ENLIST_RENEW_DEADLINE', default: '10s', min: 500, help: 'a leader that cannot renew for this long steps down' },
  'retry-period': { kind: 'duration', env: 'ENLIST_RETRY_PERIOD', default: '2s', min: 100, help: 'how often the lease is renewed or tried' },
  'decision-key-rotation': {
    kind: 'duration',
    env: 'ENLIST_DECISION_KEY_ROTATION',
    default: '720h',
    min: 60_000,
    help: 'the leader adds a new key sealing enlist.io/status decisions this often; old keys stay while live pods name them',
  },
  'decision-key-propagation': {
    kind: 'duration',
    env: 'ENLIST_DECISION_KEY_PROPAGATION',
    default: '2m',
    min: 1000,
    help: 'a new decision key is used only this long after it is written, once every replica holds it',
  },
  'backend-budget': { kind: 'duration', env: 'ENLIST_BACKEND_BUDGET', default: '10s', min: 100, help: 'a registration retries backend writes this long before answering 503' },
  'log-level': { kind: 'string', env: 'ENLIST_LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error or fatal' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export type ServeOptions = Parsed<typeof serveFlags>

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']

export function validateServeOptions(o: ServeOptions): void {
  if (o._.length > 0) {
    throw new OptionError(`unexpected argument ${JSON.stringify(o._[0])}: serve takes flags only (a boolean is written --leader-elect=false or --leader-elect false)`)
  }
  for (const ip of o['cert-ip-addresses']) {
    if (isIP(ip) === 0 || ip.includes('%')) throw new OptionError(`--cert-ip-addresses: ${JSON.stringify(ip)} is not an IP address; accepted: IPv4 or IPv6 addresses separated by commas`)
  }
  if (!LEVELS.includes(o['log-level'])) throw new OptionError(`--log-level: ${JSON.stringify(o['log-level'])} is invalid; accepted: ${LEVELS.join(', ')}`)
  const cm = o['policy-configmap'].split('/')
  if (cm.length !== 2 || !isDns1123Label(cm[0]!) || !isDns1123Subdomain(cm[1]!)) {
    throw new OptionError(`--policy-configmap: ${JSON.stringify(o['policy-configmap'])} is invalid; accepted: namespace/name`)
  }
  if (o['kube-version'] !== undefined) parseKubeVersion(o['kube-version'])
  if (o.image !== undefined) {
    const problem = imageReferenceError(o.image)
    if (problem) throw new OptionError(`--image (ENLIST_IMAGE): ${problem}`)
  }
  if (o['metrics-bind-address'] !== undefined) {
    try {
      parseBindAddress(o['metrics-bind-address'])
    } catch (err) {
      throw new OptionError(`--metrics-bind-address: ${errorMessage(err)}`)
    }
  }
  if (o.kubeconfig !== undefined) requireReadable(o.kubeconfig, '--kubeconfig')
  if (o['renew-deadline'] >= o['lease-duration']) throw new OptionError('--renew-deadline must be shorter than --lease-duration')
  if (o['retry-period'] >= o['renew-deadline']) throw new OptionError('--retry-period must be shorter than --renew-deadline')
  if (o['self-signed'] && o['ca-overlap'] >= o['ca-validity'] / 3) throw new OptionError('--ca-overlap must be shorter than a third of --ca-validity')
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
  const credentials = await loadCredentials(o.kubeconfig)
  // files named on the command line must be there at start (they are re-read later)
  if (o.policy !== undefined) requireReadable(o.policy, '--policy')
  if (!o['self-signed']) {
    requireReadable(o['tls-cert'], '--tls-cert')
    requireReadable(o['tls-key'], '--tls-key')
    if (o['tls-ca'] !== undefined) requireReadable(o['tls-ca'], '--tls-ca')
  }
  const client = new KubeClient(credentials, {
    requestTimeoutMs: o['api-request-timeout'],
    maxResponseBytes: o['api-max-response-size'],
    metrics,
    log,
  })
  const installNamespace = o['leader-election-namespace']
  const identity = o.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`
  const manager = new Manager({
    log,
    readiness,
    shutdownDelayMs: o['shutdown-delay'],
    // Leader-only work gets the leadership's signal: losing the lease abandons its calls at once.
    leaderElection: o['leader-elect']
      ? (hooks) =>
          new LeaderElector({
            client,
            namespace: installNamespace,
            name: LEASE_NAME,
            identity,
            leaseDurationMs: o['lease-duration'],
            renewDeadlineMs: o['renew-deadline'],
            retryPeriodMs: o['retry-period'],
            log,
            metrics,
            ...hooks,
            // two leaders must never act at once: better a restart of this replica
            onStopOverrun: () => log.flush(() => process.exit(1)),
          })
      : undefined, // --leader-elect=false: this replica leads alone
  }).add({ name: 'kube-client', start: () => undefined, stop: async () => client.close() })

  // --- the serving certificate: files, or the self-managed Secret --------------
  let certificate: CertificateProvider
  let certificateReady: () => Promise<void>
  let authority: CertificateAuthority | undefined
  if (o['self-signed']) {
    // pkijs and the CA code load only in this mode
    const { CertificateAuthority, SecretCertificates } = await import('../certs/self-managed.js')
    const secret = new SecretCertificates(client, installNamespace, o['tls-secret'], log, metrics)
    const svc = 'enlist'
    authority = new CertificateAuthority({
      client,
      namespace: installNamespace,
      secretName: o['tls-secret'],
      webhookConfiguration: o['webhook-configuration'],
      policy: {
        caValidityMs: o['ca-validity'],
        servingValidityMs: o['cert-validity'],
        caOverlapMs: o['ca-overlap'],
        dnsNames: o['cert-dns-names'] ?? [`${svc}.${installNamespace}.svc`, `${svc}.${installNamespace}.svc.cluster.local`, `${svc}.${installNamespace}`, svc],
        ipAddresses: o['cert-ip-addresses'],
      },
      intervalMs: o['cert-check-interval'],
      log,
      metrics,
    })
    certificate = secret
    certificateReady = () => secret.waitUntilReady()
    readiness.add('certificate', () => (secret.ready ? undefined : `waiting for a certificate in Secret ${installNamespace}/${o['tls-secret']}`))
  } else {
    certificate = new CertificateFiles({ certFile: o['tls-cert'], keyFile: o['tls-key'], caFile: o['tls-ca'], log, metrics })
    certificateReady = async () => undefined
  }
  manager.add(certificate)

  // --- admission: namespaces and the policy -----------------------------------
  const version = new ServerVersion(client, log, o['kube-version'] ? parseKubeVersion(o['kube-version']) : undefined)
  const namespaces = new NamespaceCache(client, log)
  metrics.probes.namespaces = () => namespaces.size
  const policy = new PolicyStore(log, metrics, { image: o.image })
  let source: PolicySource
  if (o.policy) source = new FilePolicySource(o.policy, policy, log)
  else {
    const [ns, name] = o['policy-configmap'].split('/') as [string, string]
    source = new ConfigMapPolicySource(client, ns, name, policy, log)
  }

  // --- the keys that seal admission's decisions: every replica reads, the leader rotates --
  const keys = new KeyStore(client, installNamespace, DECISION_KEYS_SECRET, log, metrics)

  // --- registration: caches and the API on every replica -----------------------
  const pods = new ManagedPods(client, log, { ring: () => keys.ring })
  keys.onChange((ring) => pods.keysChanged(ring))
  const dependencies = new DependencyCache(client, log)
  const registry = new BackendSet(client, pods, new SecretReader(client, installNamespace), metrics, log)
  policy.onChange((p) => {
    pods.setRecordAnnotations(recordAnnotationsOf(p.spec))
    pods.setRecordLabels(recordLabelsOf(p.spec))
    void registry.configure(p.spec)
  })
  manager.add({ name: 'registry', start: () => undefined, stop: () => registry.close() })
  const clusterUid = new ClusterUid(client, log, (uid) => registry.setClusterUid(uid))
  readiness.addReport(() => registry.health().map((h) => ({ check: `backend ${h.backend}`, reason: h.reason })))
  const events = new EventRecorder(client, log, identity)
  // Registration tokens verified against the issuer keys before a TokenReview (fair queueing by namespace)
  const tokenVerifier = new TokenVerifier({ fetchKeys: kubeJwks(client), log })
  readiness.addReport(() => {
    const note = tokenVerifier.note()
    return note ? [{ check: 'token-verification', reason: note }] : []
  })
  const registration = new RegistrationService({
    client,
    auth: new TokenAuthenticator(
      client,
      metrics,
      {
        ...DEFAULT_AUTH_LIMITS,
        reviewsPerSecond: o['token-reviews-per-second'],
        reviewBurst: 4 * o['token-reviews-per-second'],
        podReviewBurst: o['token-reviews-per-pod'],
      },
      tokenVerifier,
      log,
    ),
    policy: () => policy.current,
    namespaces,
    pods,
    dependencies,
    registry,
    events,
    keys,
    metrics,
    log,
    backendBudgetMs: o['backend-budget'],
    longPolls: { total: o['max-long-polls'], perPod: o['max-long-polls-per-pod'] },
  })
  readiness.onDrain(() => registration.drain())

  // --- the leader's work: the controller, and self-managed certificates -------------
  const sweepIntervalMs = (): number => (policy.current?.spec.registry.reconcileIntervalSeconds ?? 60) * 1000
  // `enlist status` reads what the leader found at its last sweep
  const statusPublisher = new StatusPublisher({ client, namespace: installNamespace, identity, cluster: () => registry.cluster, sweepIntervalSeconds: () => sweepIntervalMs() / 1000, log })
  const controller = new RegistryController({
    client,
    pods,
    registry,
    events,
    metrics,
    log,
    keysKnown: () => keys.ring !== undefined,
    sweepIntervalMs,
    sweepRate: () => policy.current?.spec.registry.sweepRequestsPerSecond ?? 50,
    onSweepReport: (backends) => statusPublisher.publish(backends),
  })
  const rotator = new KeyRotator({
    client,
    store: keys,
    policy: { rotateAfterMs: o['decision-key-rotation'], propagationMs: o['decision-key-propagation'], retainMs: 24 * 3600_000 },
    referenced: () => {
      if (!pods.synced) return undefined
      const ids = new Set<string>()
      for (const p of pods.pods()) {
        const k = sealKeyOfView(p)
        if (k) ids.add(k)
      }
      return ids
    },
    intervalMs: 60_000,
    log,
    metrics,
  })
  readiness.add('policy', () => (policy.current ? undefined : `no valid policy loaded${policy.lastError ? `: ${policy.lastError}` : ' yet'}`))
  readiness.add('namespace-cache', () => (namespaces.synced ? undefined : `namespace cache not synced${namespaces.reflector.error ? `: ${namespaces.reflector.error}` : ''}`))
  readiness.add('server-version', () => (version.value ? undefined : 'apiserver version not known yet'))
  readiness.add('decision-keys', () =>
    keys.ready ? undefined : `no decision key yet in Secret ${installNamespace}/${DECISION_KEYS_SECRET}${keys.problem ? `: ${keys.problem}` : keys.reflector.error ? `: ${keys.reflector.error}` : ' (the leader creates it)'}`,
  )
  // Admission needs only the above: a fresh replica serves it within seconds whatever the
  // cluster's size. The pod and dependency caches sync meanwhile (the registration API
  // answers 503 while it cannot judge dependencies); /readyz?verbose says how far they are.
  readiness.addReport(() => {
    const out: Array<{ check: string; reason: string }> = []
    if (!pods.synced) out.push({ check: 'pod-cache', reason: `managed pod cache syncing: ${pods.reflector.listed} pods listed${pods.reflector.error ? `; ${pods.reflector.error}` : ''}` })
    if (!dependencies.synced) out.push({ check: 'dependency-cache', reason: dependencies.waitingReason })
    return out
  })

  // the optional plain-HTTP listener for metrics and probes, up from the start
  let plain: FastifyInstance | undefined
  const plainAt = o['metrics-bind-address'] !== undefined ? parseBindAddress(o['metrics-bind-address']) : undefined
  if (plainAt) {
    manager.add({
      name: 'metrics-server',
      start: async () => {
        const server = await buildMetricsServer({ metrics, readiness })
        plain = server
        await server.listen(plainAt)
        log.info({ address: `http://${plainAt.host}:${plainAt.port}` }, 'serving /metrics, /healthz and /readyz over plain HTTP')
      },
      stop: async () => {
        await plain?.close()
      },
    })
  }

  let app: EnlistServer | undefined
  manager.add(version).add(clusterUid).add(namespaces).add(source).add(keys).add(pods).add(dependencies)
  // Leader only, in this order; the election starts here, before the server: in
  // self-managed mode the leader makes the certificate it serves.
  if (authority) manager.add(authority)
  manager
    .add(rotator)
    .add(statusPublisher)
    .add(controller)
    .add({
      name: 'server',
      start: async () => {
        await certificateReady()
        if (readiness.shuttingDown) return
        app = await buildServer({
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
            keys: () => {
              const signing = keys.signingKey()
              return keys.ring && signing ? { ring: keys.ring, signing } : undefined
            },
            namespaceWaitMs: o['namespace-wait'],
            maxNamespaceWaiters: o['max-namespace-waiters'],
          },
          registration: { service: registration },
        })
        await app.listen({ host: o['bind-address'], port: o.port })
        log.info({ address: `https://${o['bind-address']}:${o.port}`, policy: o.policy ?? o['policy-configmap'], identity, selfSigned: o['self-signed'] }, 'enlist serving')
      },
      stop: async () => {
        if (app) await closeGracefully(app)
      },
    })

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
  // A crash still writes its last lines (the logger batches).
  process.on('uncaughtException', (err) => {
    log.fatal({ err: errorMessage(err), stack: err.stack }, 'uncaught exception: exiting')
    log.flush(() => process.exit(1))
  })
}
