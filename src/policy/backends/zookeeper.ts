// registry.backends[] of type zookeeper: persistent nodes in Dubbo's layout or enlist's.

import { isDns1123Subdomain } from '../../lib/validation.js'
import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import type { BackendSchema } from './types.js'

export interface ZookeeperBackendSpec {
  name: string
  /** false: the sweep neither removes nor rewrites this backend's entries (upgrading clusters that share it one by one). */
  sweep: boolean
  type: 'zookeeper'
  advertise: AdvertiseSpec
  connect: string
  /** Empty: /dubbo for layout dubbo (Dubbo's default root), /enlist for layout enlist. */
  root: string
  layout: 'dubbo' | 'enlist'
  sessionTimeoutSeconds: number
  timeoutSeconds: number
  credentialsFromSecret: string
  /** Must be true: the client speaks to ZooKeeper in clear, and the policy must say it knows. */
  allowInsecure: boolean
  retry: { initialDelayMs: number; maxDelayMs: number }
}

export const ZOOKEEPER_DEFAULT_ROOTS = { dubbo: '/dubbo', enlist: '/enlist' } as const

export function zookeeperRoot(b: Pick<ZookeeperBackendSpec, 'root' | 'layout'>): string {
  return b.root || ZOOKEEPER_DEFAULT_ROOTS[b.layout]
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/

export const zookeeperBackend: BackendSchema<ZookeeperBackendSpec> = {
  type: 'zookeeper',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type', 'connect'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 63 },
      sweep: { type: 'boolean', default: true },
      type: { const: 'zookeeper' },
      connect: { type: 'string', minLength: 1 },
      root: { type: 'string', default: '' },
      layout: { enum: ['enlist', 'dubbo'], default: 'enlist' },
      sessionTimeoutSeconds: { type: 'integer', minimum: 4, maximum: 600, default: 30 },
      timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 60, default: 5 },
      credentialsFromSecret: { type: 'string', default: '' },
      allowInsecure: { type: 'boolean', default: false },
      advertise: advertiseSchema,
      retry: {
        type: 'object',
        additionalProperties: false,
        default: {},
        properties: {
          initialDelayMs: { type: 'integer', minimum: 10, maximum: 60000, default: 200 },
          maxDelayMs: { type: 'integer', minimum: 100, maximum: 600000, default: 30000 },
        },
      },
    },
  },
  check(b, at, add) {
    b.connect.split(',').forEach((hp) => {
      const m = HOST_PORT.exec(hp.trim())
      if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
        add(`${at}/connect`, `"${hp.trim()}" is not host:port; accepted: host:port pairs separated by commas (no chroot: use root), e.g. "zk-0:2181,zk-1:2181,zk-2:2181"`)
      }
    })
    // enlist's ZooKeeper client has no TLS (secureClientPort), so every connection is in clear
    if (!b.allowInsecure) {
      add(`${at}/allowInsecure`, 'must be true: enlist speaks to ZooKeeper unencrypted (records and digest credentials cross the network in clear); accept that on a trusted network, or put a TLS-terminating proxy next to enlist')
    }
    if (b.root !== '' && (!b.root.startsWith('/') || (b.root !== '/' && b.root.endsWith('/')) || b.root.includes('//'))) {
      add(`${at}/root`, `"${b.root}" is not a ZooKeeper path (starts with "/", no trailing "/"), e.g. "/dubbo"`)
    }
    if (b.credentialsFromSecret !== '' && !isDns1123Subdomain(b.credentialsFromSecret)) {
      add(`${at}/credentialsFromSecret`, `"${b.credentialsFromSecret}" is not a valid Secret name`)
    }
    if (b.timeoutSeconds >= b.sessionTimeoutSeconds) add(`${at}/timeoutSeconds`, 'must be shorter than sessionTimeoutSeconds')
    if (b.retry.maxDelayMs < b.retry.initialDelayMs) add(`${at}/retry/maxDelayMs`, 'must be >= initialDelayMs')
  },
}
