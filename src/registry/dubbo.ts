// The Dubbo provider URL: the one home of its format, shared by the zookeeper backend's
// `layout: dubbo` and the kubernetes backend's `layout: dubbo` (dubbo-go's registry). Pure.
//
// What Dubbo itself writes (apache/dubbo):
// * dubbo-registry/dubbo-registry-zookeeper/.../ZookeeperRegistry.java: a provider is the node
//   `<root>/<URL.encode(interface)>/providers/<URL.encode(url.toFullString())>`, root `/dubbo`;
//   `doRegister` creates it ephemeral, or persistent when the URL says `dynamic=false`.
// * dubbo-common/.../common/URL.java: `toFullString()` is
//   `protocol://host:port/path?k=v&...` with the parameters sorted by key (a TreeMap), values
//   trimmed, nothing escaped; `URL.encode` is `java.net.URLEncoder.encode(s, "UTF-8")`.
// * dubbo-common/.../common/Version.java: the Dubbo RPC protocol version, parameter `dubbo`, is
//   "2.0.2" (DEFAULT_DUBBO_PROTOCOL_VERSION).
// * dubbo-common/.../common/utils/UrlUtils.java `isMatch`: a consumer matches a provider on
//   `interface`, `category` (default `providers`), `enabled` (default true), `group`,
//   `version` and `classifier`: those are what consumers need. A provider whose interface is
//   `*` matches every consumer (ANY_VALUE), so `*` is never an interface here.
// * UrlUtils.java `isConfigurator`, `isRoute`, `isProvider`: a URL is a configurator when its
//   protocol is `override` or its `category` is `configurators`, a route when its protocol is
//   `route` or its category `routers`; RegistryDirectory.notify sorts what it reads by these,
//   wherever the node was. So the category is never the tenant's and the protocol comes from
//   the policy's allowlist (tenancy.dubbo.protocols).
// * common/constants/RegistryConstants.java (CATEGORY_KEY, *_CATEGORY, ROUTE_PROTOCOL,
//   ROUTE_SCRIPT_PROTOCOL, OVERRIDE_PROTOCOL, EMPTY_PROTOCOL), ClusterConstants.java (RULE_KEY,
//   RAW_RULE_KEY, FORCE_KEY, RUNTIME_KEY, PRIORITY_KEY, ENABLED_KEY, ROUTER_KEY, VALID_KEY,
//   CONFIG_VERSION_KEY, OVERRIDE_PROVIDERS_KEY) and CommonConstants.java (DISABLED_KEY,
//   ANYHOST_KEY, TAG_KEY `dubbo.tag`, read by the tag router): the keys Dubbo reads as routing or
//   configuration, DUBBO_ROUTING_KEYS below.
// * CommonConstants.java and ClusterConstants.java also name what a provider URL carries for
//   its consumers (APPLICATION_KEY, VERSION_KEY, GROUP_KEY, METHODS_KEY, TIMEOUT_KEY,
//   RETRIES_KEY, LOADBALANCE_KEY, CLUSTER_KEY, WEIGHT_KEY, WARMUP_KEY, REVISION_KEY,
//   RELEASE_KEY, ...): DEFAULT_DUBBO_PARAMETERS, the policy's default tenancy.dubbo.parameters.

import type { RecordPort, RegistryRecord } from './record.js'
import type { ErrorCode } from '../lib/errors.js'

export const DUBBO_PROTOCOL_VERSION = '2.0.2'
export const DUBBO_DEFAULT_ROOT = '/dubbo'
export const PROVIDERS_CATEGORY = 'providers'

/** Metadata keys enlist reads for the URL itself; every other key becomes a URL parameter. */
export const DUBBO_ADDRESS_KEYS = ['protocol', 'port'] as const
/** URL parameters that name the pod, so enlist can tell its own providers from others. */
export const ENLIST_POD_PARAM = 'enlist.pod'
export const ENLIST_UID_PARAM = 'enlist.uid'
/** The cluster mark (src/registry/ownership.ts): which cluster's enlist wrote the provider.
 *  Consumers ignore it: UrlUtils.isMatch reads only the parameters named above. */
export const CLUSTER_PARAM = 'enlist.cluster'
/** Parameters enlist sets; metadata cannot override them. */
export const DUBBO_FIXED_PARAMS: ReadonlySet<string> = new Set(['side', 'dubbo', 'dynamic', 'timestamp', 'interface', ENLIST_POD_PARAM, ENLIST_UID_PARAM, CLUSTER_PARAM])
const FIXED_PARAMS = DUBBO_FIXED_PARAMS

/** Metadata keys Dubbo reads as routing rules or configuration (the files cited above): a
 *  provider URL never carries them, and admission refuses them (tenancy.ts). */
