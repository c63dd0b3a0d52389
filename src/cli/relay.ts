// `enlist relay`: the consumer service for the event-stream backends. Flags, each also from
// an environment variable, are validated before anything connects.

import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OptionError, errorMessage } from '../lib/errors.js'
import { createLogger } from '../log.js'
import { INSTALL_NAMESPACE } from '../names.js'
import { backendUrlErrors } from '../policy/backends/http.js'
import { connectionUrlErrors } from '../policy/backends/checks.js'
import { isDns1123Label } from '../lib/validation.js'
import { type FlagSpecs, helpText, type Parsed, parseFlags } from './flags.js'
import type { EventSource } from '../relay/source.js'

export const relayFlags = {
  source: { kind: 'string', env: 'ENLIST_RELAY_SOURCE', help: 'nats or amqp (required)' },
  url: { kind: 'string', env: 'ENLIST_RELAY_URL', help: 'broker URL(s): tls:// (comma separated) or amqps://, nats:// or amqp:// with --allow-insecure; no credentials (required)' },
  'allow-insecure': { kind: 'bool', env: 'ENLIST_RELAY_ALLOW_INSECURE', default: 'false', help: 'accept a plaintext --url (nats://, amqp://): events and credentials cross the network in clear' },
  'credentials-dir': {
    kind: 'string',
    env: 'ENLIST_RELAY_CREDENTIALS_DIR',
    default: '/etc/enlist/relay/credentials',
    help: 'a mounted Secret: user/password, token or creds (nats), username/password (amqp), ca.crt, tls.crt, tls.key; read on every connect',
  },
  'cmdb-url': { kind: 'string', env: 'ENLIST_RELAY_CMDB_URL', help: 'the CMDB: PUT {url}/{uid}, DELETE {url}/{uid}, GET {url}; https, no credentials (required)' },
  'cmdb-allow-insecure-http': { kind: 'bool', env: 'ENLIST_RELAY_CMDB_ALLOW_INSECURE_HTTP', default: 'false', help: 'accept an http:// --cmdb-url (records and headers cross the network in clear)' },
  'cmdb-max-response-size': { kind: 'bytes', env: 'ENLIST_RELAY_CMDB_MAX_RESPONSE_SIZE', default: '16Mi', min: 1024, help: 'the largest CMDB answer (one list page) accepted' },
  'cmdb-headers-dir': { kind: 'string', env: 'ENLIST_RELAY_CMDB_HEADERS_DIR', default: '/etc/enlist/relay/cmdb-headers', help: 'a mounted Secret: each file a header name, its content the value' },
  'cmdb-ca': { kind: 'string', env: 'ENLIST_RELAY_CMDB_CA', help: 'PEM file to verify the CMDB (default: the system roots)' },
  'cmdb-timeout': { kind: 'duration', env: 'ENLIST_RELAY_CMDB_TIMEOUT', default: '5s', min: 100, max: 60_000, help: 'per CMDB request' },
  cluster: {
    kind: 'string',
    env: 'ENLIST_RELAY_CLUSTER',
    help: 'the source cluster (its policy cluster.name): events of other clusters are skipped, and the rebuild changes only CMDB entries carrying this cluster; required by --rebuild',
  },
  stream: { kind: 'string', env: 'ENLIST_RELAY_STREAM', default: 'ENLIST_REGISTRATIONS', help: 'nats: the events stream' },
  'subject-prefix': { kind: 'string', env: 'ENLIST_RELAY_SUBJECT_PREFIX', default: 'enlist.registrations', help: 'nats: the backend\'s subjectPrefix' },
  consumer: { kind: 'string', env: 'ENLIST_RELAY_CONSUMER', help: 'nats: the durable consumer (created if absent); default enlist-relay, or enlist-relay-<cluster> with --cluster' },
  bucket: { kind: 'string', env: 'ENLIST_RELAY_BUCKET', default: 'enlist-registrations', help: 'nats: the registrations bucket (the snapshot)' },
  'tombstone-bucket': { kind: 'string', env: 'ENLIST_RELAY_TOMBSTONE_BUCKET', default: 'enlist-relay-tombstones', help: 'nats: where applied deregistrations are kept' },
  exchange: { kind: 'string', env: 'ENLIST_RELAY_EXCHANGE', default: 'enlist.registrations', help: 'amqp: the backend\'s exchange' },
  queue: { kind: 'string', env: 'ENLIST_RELAY_QUEUE', help: 'amqp: the durable queue (declared and bound to every event); default enlist-relay, or enlist-relay-<cluster> with --cluster' },
  'queue-type': { kind: 'string', env: 'ENLIST_RELAY_QUEUE_TYPE', default: 'quorum', help: 'amqp: quorum (replicated) or classic' },
  namespace: { kind: 'string', env: 'ENLIST_POD_NAMESPACE', default: INSTALL_NAMESPACE, help: 'amqp: the namespace of enlist\'s ledger and the relay\'s tombstones' },
  'ledger-backend': { kind: 'string', env: 'ENLIST_RELAY_LEDGER_BACKEND', default: 'amqp', help: 'amqp: the backend\'s name in the enlist policy (its ledger entries)' },
  kubeconfig: { kind: 'string', help: 'amqp: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  'tombstone-retention': { kind: 'duration', env: 'ENLIST_RELAY_TOMBSTONE_RETENTION', default: '168h', min: 60_000, help: 'keep tombstones this long: at least the longest an event can wait (the stream\'s max age)' },
  timeout: { kind: 'duration', env: 'ENLIST_RELAY_TIMEOUT', default: '5s', min: 100, max: 60_000, help: 'bounded wait for each broker call' },
  rebuild: { kind: 'bool', default: 'false', help: 'make the CMDB equal to the snapshot, then exit' },
  'replay-dead-letters': {
    kind: 'bool',
    default: 'false',
    help: 'apply each dead letter present now once (signature checked again unless --allow-unsigned), remove those applied, keep those that fail again, then exit',
  },
  'allow-unsigned': {
    kind: 'bool',
    env: 'ENLIST_RELAY_ALLOW_UNSIGNED',
    default: 'false',
    help: 'apply events without a valid Enlist-Signature (anyone who can publish on the broker could then write the CMDB); default: such events go to the dead-letter place',
  },
  'signing-keys-dir': {
    kind: 'string',
    env: 'ENLIST_RELAY_SIGNING_KEYS_DIR',
    default: '/etc/enlist/relay/signing-keys',
    help: 'a mounted Secret: <cluster>.json per source cluster (its enlist-event-signing-key keyring.json), _unmarked.json for events without data.cluster; read again every 30s',
  },
  'dead-letter-stream': { kind: 'string', env: 'ENLIST_RELAY_DEAD_LETTER_STREAM', default: 'ENLIST_REGISTRATIONS_DEAD', help: 'nats: the dead-letter stream (created if absent)' },
  'dead-letter-subject-prefix': {
    kind: 'string',
    env: 'ENLIST_RELAY_DEAD_LETTER_SUBJECT_PREFIX',
    default: 'enlist.dead-letters',
    help: 'nats: the dead-letter stream\'s subjects (<prefix>.>); this relay\'s are <prefix>.<consumer>',
  },
  'dead-letter-exchange': { kind: 'string', env: 'ENLIST_RELAY_DEAD_LETTER_EXCHANGE', default: 'enlist.registrations.dead', help: 'amqp: the dead-letter exchange (direct, declared)' },
  'dead-letter-queue': { kind: 'string', env: 'ENLIST_RELAY_DEAD_LETTER_QUEUE', help: 'amqp: this relay\'s dead-letter queue (declared); default <queue>.dead' },
  'no-initial-rebuild': { kind: 'bool', env: 'ENLIST_RELAY_NO_INITIAL_REBUILD', default: 'false', help: 'do not rebuild from the snapshot when the consumer or queue is new' },
  port: { kind: 'int', env: 'ENLIST_RELAY_PORT', default: '8080', min: 0, max: 65535, help: '/healthz, /readyz, /metrics (plain HTTP)' },
  'bind-address': { kind: 'string', env: 'ENLIST_RELAY_BIND_ADDRESS', default: '0.0.0.0', help: 'address of that port' },
  'log-level': { kind: 'string', env: 'ENLIST_LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export type RelayFlags = Parsed<typeof relayFlags>

const NAME = /^[A-Za-z0-9_-]{1,255}$/

/** The durable consumer or queue: one per source cluster, since relays sharing one would each
 *  get a part of the events, and skip the other cluster's part. */
export function durableName(given: string | undefined, cluster: string | undefined): string {
  return given ?? (cluster === undefined ? 'enlist-relay' : `enlist-relay-${cluster}`)
}

export function validateRelayOptions(o: RelayFlags): asserts o is RelayFlags & { source: 'nats' | 'amqp'; url: string; 'cmdb-url': string } {
  if (o.source !== 'nats' && o.source !== 'amqp') throw new OptionError(`--source: ${JSON.stringify(o.source ?? '')} is invalid; accepted: nats, amqp`)
  if (!o.url) throw new OptionError('--url is required: the broker URL')
  const protocols = o.source === 'nats' ? ['nats:', 'tls:'] : ['amqp:', 'amqps:']
  const problems: string[] = []
  const rules = { plain: protocols[0]!, tls: protocols[1]!, allowInsecure: o['allow-insecure'], allowSetting: '--allow-insecure', credentialsIn: '--credentials-dir' }
  for (const raw of o.url.split(',')) connectionUrlErrors(raw.trim(), rules, '--url', (_at, m) => problems.push(m))
  if (problems.length > 0) throw new OptionError(`--url: ${problems.join('; ')}`)
  if (!o['cmdb-url']) throw new OptionError('--cmdb-url is required: the CMDB to apply events to')
  // the same rules as the http backend's url in the policy; never echo a URL that may hold a password
  backendUrlErrors({ url: o['cmdb-url'], allowInsecureHTTP: o['cmdb-allow-insecure-http'] }, '--cmdb-url', (_at, m) => problems.push(m), {
    allowSetting: '--cmdb-allow-insecure-http',
    credentialsIn: '--cmdb-headers-dir',
  })
  if (problems.length > 0) throw new OptionError(`--cmdb-url: ${problems.join('; ')}`)
  if (o.cluster !== undefined && !isDns1123Label(o.cluster)) {
    throw new OptionError(`--cluster: ${JSON.stringify(o.cluster)} is invalid; accepted: the source cluster's policy cluster.name (a DNS-1123 label: lower-case letters, digits and '-', at most 63)`)
  }
  if (o.rebuild && o.cluster === undefined) {
    throw new OptionError(
      '--rebuild requires --cluster: it deletes CMDB entries, and only those carrying the named cluster\'s mark are its to delete (other clusters may feed the same CMDB); accepted: --cluster=<the source cluster\'s policy cluster.name>',
    )
  }
  if (o.rebuild && o['replay-dead-letters']) throw new OptionError('--rebuild and --replay-dead-letters: one at a time')
  const names = { stream: o.stream, consumer: durableName(o.consumer, o.cluster), bucket: o.bucket, 'tombstone-bucket': o['tombstone-bucket'], 'dead-letter-stream': o['dead-letter-stream'] }
  for (const [f, v] of Object.entries(names)) {
    if (!NAME.test(v)) throw new OptionError(`--${f}: ${JSON.stringify(v)} is invalid; accepted: letters, digits, '-' and '_'`)
  }
  if (!/^[^\s.*>$]+(\.[^\s.*>]+)*$/.test(o['dead-letter-subject-prefix'])) {
    throw new OptionError(`--dead-letter-subject-prefix: ${JSON.stringify(o['dead-letter-subject-prefix'])} is invalid; accepted: dot-separated tokens without spaces or wildcards, not starting with $`)
  }
  if (o['queue-type'] !== 'quorum' && o['queue-type'] !== 'classic') throw new OptionError(`--queue-type: ${JSON.stringify(o['queue-type'])} is invalid; accepted: quorum, classic`)
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(o['log-level'])) throw new OptionError(`--log-level: ${JSON.stringify(o['log-level'])} is invalid`)
}

/** A mounted Secret as key -> value; a missing directory is no credentials. */
export async function readSecretDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out
    throw err
  }
  for (const n of names) {
    if (n.startsWith('..') || n.startsWith('.')) continue // the kubelet's atomic-writer links
    try {
      out[n] = await readFile(join(dir, n), 'utf8')
    } catch {
      // a directory or vanished file
    }
  }
  return out
}

