// Policy documents: defaults, every kind of error with its exact text, hashing.
import t from 'tap'
import { PolicyError } from '../../src/lib/errors.js'
import { compilePolicy, defaultPolicy, imageReferenceError, loadPolicy } from '../../src/policy/load.js'
import { policySchema } from '../../src/policy/schema.js'
import { BACKEND_TYPES } from '../../src/policy/backends/index.js'

const HEADER = 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'
// a cluster name: required with every backend several clusters may share (http, etcd, ...)
const NAMED = HEADER + 'cluster: {name: test}\n'

function errorsOf(text: string): string[] {
  try {
    loadPolicy(text)
  } catch (err) {
    if (err instanceof PolicyError) return err.errors.map((e) => `${e.path || '/'}: ${e.message}`)
    throw err
  }
  throw new Error('policy was accepted')
}

t.test('the header alone is a complete policy with documented defaults', async (t) => {
  const p = loadPolicy(HEADER)
  t.same(p.spec, {
    apiVersion: 'enlist.io/v1alpha1',
    kind: 'Policy',
    cluster: { name: '' },
    injection: { default: 'disabled', excludedNamespaces: [], neverInjectSelector: [], alwaysInjectSelector: [] },
    registrar: {
      image: 'enlist:0.1.0',
      imagePullPolicy: 'IfNotPresent',
      command: [],
      args: ['register'],
      position: 'first',
      timeoutSeconds: 300,
      registrationURL: 'https://enlist.enlist-system.svc:443/v1/registrations',
      caBundle: '',
      tokenExpirationSeconds: 3600,
      resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
    },
    downwardAPI: {
      variables: ['POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'POD_IP', 'POD_IPS', 'HOST_IP', 'NODE_NAME', 'POD_SERVICE_ACCOUNT'],
      containers: ['*'],
    },
    preStop: { mode: 'auto', drainSeconds: 5, containers: ['*'], exec: { command: [] } },
    readinessGate: { enabled: true },
    discovery: { label: { key: 'app.io/label', value: 'app.io-value' }, annotation: 'app.io/annotation' },
    registry: { backends: [{ name: 'kubernetes', type: 'kubernetes', sweep: true, layout: 'enlist', dubboLabelValue: 'dubbo.io.provider', advertise: { mode: 'podIP', nodeAddressTypes: ['ExternalIP', 'InternalIP'] } }], reconcileIntervalSeconds: 60, sweepRequestsPerSecond: 50 },
    tenancy: {
      interfaces: [],
      enforcement: 'enforce',
      dubbo: {
        protocols: ['dubbo', 'tri'],
        parameters: ['application', 'version', 'group', 'methods', 'timeout', 'retries', 'weight', 'warmup', 'loadbalance', 'cluster', 'serialization', 'prefer.serialization', 'revision', 'release', 'deprecated', 'token'],
      },
      metadata: { maxBytes: 8192 },
    },
    tenantOverrides: { allowed: ['podOptIn', 'dependsOn', 'metadata', 'service', 'drainSeconds'] },
  })
  t.same([...p.excludedNamespaces], ['kube-system', 'kube-public', 'kube-node-lease', 'enlist-system'])
  t.equal(p.hash, defaultPolicy().hash)
  t.match(p.hash, /^[0-9a-f]{16}$/)
})

t.test('defaults do not leak between policies', async (t) => {
  const a = loadPolicy(HEADER + 'injection:\n  excludedNamespaces: [a]\n')
  const b = loadPolicy(HEADER)
  t.same(b.spec.injection.excludedNamespaces, [])
  t.same(a.spec.injection.excludedNamespaces, ['a'])
})

t.test('a full policy loads', async (t) => {
  const p = loadPolicy(`${HEADER}
cluster: {name: prod-eu-1}
injection:
  default: enabled
  excludedNamespaces: [legacy, batch-jobs]
  neverInjectSelector:
    - matchLabels: {enlist.io/skip: "yes"}
  alwaysInjectSelector:
    - matchExpressions:
        - {key: team, operator: In, values: [payments]}
registrar:
  image: registry.bank.example/enlist:0.1.0
  position: last
  timeoutSeconds: 600
  resources:
    requests: {cpu: 20m, memory: 64Mi}
    limits: {cpu: "1", memory: 128Mi}
downwardAPI:
  variables: [POD_NAME, POD_IP]
  containers: [app]
preStop: {mode: exec, drainSeconds: 10, exec: {command: [/bin/drain]}}
readinessGate: {enabled: false}
discovery:
  label: {key: discovery.bank.example/registered, value: "true"}
  annotation: discovery.bank.example/record
registry:
  backends:
    - {name: pods, type: kubernetes}
    - name: cmdb
      type: http
      url: https://cmdb.bank.example/api/v1/instances
      headersFromSecret: cmdb-credentials
      timeoutSeconds: 3
  reconcileIntervalSeconds: 120
tenantOverrides:
  allowed: [dependsOn, metadata]
`)
  t.equal(p.spec.injection.default, 'enabled')
  t.ok(p.excludedNamespaces.has('legacy'))
  t.ok(p.excludedNamespaces.has('kube-system'), 'built-ins stay')
  t.ok(p.neverInject({ 'enlist.io/skip': 'yes' }))
  t.ok(p.alwaysInject({ team: 'payments' }))
  t.notOk(p.alwaysInject({ team: 'hr' }))
  t.ok(p.envContainers('app'))
  t.notOk(p.envContainers('other'))
  t.equal(p.spec.cluster.name, 'prod-eu-1')
  t.same(p.spec.registry.backends[1], {
    name: 'cmdb',
    type: 'http',
    sweep: true,
    url: 'https://cmdb.bank.example/api/v1/instances',
    headersFromSecret: 'cmdb-credentials',
    timeoutSeconds: 3,
    allowInsecureHTTP: false,
    maxResponseBytes: 16777216,
    maxListPages: 1000,
    caBundle: '',
    retry: { initialDelayMs: 200, maxDelayMs: 30000 },
    advertise: { mode: 'podIP', nodeAddressTypes: ['ExternalIP', 'InternalIP'] },
  })
  t.notOk(p.overrides.has('podOptIn'))
})

t.test('schema errors, each with its path', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['', ['/: must be a mapping with apiVersion: enlist.io/v1alpha1 and kind: Policy']],
    ['- a\n', ['/: must be a mapping with apiVersion: enlist.io/v1alpha1 and kind: Policy']],
    ['kind: Policy\n', ['/apiVersion: is required']],
    ['apiVersion: enlist.io/v1\nkind: Policy\n', ['/apiVersion: must be "enlist.io/v1alpha1"; got "enlist.io/v1"']],
    ['apiVersion: enlist.io/v1alpha1\nkind: Config\n', ['/kind: must be "Policy"; got "Config"']],
    [HEADER + 'injecton: {}\n', ['/injecton: unknown field "injecton"']],
    [HEADER + 'injection: {default: on}\n', ['/injection/default: must be one of "enabled", "disabled"; got "on"']],
    [HEADER + 'injection: {default: true}\n', ['/injection/default: must be one of "enabled", "disabled"; got true']],
    [HEADER + 'registrar: {timeoutSeconds: 0}\n', ['/registrar/timeoutSeconds: must be >= 1; got 0']],
    [HEADER + 'registrar: {timeoutSeconds: 1.5}\n', ['/registrar/timeoutSeconds: must be integer; got 1.5']],
    [HEADER + 'registrar: {timeoutSeconds: "300"}\n', ['/registrar/timeoutSeconds: must be integer; got "300"']],
    [HEADER + 'registrar: {position: middle}\n', ['/registrar/position: must be one of "first", "last"; got "middle"']],
    [HEADER + 'registrar: {image: ""}\n', ['/registrar/image: must NOT have fewer than 1 characters; got ""']],
    [HEADER + 'registrar: {tokenExpirationSeconds: 60}\n', ['/registrar/tokenExpirationSeconds: must be >= 600; got 60']],
    [HEADER + 'downwardAPI: {variables: [POD_NAME, HOSTNAME]}\n', ['/downwardAPI/variables/1: must be one of "POD_NAME", "POD_NAMESPACE", "POD_UID", "POD_IP", "POD_IPS", "HOST_IP", "NODE_NAME", "POD_SERVICE_ACCOUNT"; got "HOSTNAME"']],
    [HEADER + 'downwardAPI: {variables: [POD_NAME, POD_NAME]}\n', ['/downwardAPI/variables: must NOT have duplicate items (items ## 0 and 1 are identical); got ["POD_NAME","POD_NAME"]']],
    [HEADER + 'preStop: {mode: http}\n', ['/preStop/mode: must be one of "auto", "sleep", "exec", "none"; got "http"']],
    [HEADER + 'preStop: {drainSeconds: 0}\n', ['/preStop/drainSeconds: must be >= 1; got 0']],
    [HEADER + 'readinessGate: {enabled: "yes"}\n', ['/readinessGate/enabled: must be boolean; got "yes"']],
    [HEADER + 'registry: {backends: []}\n', ['/registry/backends: must NOT have fewer than 1 items; got []']],
    [HEADER + 'registry: {backends: [{type: consul, name: c}]}\n', [`/registry/backends/0/type: must be one of ${BACKEND_TYPES.map((b) => JSON.stringify(b)).join(', ')}; got "consul"`]],
    [NAMED + 'registry: {backends: [{type: http, name: c}]}\n', ['/registry/backends/0/url: is required']],
    [HEADER + 'registry: {backends: [{type: kubernetes, name: k, url: "https://x"}]}\n', ['/registry/backends/0/url: unknown field "url"']],
    [HEADER + 'tenantOverrides: {allowed: [image]}\n', ['/tenantOverrides/allowed/0: must be one of "podOptIn", "dependsOn", "metadata", "service", "drainSeconds", "preStopMode", "readinessGate", "registrarTimeout", "envContainers", "advertise"; got "image"']],
    [HEADER + 'injection: {neverInjectSelector: [{matchExpressions: [{key: a, operator: Has}]}]}\n', ['/injection/neverInjectSelector/0/matchExpressions/0/operator: must be one of "In", "NotIn", "Exists", "DoesNotExist"; got "Has"']],
  ]
  for (const [text, want] of cases) t.same(errorsOf(text), want, JSON.stringify(text))
})

