// The fixed names of docs/design.md. Users, manifests and tests depend on every one of them.

export const INJECT_KEY = 'enlist.io/inject'
export const DEPENDS_ON_ANNOTATION = 'enlist.io/depends-on'
export const METADATA_ANNOTATION = 'enlist.io/metadata'
export const SERVICE_ANNOTATION = 'enlist.io/service'
export const STATUS_ANNOTATION = 'enlist.io/status'
export const MANAGED_LABEL = 'enlist.io/managed'

// Tenant overrides: honoured only when the policy lists them in tenantOverrides.allowed.
export const DRAIN_SECONDS_ANNOTATION = 'enlist.io/drain-seconds'
export const PRESTOP_ANNOTATION = 'enlist.io/prestop'
export const READINESS_GATE_ANNOTATION = 'enlist.io/readiness-gate'
export const REGISTRAR_TIMEOUT_ANNOTATION = 'enlist.io/registrar-timeout'
export const ENV_CONTAINERS_ANNOTATION = 'enlist.io/env-containers'
export const ADVERTISE_ANNOTATION = 'enlist.io/advertise'

export const REGISTRAR_CONTAINER = 'enlist-registrar'
export const TOKEN_VOLUME = 'enlist-token'
export const TOKEN_MOUNT_PATH = '/var/run/secrets/enlist.io/token'
export const TOKEN_AUDIENCE = 'enlist'
export const REGISTERED_CONDITION = 'enlist.io/registered'

export const INSTALL_NAMESPACE = 'enlist-system'
export const POLICY_CONFIGMAP = 'enlist-policy'
export const POLICY_KEY = 'policy.yaml'
export const WEBHOOK_CONFIGURATION = 'enlist'
export const LEASE_NAME = 'enlist-controller'
/** The keys that seal enlist.io/status (src/decision/), in the install namespace. */
export const DECISION_KEYS_SECRET = 'enlist-decision-keys'
/** The entries of MutatingWebhookConfiguration/enlist, in manifest order. */
export const WEBHOOK_NAMES = ['namespace.inject.enlist.io', 'object.inject.enlist.io', 'annotation.inject.enlist.io'] as const

// The registrar's environment variables: src/contract/registrar-env.ts.

export const TOKEN_REVIEW_POD_NAME = 'authentication.kubernetes.io/pod-name'
export const TOKEN_REVIEW_POD_UID = 'authentication.kubernetes.io/pod-uid'

/** Fields of the registry record; metadata keys may not shadow them in the flat k/v form. */
export const RECORD_FIELDS = [
  'uid',
  'namespace',
  'pod',
  'service',
  'ip',
  'ips',
  'hostIP',
  'node',
  'ports',
  'metadata',
  'registeredAt',
  'advertised',
] as const