/** The relay's signing keys, read before anything connects: without --allow-unsigned an
 *  empty or unreadable directory (or, with --cluster, no file for it) is a start-up error,
 *  not a relay that dead-letters every event. */
export async function loadRelayKeys(o: RelayFlags, log: import('pino').Logger): Promise<import('../relay/keys.js').RelayKeys> {
  const { RelayKeys } = await import('../relay/keys.js')
  const keys = new RelayKeys(o['signing-keys-dir'], log)
  if (o.rebuild) return keys // the snapshot is read from the ledger, not from events
  if (o['allow-unsigned']) {
    await keys.load().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'signing keys unreadable; --allow-unsigned applies every event anyway'))
    log.warn('--allow-unsigned: events without a valid signature are applied; anyone who can publish on the broker can write the CMDB')
    return keys
  }
  let rings: ReadonlyMap<string | undefined, unknown>
  try {
    rings = await keys.load()
  } catch (err) {
    throw new OptionError(`--signing-keys-dir: ${errorMessage(err)}`)
  }
  const how = "mount the source cluster's Secret enlist-event-signing-key (key keyring.json) as <cluster>.json, or start with --allow-unsigned (docs/events.md, Signatures)"
  if (rings.size === 0) throw new OptionError(`--signing-keys-dir: no signing keys in ${o['signing-keys-dir']}: ${how}`)
  if (o.cluster !== undefined && !rings.has(o.cluster)) throw new OptionError(`--signing-keys-dir: no ${o.cluster}.json in ${o['signing-keys-dir']} for --cluster=${o.cluster}: ${how}`)
  return keys
}