export const DUBBO_ROUTING_KEYS: ReadonlySet<string> = new Set([
  'category',
  'rule',
  'rawRule',
  'force',
  'runtime',
  'dynamic',
  'enabled',
  'disabled',
  'priority',
  'router',
  'valid',
  'configVersion',
  'providerAddresses',
  'anyhost',
  'dubbo.tag',
])

/** URL schemes that make a URL something other than a provider (RegistryConstants, UrlUtils):
 *  never a provider's protocol, whatever the policy allows. */
export const DUBBO_NON_PROVIDER_PROTOCOLS: ReadonlySet<string> = new Set(['override', 'route', 'script', 'condition', 'empty', 'consumer', 'registry', 'service-discovery-registry'])

/** The policy's default tenancy.dubbo.protocols: Dubbo's own and Triple (CommonConstants DUBBO, TRIPLE). */
export const DEFAULT_DUBBO_PROTOCOLS: readonly string[] = ['dubbo', 'tri']

/** The policy's default tenancy.dubbo.parameters: what a provider URL tells its consumers
 *  (CommonConstants, ClusterConstants). Other metadata keys stay in the record only. */
export const DEFAULT_DUBBO_PARAMETERS: readonly string[] = [
  'application',
  'version',
  'group',
  'methods',
  'timeout',
  'retries',
  'weight',
  'warmup',
  'loadbalance',
  'cluster',
  'serialization',
  'prefer.serialization',
  'revision',
  'release',
  'deprecated',
  'token',
]
const DEFAULT_PARAMETER_SET: ReadonlySet<string> = new Set(DEFAULT_DUBBO_PARAMETERS)

export interface DubboProvider {
  protocol: string
  host: string
  port: number
  interface: string
  /** Sorted by key, as toFullString writes them. */
  params: Array<[string, string]>
}

export interface DubboInput {
  uid: string
  namespace: string
  pod: string
  service: string
  metadata: Readonly<Record<string, string>>
  /** ISO time of the registration: the `timestamp` parameter, stable across re-registration. */
  registeredAt: string
  host: string
  port: number
  /** This cluster's name: parameter enlist.cluster. Empty or absent: no parameter (dubbo-go's
   *  annotation on the pod itself, whose entries are this cluster's pods by being pods). */
  cluster?: string
  /** Metadata keys that become URL parameters (the policy's tenancy.dubbo.parameters);
   *  absent: DEFAULT_DUBBO_PARAMETERS. Routing keys never do, whatever it says. */
  parameters?: ReadonlySet<string>
}

export class DubboFormatError extends Error {
  readonly code = 'ENLIST_DUBBO_INVALID' satisfies ErrorCode
  constructor(message: string) {
    super(message)
    this.name = 'DubboFormatError'
  }
}

