// The registry backend types the policy accepts. A new type is a module beside these
// (its schema and checks) and one entry in BACKENDS; its implementation is registered in
// src/registry/catalogue.ts.

import { amqpBackend, type AmqpBackendSpec } from './amqp.js'
import { etcdBackend, type EtcdBackendSpec } from './etcd.js'
import { httpBackend, type HttpBackendSpec } from './http.js'
import { kubernetesBackend, type KubernetesBackendSpec } from './kubernetes.js'
import { natsBackend, type NatsBackendSpec } from './nats.js'
import { zookeeperBackend, type ZookeeperBackendSpec } from './zookeeper.js'
import type { AddError, BackendSchema } from './types.js'

export type { HttpBackendSpec } from './http.js'
export type { KubernetesBackendSpec } from './kubernetes.js'
export type { EtcdBackendSpec } from './etcd.js'
export type { ZookeeperBackendSpec } from './zookeeper.js'
export type { AmqpBackendSpec } from './amqp.js'
export type { NatsBackendSpec } from './nats.js'
export type { AddError } from './types.js'

export type BackendSpec = KubernetesBackendSpec | HttpBackendSpec | EtcdBackendSpec | ZookeeperBackendSpec | NatsBackendSpec | AmqpBackendSpec
export type BackendType = BackendSpec['type']

export const BACKENDS: ReadonlyArray<BackendSchema<BackendSpec>> = [
  kubernetesBackend as BackendSchema<BackendSpec>,
  httpBackend as BackendSchema<BackendSpec>,
  etcdBackend as BackendSchema<BackendSpec>,
  zookeeperBackend as BackendSchema<BackendSpec>,
  natsBackend as BackendSchema<BackendSpec>,
  amqpBackend as BackendSchema<BackendSpec>,
]

export const BACKEND_TYPES = BACKENDS.map((b) => b.type) as readonly BackendType[]

/** One backends[] item: the type is checked first, so an unknown type reports only that. */
export function backendItemSchema(): Record<string, unknown> {
  let chain: Record<string, unknown> | undefined
  for (const b of [...BACKENDS].reverse()) {
    const branch: Record<string, unknown> = { if: { properties: { type: { const: b.type } } }, then: b.schema }
    if (chain) branch.else = chain
    chain = branch
  }
  return { type: 'object', required: ['type'], properties: { type: { enum: [...BACKEND_TYPES] } }, ...chain }
}

export function backendErrors(spec: BackendSpec, at: string, add: AddError): void {
  BACKENDS.find((b) => b.type === spec.type)?.check(spec, at, add)
}

/** Backend types several clusters may share: each needs the policy's `cluster.name`, the
 *  mark on every entry (src/registry/ownership.ts). kubernetes keeps records on the pods. */
export const SHARED_BACKEND_TYPES: ReadonlySet<BackendType> = new Set<BackendType>(['http', 'etcd', 'zookeeper', 'nats', 'amqp'])

/** Backends whose entries are Dubbo providers: every pod then needs a Dubbo interface. */
export function usesDubboLayout(spec: BackendSpec): boolean {
  return (spec.type === 'kubernetes' || spec.type === 'zookeeper') && spec.layout === 'dubbo'
}
