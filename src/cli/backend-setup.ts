// What `enlist sweep` and `enlist claim` share: one backend of the policy, made as the
// server makes it (src/registry/catalogue.ts), with its credentials read from Secrets in
// enlist's namespace. Meant to run where the backend is reachable and those Secrets are
// readable: in enlist's own pod (`kubectl -n enlist-system exec deploy/enlist -- enlist ...`).

import type { V1ConfigMap } from '@kubernetes/client-node'
import type { KubeClient } from '../kube/client.js'
import { errorMessage, OptionError, PolicyError } from '../lib/errors.js'
import { isDns1123Label, isDns1123Subdomain } from '../lib/validation.js'
import type { Logger } from '../log.js'
import { INSTALL_NAMESPACE, POLICY_CONFIGMAP, POLICY_KEY } from '../names.js'
import type { BackendType } from '../policy/backends/index.js'
import type { CompiledPolicy } from '../policy/policy.js'
import type { Backend } from '../registry/backend.js'
import { type FlagSpecs, type Parsed, readInput, requireReadable } from './flags.js'

export const backendFlags = {
  backend: { kind: 'string', help: 'the backend, by its name in the policy (registry.backends[].name) (required)' },
  policy: { kind: 'string', short: 'f', help: 'policy file (default: the policy ConfigMap)' },
  'policy-configmap': { kind: 'string', env: 'ENLIST_POLICY_CONFIGMAP', default: `${INSTALL_NAMESPACE}/${POLICY_CONFIGMAP}`, help: `policy ConfigMap as namespace/name (key ${POLICY_KEY})` },
  namespace: { kind: 'string', env: 'ENLIST_POD_NAMESPACE', default: INSTALL_NAMESPACE, help: "enlist's namespace: the Secrets holding backend credentials" },
  kubeconfig: { kind: 'string', help: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  'api-request-timeout': { kind: 'duration', default: '30s', min: 100, max: 600_000, help: 'each apiserver request completes within this' },
  'log-level': { kind: 'string', default: 'warn', help: 'the log on stderr: trace, debug, info, warn, error' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export type BackendFlags = Parsed<typeof backendFlags>

/** Where unmarked entries can exist: backends several clusters share. */
export const ADOPT_TYPES: readonly BackendType[] = ['http', 'etcd', 'zookeeper', 'nats', 'amqp']
/** Backends with a store that holds claims on cluster names. */
export const CLAIM_TYPES: readonly BackendType[] = ['etcd', 'zookeeper', 'nats']

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']

export function validateBackendFlags(o: BackendFlags, command: string): asserts o is BackendFlags & { backend: string } {
  if (o._.length > 0) throw new OptionError(`unexpected argument ${JSON.stringify(o._[0])}: ${command} takes flags only`)
  if (o.backend === undefined || o.backend === '') throw new OptionError(`--backend is required: the backend's name in the policy (registry.backends[].name)`)
  const cm = o['policy-configmap'].split('/')
  if (cm.length !== 2 || !isDns1123Label(cm[0]!) || !isDns1123Subdomain(cm[1]!)) throw new OptionError(`--policy-configmap: ${JSON.stringify(o['policy-configmap'])} is invalid; accepted: namespace/name`)
  if (!isDns1123Label(o.namespace)) throw new OptionError(`--namespace: ${JSON.stringify(o.namespace)} is invalid; accepted: a namespace name (DNS-1123 label)`)
  if (!LEVELS.includes(o['log-level'])) throw new OptionError(`--log-level: ${JSON.stringify(o['log-level'])} is invalid; accepted: ${LEVELS.join(', ')}`)
  if (o.kubeconfig !== undefined) requireReadable(o.kubeconfig, '--kubeconfig')
  if (o.policy !== undefined && o.policy !== '-') requireReadable(o.policy, '--policy')
}

export interface Opened {
  client: KubeClient
  policy: CompiledPolicy
  backend: Backend
  log: Logger
  close(): Promise<void>
}

export interface SetupDeps {
  /** The apiserver client (tests: a fake). */
  client?: KubeClient
  log?: Logger
}

/** The policy: the file of --policy, else the ConfigMap (read as the server reads it: a list
 *  by name, which is what enlist's Role grants). */
export async function loadPolicyFrom(o: BackendFlags, client: KubeClient): Promise<CompiledPolicy> {
  const { loadPolicy } = await import('../policy/load.js')
  let text: string
  let source: string
  if (o.policy !== undefined) {
    text = await readInput(o.policy, '--policy')
    source = o.policy
  } else {
    const [ns, name] = o['policy-configmap'].split('/') as [string, string]
    source = `ConfigMap ${ns}/${name}`
    let list: { items?: V1ConfigMap[] }
    try {
      list = await client.get<{ items?: V1ConfigMap[] }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps`, { fieldSelector: `metadata.name=${name}` })
    } catch (err) {
      throw new OptionError(`cannot read the policy ${source}: ${errorMessage(err)} (or name a policy file with -f FILE)`)
    }
    const cm = list.items?.[0]
    if (!cm) throw new OptionError(`the policy ${source} does not exist (--policy-configmap; or name a policy file with -f FILE)`)
    const t = cm.data?.[POLICY_KEY]
    if (t === undefined) throw new OptionError(`the policy ${source} has no key ${POLICY_KEY}`)
    text = t
  }
  try {
    return loadPolicy(text, source)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    throw new OptionError(err.message) // a usage problem here: exit 2
  }
}

/** The policy, and backend --backend made from it. `types`: the backend types the command
 *  serves (a method of the Backend interface); another type is refused naming them. */
export async function openBackend(o: BackendFlags & { backend: string }, what: { command: string; method: 'adopt' | 'claim'; types: readonly BackendType[] }, deps: SetupDeps = {}): Promise<Opened> {
  const { createLogger } = await import('../log.js')
  const log = deps.log ?? createLogger(o['log-level'], 2)
  let client = deps.client
  if (!client) {
    const { KubeClient } = await import('../kube/client.js')
    const { loadCredentials } = await import('../kube/credentials.js')
    client = new KubeClient(await loadCredentials(o.kubeconfig), { requestTimeoutMs: o['api-request-timeout'], log })
  }
  const owned = deps.client === undefined ? client : undefined
  try {
    const policy = await loadPolicyFrom(o, client)
    const spec = policy.spec.registry.backends.find((b) => b.name === o.backend)
    if (!spec) {
      const names = policy.spec.registry.backends.map((b) => `${b.name} (${b.type})`)
      throw new OptionError(`--backend: the policy has no backend ${JSON.stringify(o.backend)}; it has ${names.length > 0 ? names.join(', ') : 'none'}`)
    }
    const refuse = (): never => {
      throw new OptionError(`--backend: backend ${spec.name} is of type ${spec.type}, which has no ${what.method === 'adopt' ? 'unmarked entries to adopt' : 'claims on cluster names'}; ${what.command} serves types ${what.types.join(', ')}`)
    }
    if (!what.types.includes(spec.type)) refuse()
    if (policy.spec.cluster.name === '') throw new OptionError(`the policy names no cluster (cluster.name): ${what.command} acts on this cluster's entries and name`)
    const { SecretReader } = await import('../kube/secrets.js')
    const { createMetrics } = await import('../metrics.js')
    const { createBackend } = await import('../registry/catalogue.js')
    const backend = await createBackend(spec, {
      client,
      secrets: new SecretReader(client, o.namespace),
      pods: { pods: () => [] }, // no pod cache here: the kubernetes backend is never served
      discovery: policy.spec.discovery,
      dubboParameters: new Set(policy.spec.tenancy.dubbo.parameters),
      metrics: createMetrics({ defaultMetrics: false }),
      log,
      cluster: policy.spec.cluster.name,
    })
    if (typeof backend[what.method] !== 'function') {
      await backend.close?.()
      refuse()
    }
    return {
      client,
      policy,
      backend,
      log,
      close: async () => {
        await backend.close?.()
        owned?.close()
      },
    }
  } catch (err) {
    owned?.close()
    throw err
  }
}
