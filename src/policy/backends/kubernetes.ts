// registry.backends[] of type kubernetes: the embedded backend (the pod's own annotation).

import type { BackendSchema } from './types.js'

export interface KubernetesBackendSpec {
  name: string
  type: 'kubernetes'
}

export const kubernetesBackend: BackendSchema<KubernetesBackendSpec> = {
  type: 'kubernetes',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'type'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 63 },
      type: { const: 'kubernetes' },
    },
  },
  check: () => undefined,
}