t.test('every error is reported at once', async (t) => {
  const errs = errorsOf(`apiVersion: enlist.io/v1alpha1
kind: Policy
extra: 1
registrar: {timeoutSeconds: 0, position: middle}
preStop: {mode: http}
`)
  t.equal(errs.length, 4)
})

t.test('semantic errors', async (t) => {
  const cases: Array<[string, string[]]> = [
    [HEADER + 'injection: {excludedNamespaces: [Legacy]}\n', ['/injection/excludedNamespaces/0: "Legacy" is not a valid namespace name (DNS-1123 label)']],
    [HEADER + 'injection: {neverInjectSelector: [{matchLabels: {"bad key!": x}}]}\n', ['/injection/neverInjectSelector/0/matchLabels: "bad key!" is not a valid label key']],
    [HEADER + 'injection: {alwaysInjectSelector: [{matchExpressions: [{key: a, operator: In}]}]}\n', ['/injection/alwaysInjectSelector/0/matchExpressions/0/values: operator In needs at least one value']],
    [HEADER + 'injection: {alwaysInjectSelector: [{matchExpressions: [{key: a, operator: Exists, values: [x]}]}]}\n', ['/injection/alwaysInjectSelector/0/matchExpressions/0/values: operator Exists takes no values']],
    [HEADER + 'registrar: {image: "a b"}\n', ['/registrar/image: "a b" is not an image reference; accepted: [registry[:port]/]name[:tag][@sha256:<64 hex>], e.g. registry.example.com/enlist@sha256:...']],
    [HEADER + 'registrar: {registrationURL: "http://enlist/v1/registrations"}\n', ['/registrar/registrationURL: "http://enlist/v1/registrations" must use https']],
    [HEADER + 'registrar: {registrationURL: "not a url"}\n', ['/registrar/registrationURL: "not a url" is not a URL']],
    [HEADER + 'registrar: {caBundle: "hello"}\n', ['/registrar/caBundle: must be PEM certificates (-----BEGIN CERTIFICATE-----)']],
    [HEADER + 'registrar: {caBundle: "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"}\n', ['/registrar/caBundle: holds a PEM block that is not a valid X.509 certificate']],
    [HEADER + 'registrar: {resources: {limits: {memory: lots}}}\n', ['/registrar/resources/limits/memory: "lots" is not a Kubernetes quantity (e.g. 100m, 64Mi)']],
    [HEADER + 'downwardAPI: {containers: [App]}\n', ['/downwardAPI/containers/0: "App" is neither "*" nor a container name']],
    [HEADER + 'preStop: {exec: {command: [""]}}\n', ['/preStop/exec/command/0: must not be empty']],
    [HEADER + 'discovery: {label: {key: "a/b/c"}}\n', ['/discovery/label/key: "a/b/c" is not a valid label key ([prefix/]name)']],
    [HEADER + 'discovery: {label: {value: "not valid!"}}\n', ['/discovery/label/value: "not valid!" is not a valid label value']],
    [HEADER + 'discovery: {annotation: "/x"}\n', ['/discovery/annotation: "/x" is not a valid annotation key ([prefix/]name)']],
    [HEADER + 'registry: {backends: [{type: kubernetes, name: a}, {type: kubernetes, name: a}]}\n', ['/registry/backends/1/name: duplicate backend name "a"', '/registry/backends/1/type: at most one backend of type kubernetes with layout enlist']],
    [NAMED + 'registry: {backends: [{type: etcd, name: e, endpoints: ["https://a:2379", "http://b:2379"], allowInsecure: true, prefix: "/enlist"}]}\n', ['/registry/backends/0/endpoints: must all use https, or all http: one connection setting serves every endpoint', '/registry/backends/0/prefix: "/enlist" must end with "/" (keys are <prefix><cluster>/<namespace>/<service>/<pod uid>)']],
    [NAMED + 'registry: {backends: [{type: etcd, name: e, endpoints: ["ftp://a"], credentialsFromSecret: "Bad"}]}\n', ['/registry/backends/0/endpoints/0: must use https (or http with allowInsecure: true); got ftp', '/registry/backends/0/credentialsFromSecret: "Bad" is not a valid Secret name']],
    [NAMED + 'registry: {backends: [{type: etcd, name: e, endpoints: ["http://etcd-0:2379", "https://root:s3cret@etcd-1:2379"]}]}\n', ['/registry/backends/0/endpoints/0: http://etcd-0:2379 is not encrypted (records and credentials would cross the network in clear): use https://, or set allowInsecure: true', '/registry/backends/0/endpoints/1: must not hold credentials (user:password@); put them in credentialsFromSecret', '/registry/backends/0/endpoints: must all use https, or all http: one connection setting serves every endpoint']],
    [NAMED + 'registry: {backends: [{type: zookeeper, name: z, connect: "zk:2181"}]}\n', ['/registry/backends/0/allowInsecure: must be true: enlist speaks to ZooKeeper unencrypted (records and digest credentials cross the network in clear); accept that on a trusted network, or put a TLS-terminating proxy next to enlist']],
    [NAMED + 'registry: {backends: [{type: zookeeper, name: z, allowInsecure: true, connect: "zk-0:2181,zk-1/chroot", root: "dubbo/"}]}\n', ['/registry/backends/0/connect: "zk-1/chroot" is not host:port; accepted: host:port pairs separated by commas (no chroot: use root), e.g. "zk-0:2181,zk-1:2181,zk-2:2181"', '/registry/backends/0/root: "dubbo/" is not a ZooKeeper path (starts with "/", no trailing "/"), e.g. "/dubbo"']],
    [NAMED + 'registry: {backends: [{type: zookeeper, name: z, allowInsecure: true, connect: "zk:2181", timeoutSeconds: 30, sessionTimeoutSeconds: 10}]}\n', ['/registry/backends/0/timeoutSeconds: must be shorter than sessionTimeoutSeconds']],
    [NAMED + 'tenantOverrides: {allowed: [service]}\nregistry: {backends: [{type: zookeeper, name: z, allowInsecure: true, connect: "zk:2181", layout: dubbo}]}\n', ['/registry/backends/0/layout: layout dubbo needs each pod\'s Dubbo interface from enlist.io/metadata: add metadata to tenantOverrides.allowed']],
    [HEADER + 'registry: {backends: [{type: kubernetes, name: a}, {type: kubernetes, name: b, layout: dubbo}, {type: kubernetes, name: c, layout: dubbo}]}\n', ['/registry/backends/2/type: at most one backend of type kubernetes with layout dubbo']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "ftp://x"}]}\n', ['/registry/backends/0/url: must use https (or http with allowInsecureHTTP: true); got ftp']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "http://cmdb"}]}\n', ['/registry/backends/0/url: http://cmdb is not encrypted (records and credentials would cross the network in clear): use https://, or set allowInsecureHTTP: true']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "https://admin:s3cret@cmdb/x"}]}\n', ['/registry/backends/0/url: must not hold credentials (user:password@); put them in a Secret named by headersFromSecret']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "https://cmdb/x?token=1"}]}\n', ['/registry/backends/0/url: must not have a query or a fragment: records are at {url}/{pod uid}']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "https://cmdb", maxListPages: 0}]}\n', ['/registry/backends/0/maxListPages: must be >= 1; got 0']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "https://x", headersFromSecret: "Bad"}]}\n', ['/registry/backends/0/headersFromSecret: "Bad" is not a valid Secret name']],
    [NAMED + 'registry: {backends: [{type: http, name: c, url: "https://x", retry: {initialDelayMs: 5000, maxDelayMs: 1000}}]}\n', ['/registry/backends/0/retry/maxDelayMs: must be >= initialDelayMs']],
  ]
  for (const [text, want] of cases) t.same(errorsOf(text), want, JSON.stringify(text))
  t.doesNotThrow(() => loadPolicy(NAMED + 'registry: {backends: [{type: http, name: c, url: "http://cmdb", allowInsecureHTTP: true}]}\n'), 'plain http when the policy says so')
  t.notMatch(errorsOf(NAMED + 'registry: {backends: [{type: http, name: c, url: "https://admin:s3cret@cmdb/x"}]}\n').join('\n'), /s3cret/, 'a password in the URL is never echoed')
})