// Characters that would change how Java (URLStrParser) or Go (QueryUnescape, then ParseQuery)
// consumers split the URL: `&` and `=` separate parameters, `%` and `+` are decoded a second
// time by dubbo-go, `#` starts a fragment for Go, whitespace is trimmed by Java.
const VALUE_FORBIDDEN = /[&%+#\s\p{Cc}]/u
const KEY_FORBIDDEN = /[&=%+#?/\s\p{Cc}]/u
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const TOKEN = /^[A-Za-z][A-Za-z0-9+.-]*$/
// No `*`: a provider of interface `*` matches every consumer (UrlUtils.isMatch).
const INTERFACE = /^[A-Za-z_$][A-Za-z0-9_$./-]*$/

/** Why this metadata cannot make a Dubbo provider URL (undefined: it can). `ports` are the
 *  pod's declared container ports; the check is the same at admission and at registration.
 *  `parameters`: the keys that become URL parameters (tenancy.dubbo.parameters). */
export function dubboMetadataError(
  metadata: Readonly<Record<string, string>> | undefined,
  ports: readonly RecordPort[],
  parameters: ReadonlySet<string> = DEFAULT_PARAMETER_SET,
): string | undefined {
  const md = metadata ?? {}
  const problem = dubboParamsError(md, parameters)
  if (problem) return problem
  const port = selectDubboPort(md, ports)
  return typeof port === 'string' ? port : undefined
}

/** Why `iface` cannot be a provider's interface, or undefined. */
export function dubboInterfaceError(iface: string | undefined): string | undefined {
  if (iface === undefined || iface === '') return 'has no "interface": a Dubbo provider needs its service interface, e.g. {"interface":"com.acme.Orders"}'
  if (iface.includes('*')) return `"interface" ${JSON.stringify(iface)} is not one interface: Dubbo consumers read "*" as every interface; name the interface, e.g. "com.acme.Orders"`
  if (!INTERFACE.test(iface)) return `"interface" ${JSON.stringify(iface)} is not a Java interface name (letters, digits, "_", "$", "." and "/")`
  return undefined
}

/** Whether a metadata key becomes a parameter of the provider URL. */
export function isDubboParameter(key: string, parameters: ReadonlySet<string>): boolean {
  return parameters.has(key) && !DUBBO_ROUTING_KEYS.has(key) && !FIXED_PARAMS.has(key) && !(DUBBO_ADDRESS_KEYS as readonly string[]).includes(key)
}

function dubboParamsError(md: Readonly<Record<string, string>>, parameters: ReadonlySet<string>): string | undefined {
  const ifaceProblem = dubboInterfaceError(md.interface)
  if (ifaceProblem) return ifaceProblem
  const protocol = md.protocol ?? 'dubbo'
  if (!TOKEN.test(protocol)) return `"protocol" ${JSON.stringify(protocol)} is not a URL scheme (a letter, then letters, digits, "+", "." or "-")`
  if (DUBBO_NON_PROVIDER_PROTOCOLS.has(protocol.toLowerCase())) return `"protocol" ${JSON.stringify(protocol)} makes a Dubbo routing rule or configurator, not a provider`
  for (const [k, v] of Object.entries(md)) {
    if (FIXED_PARAMS.has(k) && k !== 'interface') return `key "${k}" is a parameter enlist sets itself`
    // only what goes into the URL must survive its parsers; other keys stay in the record
    if (!isDubboParameter(k, parameters)) continue
    if (KEY_FORBIDDEN.test(k) || LONE_SURROGATE.test(k)) return `key ${JSON.stringify(k)} cannot be a Dubbo URL parameter (no "&", "=", "%", "+", "#", "?", "/" or whitespace)`
    if (VALUE_FORBIDDEN.test(v) || LONE_SURROGATE.test(v)) return `the value of "${k}" cannot be a Dubbo URL parameter value (no "&", "%", "+", "#" or whitespace)`
  }
  return undefined
}

/** The container port that serves Dubbo: metadata `port` (a declared port's name or number),
 *  else the port named as the protocol (`dubbo`), else the pod's only declared TCP port.
 *  A string is why none can be chosen. */
export function selectDubboPort(metadata: Readonly<Record<string, string>>, ports: readonly RecordPort[]): RecordPort | string {
  const protocol = metadata.protocol ?? 'dubbo'
  const wanted = metadata.port
  const declared = ports.map((p) => (p.name ? `${p.name} (${p.port})` : String(p.port))).join(', ') || 'none'
  if (wanted !== undefined) {
    const byNumber = /^[0-9]+$/.test(wanted) ? ports.find((p) => p.port === Number(wanted)) : undefined
    const found = byNumber ?? ports.find((p) => p.name === wanted)
    return found ?? `"port" ${JSON.stringify(wanted)} is not a port the pod's containers declare (declared: ${declared})`
  }
  const named = ports.find((p) => p.name === protocol)
  if (named) return named
  const tcp = ports.filter((p) => p.protocol === 'TCP')
  if (tcp.length === 1) return tcp[0]!
  return `cannot tell which port serves ${protocol}: name the container port "${protocol}" or set "port" in the metadata (declared: ${declared})`
}

/** The provider a registered pod is: its Dubbo port, at the address and port the record
 *  advertises for it (podIP, hostIP with its hostPort, or a node with a nodePort). `cluster`
 *  (the ZooKeeper backend's) adds the mark; the kubernetes backend gives none, so dubbo-go's
 *  annotation on the pod, the pod's own and this cluster's by being there, stays as it was. */
export function dubboProviderOf(r: RegistryRecord, cluster?: string, parameters?: ReadonlySet<string>): DubboProvider {
  const port = selectDubboPort(r.metadata, r.ports)
  if (typeof port === 'string') throw new DubboFormatError(`pod ${r.namespace}/${r.pod}: metadata: ${port}`)
  const adv = r.advertised
  const mapped = adv.ports.find((p) => p.containerPort === port.port && p.protocol === port.protocol)
  if (!mapped) {
    throw new DubboFormatError(`pod ${r.namespace}/${r.pod}: its Dubbo port ${port.port} has no ${adv.mode} mapping (${adv.mode === 'hostIP' ? 'no hostPort' : 'no Service nodePort targets it'})`)
  }
  return dubboProvider({ ...r, host: adv.address, port: mapped.port, cluster, parameters })
}

/** The provider a pod is, from what was registered and where it is reachable. */
export function dubboProvider(input: DubboInput): DubboProvider {
  const md = input.metadata
  const parameters = input.parameters ?? DEFAULT_PARAMETER_SET
  const problem = dubboParamsError(md, parameters)
  if (problem) throw new DubboFormatError(`metadata ${problem}`)
  const params = new Map<string, string>()
  // Only provider parameters: a key Dubbo reads as routing (category, rule, ...) never
  // reaches the URL, whatever the metadata or the policy says.
  for (const [k, v] of Object.entries(md)) {
    if (isDubboParameter(k, parameters)) params.set(k, v.trim())
  }
  params.set('interface', md.interface!)
  if (!params.has('application')) params.set('application', input.service)
  params.set('side', 'provider')
  params.set('dubbo', DUBBO_PROTOCOL_VERSION)
  // enlist, not a process session, owns the node: persistent, as Dubbo registers dynamic=false.
  params.set('dynamic', 'false')
  params.set('timestamp', String(epochMillis(input.registeredAt)))
  params.set(ENLIST_POD_PARAM, `${input.namespace}/${input.pod}`)
  params.set(ENLIST_UID_PARAM, input.uid)
  if (input.cluster) params.set(CLUSTER_PARAM, input.cluster)
  return {
    protocol: md.protocol ?? 'dubbo',
    host: input.host,
    port: input.port,
    interface: md.interface!,
    params: [...params.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  }
}

function epochMillis(iso: string): number {
  const t = Date.parse(iso)
  if (Number.isNaN(t)) throw new DubboFormatError(`registeredAt ${JSON.stringify(iso)} is not a time`)
  return t
}

/** URL.toFullString(): `protocol://host:port/interface?k=v&...`; an IPv6 host in brackets. */
export function toFullString(p: DubboProvider): string {
  const host = p.host.includes(':') && !p.host.startsWith('[') ? `[${p.host}]` : p.host
  const query = p.params.map(([k, v]) => `${k}=${v}`).join('&')
  return `${p.protocol}://${host}:${p.port}/${p.interface}${query ? `?${query}` : ''}`
}

/** Parses what toFullString wrote (and what Dubbo providers write): parameters undecoded. */
export function parseFullString(url: string): DubboProvider | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[^\]]+\]|[^/:?]+):([0-9]+)\/([^?]*)(?:\?(.*))?$/.exec(url)
  if (!m) return undefined
  const params: Array<[string, string]> = []
  for (const part of (m[5] ?? '').split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    params.push(eq === -1 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)])
  }
  const iface = params.find(([k]) => k === 'interface')?.[1] ?? m[4]!
  return { protocol: m[1]!, host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]), interface: iface, params }
}

