// registry.backends[].advertise: which address and ports a backend's entries give consumers.
// podIP (the default) is reachable inside the cluster; hostIP with the containers' hostPorts,
// and a node's address with a Service's nodePort, reach consumers outside it (src/registry/advertise.ts).

export const ADVERTISE_MODES = ['podIP', 'hostIP', 'nodePort'] as const
export type AdvertiseMode = (typeof ADVERTISE_MODES)[number]
export const NODE_ADDRESS_TYPES = ['ExternalIP', 'InternalIP', 'Hostname', 'ExternalDNS', 'InternalDNS'] as const
export type NodeAddressType = (typeof NODE_ADDRESS_TYPES)[number]

export interface AdvertiseSpec {
  mode: AdvertiseMode
  /** nodePort: the node address types to use, in order of preference. */
  nodeAddressTypes: NodeAddressType[]
}

export const advertiseSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    mode: { enum: [...ADVERTISE_MODES], default: 'podIP' },
    nodeAddressTypes: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...NODE_ADDRESS_TYPES] }, default: ['ExternalIP', 'InternalIP'] },
  },
} as const