t.test('semantic errors come with the schema errors, not after they are fixed', async (t) => {
  t.same(
    errorsOf(HEADER + 'registrar: {position: middle}\ninjection: {excludedNamespaces: [Legacy]}\ndiscovery: {annotation: "/x"}\nregistry: {backends: [{type: http, name: c}, {type: http, name: D, url: "http://x"}]}\n'),
    [
      '/registrar/position: must be one of "first", "last"; got "middle"',
      '/registry/backends/0/url: is required',
      '/injection/excludedNamespaces/0: "Legacy" is not a valid namespace name (DNS-1123 label)',
      '/discovery/annotation: "/x" is not a valid annotation key ([prefix/]name)',
      '/cluster/name: is required with a backend several clusters may share (backend "c" of type http): every entry this cluster writes carries its name, ' +
        "so that no cluster touches another's entries; e.g. cluster: {name: prod-eu-1} (docs/registration.md, \"Several clusters, one registry\")",
      '/registry/backends/1/name: "D" must be a DNS-1123 label (lowercase letters, digits, \'-\')',
      '/registry/backends/1/url: http://x is not encrypted (records and credentials would cross the network in clear): use https://, or set allowInsecureHTTP: true',
    ],
    'the sections the schema found sound are checked too; the broken ones (registrar, backend 0) are not',
  )
})