export async function relayCommand(argv: readonly string[]): Promise<number> {
  const o = parseFlags(relayFlags, argv)
  if (o.help) {
    console.log(helpText('relay [flags]', 'Apply registration events from NATS JetStream or RabbitMQ to an HTTP CMDB, idempotently.', relayFlags))
    return 0
  }
  validateRelayOptions(o)
  // --rebuild and --replay-dead-letters print their result on stdout: their log goes to stderr
  const once = o.rebuild || o['replay-dead-letters']
  const log = createLogger(o['log-level'], once ? 2 : 1).child({ component: 'enlist-relay' })
  const keys = await loadRelayKeys(o, log)
  const { Relay, relayMetrics, relayServer } = await import('../relay/relay.js')
  const { HttpBackend } = await import('../registry/http.js')
  const cmdb = new HttpBackend(
    {
      name: 'cmdb',
      type: 'http',
      sweep: false,
      url: o['cmdb-url'],
      allowInsecureHTTP: o['cmdb-allow-insecure-http'],
      timeoutSeconds: o['cmdb-timeout'] / 1000,
      maxResponseBytes: o['cmdb-max-response-size'],
      maxListPages: 1000,
      caBundle: o['cmdb-ca'] ? await readFile(o['cmdb-ca'], 'utf8') : '',
      headersFromSecret: '',
      retry: { initialDelayMs: 200, maxDelayMs: 30_000 },
      // the relay writes the events' records as they are: their address was chosen by enlist
      advertise: { mode: 'podIP', nodeAddressTypes: ['InternalIP'] },
    },
    async () => {
      const h: Record<string, string> = {}
      for (const [k, v] of Object.entries(await readSecretDir(o['cmdb-headers-dir']))) h[k] = v.trim()
      return h
    },
    log,
  )
  const credentialsDir = o['credentials-dir']
  let source: EventSource
  if (o.source === 'nats') {
    const { NatsSource } = await import('../relay/nats.js')
    const { natsCredentialsFrom } = await import('../registry/nats/backend.js')
    source = new NatsSource({
      url: o.url,
      credentials: async () => natsCredentialsFrom(await readSecretDir(credentialsDir), ''),
      stream: o.stream,
      subjectPrefix: o['subject-prefix'],
      consumer: durableName(o.consumer, o.cluster),
      bucket: o.bucket,
      tombstoneBucket: o['tombstone-bucket'],
      tombstoneRetentionMs: o['tombstone-retention'],
      deadLetterStream: o['dead-letter-stream'],
      deadLetterPrefix: o['dead-letter-subject-prefix'],
      timeoutMs: o.timeout,
      log,
    })
  } else {
    const { AmqpSource } = await import('../relay/amqp.js')
    const { amqpCredentialsFrom } = await import('../registry/amqp/backend.js')
    const { KubeClient } = await import('../kube/client.js')
    const { loadCredentials } = await import('../kube/credentials.js')
    const queue = durableName(o.queue, o.cluster)
    source = new AmqpSource({
      url: o.url,
      credentials: async () => amqpCredentialsFrom(await readSecretDir(credentialsDir), ''),
      exchange: o.exchange,
      queue,
      queueType: o['queue-type'] as 'quorum' | 'classic',
      client: new KubeClient(await loadCredentials(o.kubeconfig)),
      namespace: o.namespace,
      ledgerBackend: o['ledger-backend'],
      tombstoneRetentionMs: o['tombstone-retention'],
      deadLetterExchange: o['dead-letter-exchange'],
      deadLetterQueue: o['dead-letter-queue'] ?? `${queue}.dead`,
      timeoutMs: o.timeout,
      log,
    })
  }
  const metrics = relayMetrics()
  const relay = new Relay({
    source,
    cmdb,
    log,
    metrics,
    rebuildOnCreate: !o['no-initial-rebuild'],
    allowUnsigned: o['allow-unsigned'],
    ring: (cluster) => keys.ring(cluster),
    ...(o.cluster !== undefined ? { cluster: o.cluster } : {}),
  })

  if (o['replay-dead-letters']) {
    try {
      await source.open()
      const r = await relay.replayDeadLetters()
      console.log(JSON.stringify({ replayed: r.replayed, kept: r.kept }))
      return 0
    } finally {
      await source.close()
      cmdb.close()
    }
  }
  keys.watch()

  if (o.rebuild) {
    try {
      await source.open()
      const r = await relay.rebuild('asked for (--rebuild)')
      console.log(JSON.stringify({ rebuilt: true, ...r }))
      return 0
    } finally {
      await source.close()
      cmdb.close()
    }
  }

  const server = relayServer(relay, metrics)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o['bind-address'], () => resolve())
  })
  log.info({ port: (server.address() as { port: number }).port, source: o.source }, 'relay serving /healthz, /readyz, /metrics')
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) process.exit(1)
    stopping = true
    log.info({ signal }, 'stopping: finishing the event in hand')
    relay
      .stop()
      .then(() => keys.stop())
      .then(() => new Promise<void>((r) => server.close(() => r())))
      .then(
        () => {
          cmdb.close()
          log.info('stopped')
          log.flush(() => process.exit(0))
        },
        (err: unknown) => {
          log.error({ err: errorMessage(err) }, 'stop failed')
          log.flush(() => process.exit(1))
        },
      )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  await relay.start()
  return -1
}
