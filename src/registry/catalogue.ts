// Which implementation serves each backend type. Implementations load on first use, so a
// cluster that uses only the kubernetes backend never loads a broker or registry client.

import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import type { SecretReader } from '../kube/secrets.js'
import type { Metrics } from '../metrics.js'
import type { BackendSpec, BackendType } from '../policy/backends/index.js'
import type { PolicySpec } from '../policy/policy.js'
import type { Backend } from './backend.js'
import type { PodLookup } from './kubernetes.js'

/** What a backend may use besides its own spec. */
export interface BackendContext {
  client: KubeClient
  /** Secrets in enlist's namespace (credentials, CA bundles). */
  secrets: SecretReader
  /** Managed pods from the cache. */
  pods: PodLookup
  discovery: PolicySpec['discovery']
  metrics: Metrics
  log: Logger
  /** This cluster's name (policy cluster.name): the mark on every entry a backend writes. */
  cluster: string
  /** Metadata keys a Dubbo provider URL may carry (policy tenancy.dubbo.parameters). */
  dubboParameters: ReadonlySet<string>
}

type Factory<S extends BackendSpec> = (spec: S, ctx: BackendContext) => Promise<Backend>
type Factories = { [T in BackendType]: Factory<Extract<BackendSpec, { type: T }>> }

const FACTORIES: Factories = {
  kubernetes: async (spec, ctx) => {
    const { KubernetesBackend } = await import('./kubernetes.js')
    return new KubernetesBackend(spec, ctx.client, ctx.discovery, ctx.pods, ctx.cluster, ctx.dubboParameters)
  },
  http: async (spec, ctx) => {
    const { HttpBackend, secretHeaders } = await import('./http.js')
    return new HttpBackend(spec, secretHeaders(ctx.secrets, spec.headersFromSecret), ctx.log)
  },
  etcd: async (spec, ctx) => {
    const { EtcdBackend } = await import('./etcd.js')
    return new EtcdBackend(spec, ctx.secrets, ctx.cluster, ctx.pods)
  },
  zookeeper: async (spec, ctx) => {
    const { ZookeeperBackend } = await import('./zookeeper.js')
    return new ZookeeperBackend(
      spec,
      ctx.secrets,
      ctx.log,
      (state) => {
        if (state.startsWith('session expired')) ctx.metrics.zookeeperSessionExpirations.inc({ backend: spec.name })
      },
      ctx.cluster,
      ctx.pods,
      ctx.dubboParameters,
    )
  },
  nats: async (spec, ctx) => {
    const { createNatsBackend } = await import('./nats/backend.js')
    return createNatsBackend(spec, ctx)
  },
  amqp: async (spec, ctx) => {
    const { createAmqpBackend } = await import('./amqp/backend.js')
    return createAmqpBackend(spec, ctx)
  },
}

export function createBackend(spec: BackendSpec, ctx: BackendContext): Promise<Backend> {
  return (FACTORIES[spec.type] as Factory<BackendSpec>)(spec, ctx)
}