t.test('YAML syntax errors name the line', async (t) => {
  t.same(errorsOf('apiVersion: enlist.io/v1alpha1\nkind: [Policy\n'), ['line 3, column 1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]'])
  t.same(errorsOf('kind: Policy\nkind: Policy\n'), ['line 2, column 1: YAML: Map keys must be unique'])
})

t.test('the PolicyError message lists every error under the source name', async (t) => {
  try {
    loadPolicy('kind: Policy\nfoo: 1\n', 'enlist-system/enlist-policy')
    t.fail('accepted')
  } catch (err) {
    t.type(err, PolicyError)
    t.equal((err as PolicyError).code, 'ENLIST_POLICY_INVALID')
    t.equal((err as Error).message, 'invalid policy enlist-system/enlist-policy:\n  /apiVersion: is required\n  /foo: unknown field "foo"')
  }
})

t.test('the hash ignores key order and follows content', async (t) => {
  const a = loadPolicy(HEADER + 'preStop: {mode: exec, drainSeconds: 7}\n')
  const b = loadPolicy('kind: Policy\npreStop: {drainSeconds: 7, mode: exec}\napiVersion: enlist.io/v1alpha1\n')
  const c = loadPolicy(HEADER + 'preStop: {mode: exec, drainSeconds: 8}\n')
  t.equal(a.hash, b.hash)
  t.not(a.hash, c.hash)
  t.equal(loadPolicy(HEADER + 'preStop: {drainSeconds: 5}\n').hash, defaultPolicy().hash, 'writing a default changes nothing')
})

