// The Dubbo provider URL and dubbo-go's annotation pairs, against what Dubbo and dubbo-go
// themselves write (examples from their code, comments and the nodes their demos create).
import t from 'tap'
import {
  CLUSTER_PARAM,
  dubboMetadataError,
  dubboProviderOf,
  dubboProvider,
  enlistOwner,
  goQueryEscape,
  javaUrlDecode,
  javaUrlEncode,
  parseFullString,
  providerNodeName,
  providersPath,
  selectDubboPort,
  toFullString,
} from '../../src/registry/dubbo.js'
import type { RegistryRecord } from '../../src/registry/record.js'
import { decodeDubboGoAnnotation, dubboGoPairs, encodeDubboGoAnnotation } from '../../src/registry/dubbo-go.js'
import { DUBBO_GO_PROVIDER } from '../helpers/dubbo-go-provider.js'

// The provider URL of Dubbo's demo (dubbo-demo-api-provider), as RegistryProtocol logs it in its
// `export` parameter, decoded and as URL.encode writes it.
const DEMO =
  'dubbo://192.168.0.114:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=dubbo-demo-api-provider' +
  '&bind.ip=192.168.0.114&bind.port=20880&default=true&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false' +
  '&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&pid=16459&release=&side=provider&timestamp=1630745698310'
const DEMO_ENCODED =
  'dubbo%3A%2F%2F192.168.0.114%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddubbo-demo-api-provider' +
  '%26bind.ip%3D192.168.0.114%26bind.port%3D20880%26default%3Dtrue%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse' +
  '%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello%2CsayHelloAsync%26pid%3D16459%26release%3D%26side%3Dprovider%26timestamp%3D1630745698310'

t.test("URL.toFullString and URL.encode, as Dubbo's demo provider writes them", async (t) => {
  const parsed = parseFullString(DEMO)!
  t.equal(parsed.host, '192.168.0.114')
  t.equal(parsed.port, 20880)
  t.equal(parsed.interface, 'org.apache.dubbo.demo.DemoService')
  // parameters in any order come out sorted, as the TreeMap in buildParameters sorts them
  const shuffled = { ...parsed, params: [...parsed.params].reverse() }
  t.equal(toFullString({ ...shuffled, params: [...shuffled.params].sort(([a], [b]) => (a < b ? -1 : 1)) }), DEMO)
  t.equal(javaUrlEncode(DEMO), DEMO_ENCODED, 'URLEncoder: ":/?=&," escaped, "." kept')
  t.equal(javaUrlDecode(DEMO_ENCODED), DEMO)
  t.equal(providersPath('/dubbo', 'org.apache.dubbo.demo.DemoService'), '/dubbo/org.apache.dubbo.demo.DemoService/providers')
  t.equal(providersPath('/', 'a.B'), '/a.B/providers', 'root "/" as ZookeeperRegistry.toRootDir')
})

t.test('URLEncoder and Go QueryEscape differ only where they do', async (t) => {
  t.equal(javaUrlEncode('a b*~'), 'a+b*%7E')
  t.equal(goQueryEscape('a b*~'), 'a+b%2A~')
  t.equal(javaUrlEncode('版本'), '%E7%89%88%E6%9C%AC', 'UTF-8 bytes, upper-case hex')
  t.equal(javaUrlEncode("!'()"), '%21%27%28%29')
})

const input = {
  uid: 'u-1',
  namespace: 'shop',
  pod: 'orders-7d9c-x2k4p',
  service: 'orders',
  metadata: { interface: 'com.acme.Orders', version: '1.0.0', group: 'g1', methods: 'get,list', timeout: '3000' },
  registeredAt: '2026-11-22T03:00:00Z',
  host: '10.244.0.13',
  port: 20880,
}