/** java.net.URLEncoder.encode(s, "UTF-8") (Dubbo's URL.encode): letters, digits and `.-*_`
 *  stay, a space becomes `+`, every other UTF-8 byte `%XX`. */
export function javaUrlEncode(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
}

/** java.net.URLDecoder.decode(s, "UTF-8"): `+` is a space. */
export function javaUrlDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, '%20'))
}

/** Go's url.QueryEscape (what dubbo-go writes): letters, digits and `-_.~` stay, a space
 *  becomes `+`, every other UTF-8 byte `%XX`. */
export function goQueryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
}

/** `<root>/<URL.encode(interface)>/providers`, as ZookeeperRegistry.toCategoryPath. */
export function providersPath(root: string, iface: string): string {
  const dir = root === '/' ? '' : root.replace(/\/$/, '')
  return `${dir}/${javaUrlEncode(iface)}/${PROVIDERS_CATEGORY}`
}

/** The provider's node name in ZooKeeper: URL.encode(url.toFullString()). */
export function providerNodeName(p: DubboProvider): string {
  return javaUrlEncode(toFullString(p))
}

/** The pod an enlist-written provider node names, and the cluster whose enlist wrote it
 *  (undefined: the node carries no mark); undefined for anyone else's node. */
export function enlistOwner(nodeName: string): { uid: string; namespace: string; pod: string; cluster: string | undefined } | undefined {
  let url: string
  try {
    url = javaUrlDecode(nodeName)
  } catch {
    return undefined
  }
  const p = parseFullString(url)
  if (!p) return undefined
  const uid = p.params.find(([k]) => k === ENLIST_UID_PARAM)?.[1]
  const pod = p.params.find(([k]) => k === ENLIST_POD_PARAM)?.[1]
  if (!uid || !pod) return undefined
  const slash = pod.indexOf('/')
  if (slash <= 0) return undefined
  const cluster = p.params.find(([k]) => k === CLUSTER_PARAM)?.[1]
  return { uid, namespace: pod.slice(0, slash), pod: pod.slice(slash + 1), cluster: cluster || undefined }
}