t.test('compilePolicy rejects non-objects', async (t) => {
  for (const v of [null, 1, 'x', []]) t.throws(() => compilePolicy(v), PolicyError)
})

t.test('the schema documents itself', async (t) => {
  t.equal(policySchema.$schema, 'http://json-schema.org/draft-07/schema#')
  t.same(policySchema.required, ['apiVersion', 'kind'])
})

t.test('the registrar image: a distribution reference, which may be pinned by digest', async (t) => {
  const image = (ref: string) => () => compilePolicy({ apiVersion: 'enlist.io/v1alpha1', kind: 'Policy', registrar: { image: ref } })
  const digest = 'sha256:' + 'ab'.repeat(32)
  for (const ok of ['enlist:0.2.0', 'registry.example.com:5000/platform/enlist:0.2.0', `ghcr.io/acme/enlist@${digest}`, `enlist:0.2.0@${digest}`, 'localhost/enlist']) {
    t.doesNotThrow(image(ok), ok)
  }
  for (const bad of ['Enlist:1', 'enlist:1 ', 'enlist@sha256:abc', 'enlist:', '/enlist']) {
    t.throws(image(bad), { errors: [{ path: '/registrar/image', message: /is not an image reference; accepted: \[registry\[:port\]\/\]name\[:tag\]\[@sha256:<64 hex>\]/ }] }, bad)
  }
})