t.test("the provider a pod is: what consumers match on, enlist's own parameters", async (t) => {
  const p = dubboProvider(input)
  const url = toFullString(p)
  t.equal(
    url,
    'dubbo://10.244.0.13:20880/com.acme.Orders?application=orders&dubbo=2.0.2&dynamic=false&enlist.pod=shop/orders-7d9c-x2k4p' +
      '&enlist.uid=u-1&group=g1&interface=com.acme.Orders&methods=get,list&side=provider&timeout=3000&timestamp=1795316400000&version=1.0.0',
  )
  t.same(enlistOwner(providerNodeName(p)), { uid: 'u-1', namespace: 'shop', pod: 'orders-7d9c-x2k4p', cluster: undefined }, 'no cluster given: unmarked')
  t.equal(enlistOwner(DEMO_ENCODED), undefined, "a provider Dubbo wrote is not enlist's")
  t.equal(enlistOwner('%%%'), undefined)
  t.match(toFullString(dubboProvider({ ...input, metadata: { ...input.metadata, application: 'orders-app', protocol: 'tri', port: 'grpc' } })), /^tri:\/\/10\.244\.0\.13:20880\/com\.acme\.Orders\?application=orders-app&/)
  t.equal(toFullString(dubboProvider({ ...input, host: 'fd00::5' })).split('/')[2], '[fd00::5]:20880', 'IPv6 in brackets')
  t.throws(() => dubboProvider({ ...input, metadata: { version: '1' } }), { code: 'ENLIST_DUBBO_INVALID', message: /no "interface"/ })
})

t.test('metadata that cannot make a provider URL is refused, with the reason', async (t) => {
  const ports = [{ name: 'dubbo', port: 20880, protocol: 'TCP' }, { name: 'http', port: 8080, protocol: 'TCP' }]
  t.equal(dubboMetadataError({ interface: 'com.acme.Orders' }, ports), undefined)
  t.match(dubboMetadataError(undefined, ports), /has no "interface"/)
  t.match(dubboMetadataError({ interface: 'com acme' }, ports), /not a Java interface name/)
  t.match(dubboMetadataError({ interface: 'a.B', group: 'x&y' }, ports), /value of "group"/)
  t.match(dubboMetadataError({ interface: 'a.B', 'a=b': '1' }, ports, new Set(['a=b'])), /key "a=b"/)
  t.equal(dubboMetadataError({ interface: 'a.B', 'a=b': '1', note: 'x&y' }, ports), undefined, 'keys that are not provider parameters stay out of the URL: their characters do not matter to it')
  t.match(dubboMetadataError({ interface: 'a.B', side: 'consumer' }, ports), /enlist sets itself/)
  t.match(dubboMetadataError({ interface: 'a.B', protocol: '1x' }, ports), /not a URL scheme/)
  t.match(dubboMetadataError({ interface: 'a.B' }, [ports[1]!, { port: 9090, protocol: 'TCP' }]), /cannot tell which port serves dubbo/)
  t.match(dubboMetadataError({ interface: 'a.B', port: '7' }, ports), /"port" "7" is not a port/)
})

