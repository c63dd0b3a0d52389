// The policy's JSON Schema. It is the single source of defaults: ajv fills them in
// (useDefaults), so a policy of two lines is complete once validated.
// `enlist policy schema` prints it; docs/policy.md describes every field. Each registry
// backend type brings its own part (src/policy/backends/).

import { backendItemSchema } from './backends/index.js'
import { DEFAULT_DUBBO_PARAMETERS, DEFAULT_DUBBO_PROTOCOLS } from '../registry/dubbo.js'

/** Default tenancy.metadata.maxBytes: the metadata as JSON, in UTF-8 bytes. */
export const DEFAULT_METADATA_MAX_BYTES = 8192

export const DOWNWARD_API_VARIABLES = [
  'POD_NAME',
  'POD_NAMESPACE',
  'POD_UID',
  'POD_IP',
  'POD_IPS',
  'HOST_IP',
  'NODE_NAME',
  'POD_SERVICE_ACCOUNT',
] as const

export const TENANT_OVERRIDES = [
  'podOptIn',
  'dependsOn',
  'metadata',
  'service',
  'drainSeconds',
  'preStopMode',
  'readinessGate',
  'registrarTimeout',
  'envContainers',
  'advertise',
] as const

const labelSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'operator'],
        properties: {
          key: { type: 'string', minLength: 1 },
          operator: { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
          values: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
} as const

const quantity = { type: ['string', 'number'] } as const
const resourceList = {
  type: 'object',
  additionalProperties: false,
  properties: { cpu: quantity, memory: quantity, 'ephemeral-storage': quantity },
} as const

const containerNames = {
  type: 'array',
  items: { type: 'string', minLength: 1 },
  uniqueItems: true,
} as const

export const policySchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://enlist.io/schemas/policy-v1alpha1.json',
  title: 'enlist policy',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind'],
  properties: {
    apiVersion: { const: 'enlist.io/v1alpha1' },
    kind: { const: 'Policy' },
    cluster: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // the mark on every entry this cluster writes to a shared backend (src/registry/ownership.ts);
        // required with one, checked in load.ts
        name: { type: 'string', maxLength: 63, default: '' },
      },
    },
    injection: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        default: { enum: ['enabled', 'disabled'], default: 'disabled' },
        excludedNamespaces: { type: 'array', items: { type: 'string' }, uniqueItems: true, default: [] },
        neverInjectSelector: { type: 'array', items: labelSelector, default: [] },
        alwaysInjectSelector: { type: 'array', items: labelSelector, default: [] },
      },
    },
    registrar: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // absent: enlist's own image (serve --image, ENLIST_IMAGE; the manifests copy the
        // Deployment's image there), else DEFAULT_REGISTRAR_IMAGE
        image: { type: 'string', minLength: 1 },
        imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'], default: 'IfNotPresent' },
        command: { type: 'array', items: { type: 'string' }, default: [] },
        args: { type: 'array', items: { type: 'string' }, default: ['register'] },
        position: { enum: ['first', 'last'], default: 'first' },
        timeoutSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 300 },
        registrationURL: {
          type: 'string',
          minLength: 1,
          default: 'https://enlist.enlist-system.svc:443/v1/registrations',
        },
        caBundle: { type: 'string', default: '' },
        // absent: no fixed UID (OpenShift's restricted-v2 SCC assigns one per namespace)
        runAsUser: { type: 'integer', minimum: 1 },
        tokenExpirationSeconds: { type: 'integer', minimum: 600, maximum: 86400, default: 3600 },
        resources: {
          type: 'object',
          additionalProperties: false,
          default: { requests: { cpu: '10m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
          properties: { requests: resourceList, limits: resourceList },
        },
      },
    },
    downwardAPI: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        variables: {
          type: 'array',
          items: { enum: [...DOWNWARD_API_VARIABLES] },
          uniqueItems: true,
          default: [...DOWNWARD_API_VARIABLES],
        },
        containers: { ...containerNames, default: ['*'] },
      },
    },
    preStop: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        mode: { enum: ['auto', 'sleep', 'exec', 'none'], default: 'auto' },
        drainSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: 5 },
        containers: { ...containerNames, default: ['*'] },
        exec: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: { command: { type: 'array', items: { type: 'string' }, default: [] } },
        },
      },
    },
    readinessGate: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { enabled: { type: 'boolean', default: true } },
    },
    discovery: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        label: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            key: { type: 'string', default: 'app.io/label' },
            value: { type: 'string', default: 'app.io-value' },
          },
        },
        annotation: { type: 'string', default: 'app.io/annotation' },
      },
    },
    registry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        backends: {
          type: 'array',
          minItems: 1,
          items: backendItemSchema(),
          default: [{ name: 'kubernetes', type: 'kubernetes' }],
        },
        reconcileIntervalSeconds: { type: 'integer', minimum: 5, maximum: 86400, default: 60 },
        sweepRequestsPerSecond: { type: 'integer', minimum: 1, maximum: 10000, default: 50 },
      },
    },
    tenancy: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // which namespaces may provide which Dubbo interfaces (src/admission/tenancy.ts)
        interfaces: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['namespaces', 'interfaces'],
            properties: {
              namespaces: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 }, uniqueItems: true },
              interfaces: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 }, uniqueItems: true },
            },
          },
        },
        // warn: the denials of tenancy are staged (admitted with a warning) while an admin tries them
        enforcement: { enum: ['enforce', 'warn'], default: 'enforce' },
        dubbo: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            protocols: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 }, uniqueItems: true, default: [...DEFAULT_DUBBO_PROTOCOLS] },
            parameters: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true, default: [...DEFAULT_DUBBO_PARAMETERS] },
          },
        },
        metadata: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            // the annotation limit of a whole pod is 256 KiB
            maxBytes: { type: 'integer', minimum: 256, maximum: 65536, default: DEFAULT_METADATA_MAX_BYTES },
          },
        },
      },
    },
    tenantOverrides: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        allowed: {
          type: 'array',
          items: { enum: [...TENANT_OVERRIDES] },
          uniqueItems: true,
          default: ['podOptIn', 'dependsOn', 'metadata', 'service', 'drainSeconds'],
        },
      },
    },
  },
} as const
