// registry.backends[] of type kubernetes: the embedded backend (the pod's own annotation),
// in enlist's layout (the discovery label and annotation) or dubbo-go's (src/registry/dubbo-go.ts).

import { type AdvertiseSpec, advertiseSchema } from './advertise.js'
import type { BackendSchema } from './types.js'

export interface KubernetesBackendSpec {
  name: string
  /** false: the sweep neither removes nor rewrites this backend's entries (upgrading clusters that share it one by one). */
  sweep: boolean
  type: 'kubernetes'
  advertise: AdvertiseSpec
  layout: 'enlist' | 'dubbo'
  dubboLabelValue: 'dubbo.io.provider' | 'dubbo.io-value'
}

export const kubernetesBackend: BackendSchema<KubernetesBackendSpec> = {
  type: 'kubernetes',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 63 },
      sweep: { type: 'boolean', default: true },
      type: { const: 'kubernetes' },
      layout: { enum: ['enlist', 'dubbo'], default: 'enlist' },
      dubboLabelValue: { enum: ['dubbo.io.provider', 'dubbo.io-value'], default: 'dubbo.io.provider' },
      advertise: advertiseSchema,
    },
  },
  check: () => undefined,
}