t.test("registrar.image: the policy's, else enlist's own image, else the built-in default", async (t) => {
  t.equal(loadPolicy(HEADER).spec.registrar.image, 'enlist:0.1.0', 'no image anywhere: the built-in default')
  t.equal(loadPolicy(HEADER, 'p', { image: 'registry.example.com/enlist:0.2.0' }).spec.registrar.image, 'registry.example.com/enlist:0.2.0', "absent: enlist's own")
  const own = loadPolicy(HEADER + 'registrar: {image: "other.example.com/enlist:9"}\n', 'p', { image: 'registry.example.com/enlist:0.2.0' })
  t.equal(own.spec.registrar.image, 'other.example.com/enlist:9', "the policy's wins")
  t.not(loadPolicy(HEADER, 'p', { image: 'a:1' }).hash, loadPolicy(HEADER, 'p', { image: 'a:2' }).hash, "enlist's image is part of the policy's hash")
  t.equal(defaultPolicy({ image: 'a:1' }).spec.registrar.image, 'a:1', 'the built-in default policy too')
  t.equal(imageReferenceError('registry.example.com:5000/platform/enlist:0.2.0'), undefined)
  t.equal(imageReferenceError('registry.example.com/enlist@sha256:' + 'a'.repeat(64)), undefined)
  t.match(imageReferenceError('Registry/Enlist'), /"Registry\/Enlist" is not an image reference; accepted: \[registry\[:port\]\/\]name/)
  t.match(imageReferenceError(''), /is not an image reference/)
})