t.test('which port serves Dubbo', async (t) => {
  const ports = [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dubbo', port: 20880, protocol: 'TCP' }, { name: 'tri', port: 50051, protocol: 'TCP' }]
  t.same(selectDubboPort({}, ports), ports[1], 'named as the protocol')
  t.same(selectDubboPort({ protocol: 'tri' }, ports), ports[2])
  t.same(selectDubboPort({ port: '8080' }, ports), ports[0], 'by number')
  t.same(selectDubboPort({ port: 'http' }, ports), ports[0], 'by name')
  t.same(selectDubboPort({}, [{ port: 12345, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]), { port: 12345, protocol: 'TCP' }, 'the only TCP port')
})

// A pod annotation as a dubbo-go provider writes it: json.Marshal of []*WatcherEvent, then
// base64.URLEncoding (written here with the standard alphabet swapped, as Go's encoder does).
function asDubboGoWrites(pairs: Array<{ k: string; v: string }>): string {
  return Buffer.from(JSON.stringify(pairs)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')
}

t.test("dubbo-go's pairs: the directory key and the provider key, values empty", async (t) => {
  const p = dubboProvider({ ...input, metadata: { interface: 'com.acme.Orders', methods: 'get' } })
  const pairs = dubboGoPairs(p)
  t.same(pairs[0], { k: '/dubbo/com.acme.Orders/providers', v: '' })
  t.equal(pairs[1]!.k.startsWith('/dubbo/com.acme.Orders/providers/dubbo%3A%2F%2F10.244.0.13%3A20880%2Fcom.acme.Orders%3F'), true)
  // a dubbo-go consumer: the text after "/providers/", QueryUnescape'd, is the URL
  const k = pairs[1]!.k
  const url = decodeURIComponent(k.slice(k.indexOf('/providers/') + '/providers/'.length).replace(/\+/g, '%20'))
  t.equal(url, toFullString(p))
  const encoded = encodeDubboGoAnnotation(pairs)
  t.equal(encoded, asDubboGoWrites(pairs), 'byte for byte what dubbo-go writes (padding included)')
  t.equal(encoded.length % 4, 0)
  t.same(decodeDubboGoAnnotation(encoded), pairs)
  // and what a dubbo-go provider wrote reads back
  const written = [{ k: '/dubbo/org.apache.dubbo.demo.DemoService/providers', v: '' }, { k: `/dubbo/org.apache.dubbo.demo.DemoService/providers/${goQueryEscape(DEMO)}`, v: '' }]
  t.same(decodeDubboGoAnnotation(asDubboGoWrites(written)), written)
  t.throws(() => decodeDubboGoAnnotation('abc'), { code: 'ENLIST_DUBBO_GO_INVALID' }, 'unpadded is refused, as Go does')
  t.throws(() => decodeDubboGoAnnotation(Buffer.from('{}').toString('base64')), /not a JSON array/)
})

// How a Dubbo consumer reads a provider node, ported line by line from apache/dubbo
// dubbo-common/src/main/java/org/apache/dubbo/common/URLStrParser.java (parseEncodedStr,
// parseEncodedParams, addParam, parseURLBody; username/password and IPv6 scope ids left out),
// which dubbo-registry/dubbo-registry-zookeeper/.../ZookeeperRegistry.java toUrlsWithoutEmpty
// calls on every child of /providers before UrlUtils.isMatch(consumer, url).
function dubboParseEncoded(encoded: string): { protocol: string; host: string; port: number; path: string; params: Map<string, string> } {
  const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'))
  const params = new Map<string, string>()
  let pathEnd = encoded.indexOf('%3F')
  if (pathEnd >= 0) {
    // parseEncodedParams: %XX decoded one char at a time; '&' or ';' end a pair, the first '=' splits it
    let nameStart = pathEnd + 3
    let valueStart = -1
    const add = (valueEnd: number) => {
      if (nameStart >= valueEnd) return
      if (valueStart <= nameStart) valueStart = valueEnd + 1
      const name = decode(encoded.slice(nameStart, valueStart - 3))
      const value = valueStart === valueEnd ? name : decode(encoded.slice(valueStart, valueEnd))
      params.set(name, value)
      if (name.startsWith('default.') && !params.has(name.slice(8))) params.set(name.slice(8), value)
    }
    let i: number
    for (i = nameStart; i < encoded.length; i++) {
      let ch = encoded[i]!
      if (ch === '%') {
        ch = String.fromCharCode(parseInt(encoded.slice(i + 1, i + 3), 16))
        i += 2
      }
      if (ch === '=') {
        if (nameStart === i) nameStart = i + 1
        else if (valueStart < nameStart) valueStart = i + 1
      } else if (ch === '&' || ch === ';') {
        add(i - 2)
        nameStart = i + 1
      }
    }
    add(i)
  } else {
    pathEnd = encoded.length
  }
  // parseURLBody: protocol before "://", path after the first "/", port after the last ":"
  const body = decode(encoded.slice(0, pathEnd))
  const protoEnd = body.indexOf('://')
  const rest = body.slice(protoEnd + 3)
  const slash = rest.indexOf('/')
  const hostPort = slash >= 0 ? rest.slice(0, slash) : rest
  const colon = hostPort.lastIndexOf(':')
  return { protocol: body.slice(0, protoEnd), host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)), path: slash >= 0 ? rest.slice(slash + 1) : '', params }
}

t.test('the cluster mark: a parameter Dubbo parses like any other and consumers ignore', async (t) => {
  const marked = dubboProvider({ ...input, cluster: 'east' })
  const plain = dubboProvider(input)
  t.equal(
    toFullString(marked),
    toFullString(plain).replace('&enlist.pod=', '&enlist.cluster=east&enlist.pod='),
    'enlist.cluster beside enlist.pod and enlist.uid, in sorted place',
  )
  t.same(enlistOwner(providerNodeName(marked)), { uid: 'u-1', namespace: 'shop', pod: 'orders-7d9c-x2k4p', cluster: 'east' })
  t.equal(dubboProvider({ ...input, cluster: '' }).params.some(([k]) => k === CLUSTER_PARAM), false, 'an empty name marks nothing')

  // What a Dubbo consumer reads from the node: the same URL, one more parameter.
  const seen = dubboParseEncoded(providerNodeName(marked))
  const unmarked = dubboParseEncoded(providerNodeName(plain))
  t.same([seen.protocol, seen.host, seen.port, seen.path], ['dubbo', '10.244.0.13', 20880, 'com.acme.Orders'])
  t.equal(seen.params.get('enlist.cluster'), 'east')
  t.same(new Map([...seen.params].filter(([k]) => k !== 'enlist.cluster')), unmarked.params, 'every other parameter as without the mark')
  // UrlUtils.isMatch (dubbo-common/.../common/utils/UrlUtils.java) reads interface, category,
  // enabled, group, version and classifier: the mark is none of them, so every consumer that
  // matched the provider before matches it now.
  for (const k of ['interface', 'category', 'enabled', 'group', 'version', 'classifier']) t.equal(seen.params.get(k), unmarked.params.get(k), k)
  // and the port of Dubbo's parser agrees with Dubbo's own demo node
  const demo = dubboParseEncoded(DEMO_ENCODED)
  t.same([demo.host, demo.port, demo.params.get('interface'), demo.params.get('methods')], ['192.168.0.114', 20880, 'org.apache.dubbo.demo.DemoService', 'sayHello,sayHelloAsync'])

  // metadata cannot set the mark (or forge another cluster's)
  t.match(dubboMetadataError({ interface: 'a.B', 'enlist.cluster': 'west' }, [{ name: 'dubbo', port: 20880, protocol: 'TCP' }]), /key "enlist.cluster" is a parameter enlist sets itself/)
})

t.test("dubbo-go's annotation on the pod carries no mark: the pod is the entry", async (t) => {
  const record: RegistryRecord = {
    uid: 'u-1',
    namespace: 'shop',
    pod: 'orders-1',
    service: 'orders',
    ip: '10.244.0.13',
    ips: ['10.244.0.13'],
    hostIP: '192.168.0.2',
    node: 'node-1',
    ports: [{ name: 'dubbo', port: 20880, protocol: 'TCP' }],
    metadata: { interface: 'com.acme.Orders' },
    registeredAt: '2026-11-22T03:00:00Z',
    advertised: { mode: 'podIP', address: '10.244.0.13', ports: [{ containerPort: 20880, protocol: 'TCP', port: 20880 }] },
    cluster: 'east',
  }
  const p = dubboProviderOf(record)
  t.equal(p.params.some(([k]) => k === CLUSTER_PARAM), false, 'the kubernetes backend passes no cluster: the annotation is as before')
  t.equal(dubboProviderOf(record, 'east').params.find(([k]) => k === CLUSTER_PARAM)?.[1], 'east', 'the ZooKeeper backend passes its own')
})

t.test("a provider's annotation as dubbo-go itself wrote it (its own test data)", async (t) => {
  const pairs = decodeDubboGoAnnotation(DUBBO_GO_PROVIDER.annotation)
  t.same(
    pairs.map((p) => p.k.replace(/\/providers\/.*$/, '/providers/URL')),
    DUBBO_GO_PROVIDER.interfaces.flatMap((i) => [`/dubbo/${i}/providers`, `/dubbo/${i}/providers/URL`]),
    'per interface: the directory key, then the provider key',
  )
  t.ok(pairs.every((p) => p.v === ''), 'values empty')
  // enlist writes the same encoding: the pairs dubbo-go wrote, encoded again, give its very text
  t.equal(encodeDubboGoAnnotation(pairs), DUBBO_GO_PROVIDER.annotation, 'byte for byte, padding and alphabet included')
  for (const iface of DUBBO_GO_PROVIDER.interfaces) {
    const k = pairs.find((p) => p.k.startsWith(`/dubbo/${iface}/providers/`))!.k
    const escaped = k.slice(`/dubbo/${iface}/providers/`.length)
    const url = decodeURIComponent(escaped.replace(/\+/g, '%20'))
    const p = parseFullString(url)!
    t.equal(`${p.host}:${p.port}`, DUBBO_GO_PROVIDER.address, `${iface}: the provider's address`)
    t.equal(p.interface, iface)
    t.match(Object.fromEntries(p.params), { interface: iface, side: 'provider', release: 'dubbo-golang-3.0.0' })
    // the escaping enlist uses for its own provider keys is dubbo-go's
    t.equal(goQueryEscape(url), escaped, `${iface}: QueryEscape as dubbo-go applied it`)
  }
})