t.test('registrar.runAsUser is optional (OpenShift assigns UIDs)', async (t) => {
  t.equal(loadPolicy(HEADER).spec.registrar.runAsUser, undefined)
  t.equal(loadPolicy(HEADER + 'registrar: {runAsUser: 1000}\n').spec.registrar.runAsUser, 1000)
  t.throws(() => loadPolicy(HEADER + 'registrar: {runAsUser: 0}\n'), { errors: [{ path: '/registrar/runAsUser' }] }, 'never root')
  t.throws(() => loadPolicy(HEADER + 'registrar: {runAsUser: "65532"}\n'), { errors: [{ path: '/registrar/runAsUser' }] }, 'an integer')
})

t.test('cluster.name: required with a backend several clusters may share, a DNS-1123 label', async (t) => {
  const required =
    '/cluster/name: is required with a backend several clusters may share (backend "c" of type http): every entry this cluster writes carries its name, ' +
    "so that no cluster touches another's entries; e.g. cluster: {name: prod-eu-1} (docs/registration.md, \"Several clusters, one registry\")"
  t.same(errorsOf(HEADER + 'registry: {backends: [{type: http, name: c, url: "https://cmdb"}]}\n'), [required])
  for (const type of ['etcd', 'zookeeper', 'nats', 'amqp']) {
    const errors = errorsOf(HEADER + `registry: {backends: [{type: ${type}, name: c}]}\n`)
    t.ok(errors.includes(required.replace('of type http', `of type ${type}`)), `${type} needs it`)
  }
  t.doesNotThrow(() => loadPolicy(HEADER + 'registry: {backends: [{type: kubernetes, name: k}]}\n'), 'the kubernetes backend alone needs no name')
  t.same(errorsOf(HEADER + 'cluster: {name: Prod_EU}\nregistry: {backends: [{type: kubernetes, name: k}]}\n'), [
    '/cluster/name: "Prod_EU" is not a DNS-1123 label (lowercase letters, digits and \'-\', at most 63, starting and ending with a letter or digit), e.g. "prod-eu-1"',
  ])
  t.same(errorsOf(HEADER + `cluster: {name: ${'a'.repeat(64)}}\n`), ['/cluster/name: must NOT have more than 63 characters; got "' + 'a'.repeat(56) + '...'])
  const p = loadPolicy(NAMED + 'registry: {backends: [{type: http, name: c, url: "https://cmdb", sweep: false}]}\n')
  t.equal(p.spec.cluster.name, 'test')
  t.equal((p.spec.registry.backends[0] as { sweep: boolean }).sweep, false, 'sweep can be turned off per backend')
  t.equal((loadPolicy(HEADER).spec.registry.backends[0] as { sweep: boolean }).sweep, true, 'and is on by default')
})

