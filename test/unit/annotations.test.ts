// Parsers of what users write: accepted forms, and the exact messages for rejected ones.
import t, { type Test } from 'tap'
import {
  parseContainerList,
  parseDrainSeconds,
  parseMetadata,
  parseNamespaceOptIn,
  parsePodOptIn,
  parsePreStopMode,
  parseReadinessGate,
  parseRegistrarTimeout,
  parseServiceName,
} from '../../src/admission/annotations.js'
import type { Result } from '../../src/contract/annotation-error.js'
import { parseDependsOn } from '../../src/contract/dependencies.js'

function value<T>(t: Test, r: Result<T>): T | undefined {
  if (!r.ok) {
    t.fail(`unexpected error: ${r.error.message}`)
    return undefined
  }
  return r.value
}
function message<T>(t: Test, r: Result<T>): string {
  if (r.ok) {
    t.fail(`expected an error, got ${JSON.stringify(r.value)}`)
    return ''
  }
  return r.error.message
}

t.test('depends-on: accepted forms', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['mysql', [{ namespace: 'shop', service: 'mysql' }]],
    ['mysql:3306', [{ namespace: 'shop', service: 'mysql', port: 3306 }]],
    ['payments/ledger', [{ namespace: 'payments', service: 'ledger' }]],
    ['payments/ledger:grpc', [{ namespace: 'payments', service: 'ledger', port: 'grpc' }]],
    [
      'mysql:3306, payments/ledger',
      [
        { namespace: 'shop', service: 'mysql', port: 3306 },
        { namespace: 'payments', service: 'ledger' },
      ],
    ],
    ['  redis  ,kafka:9092 ', [{ namespace: 'shop', service: 'redis' }, { namespace: 'shop', service: 'kafka', port: 9092 }]],
    ['a:1', [{ namespace: 'shop', service: 'a', port: 1 }]],
    ['a:65535', [{ namespace: 'shop', service: 'a', port: 65535 }]],
    ['mysql, mysql', [{ namespace: 'shop', service: 'mysql' }]],
    ['shop/mysql, mysql', [{ namespace: 'shop', service: 'mysql' }]],
    ['mysql:3306, mysql', [{ namespace: 'shop', service: 'mysql', port: 3306 }, { namespace: 'shop', service: 'mysql' }]],
    ['a-b-c:http-alt', [{ namespace: 'shop', service: 'a-b-c', port: 'http-alt' }]],
  ]
  for (const [input, want] of cases) t.same(value(t, parseDependsOn(input, 'shop')), want, input)
})

t.test('depends-on: rejected forms name the entry and the accepted form', async (t) => {
  const form = 'accepted: "[namespace/]service[:port]" separated by commas, e.g. "mysql:3306, payments/ledger"'
  const cases: Array<[string, string]> = [
    ['', 'entry 1 "": no dependency given'],
    ['mysql,', 'entry 2 "": empty entry'],
    ['mysql,,redis', 'entry 2 "": empty entry'],
    ['mysql:0', 'entry 1 "mysql:0": port 0 is out of range 1-65535'],
    ['mysql:65536', 'entry 1 "mysql:65536": port 65536 is out of range 1-65535'],
    ['mysql:abc!', 'entry 1 "mysql:abc!": port "abc!" is neither a number 1-65535 nor a port name'],
    ['mysql:', 'entry 1 "mysql:": port "" is neither a number 1-65535 nor a port name'],
    ['MySQL', 'entry 1 "MySQL": service "MySQL" is not a valid Service name'],
    ['1mysql', 'entry 1 "1mysql": service "1mysql" is not a valid Service name'],
    ['my_sql', 'entry 1 "my_sql": service "my_sql" is not a valid Service name'],
    ['Pay/ledger', 'entry 1 "Pay/ledger": namespace "Pay" is not a valid namespace name'],
    ['/ledger', 'entry 1 "/ledger": namespace "" is not a valid namespace name'],
    ['a/b/c', 'entry 1 "a/b/c": service "b/c" is not a valid Service name'],
    ['ok, bad service', 'entry 2 "bad service": service "bad service" is not a valid Service name'],
    ['mysql:3306:1', 'entry 1 "mysql:3306:1": port "3306:1" is neither a number 1-65535 nor a port name'],
    ['x:averyveryverylongportname', 'entry 1 "x:averyveryverylongportname": port "averyveryverylongportname" is neither a number 1-65535 nor a port name'],
    ['x:' + 'a'.repeat(3) + '--b', 'entry 1 "x:aaa--b": port "aaa--b" is neither a number 1-65535 nor a port name'],
    ['a'.repeat(64), `entry 1 "${'a'.repeat(64)}": service "${'a'.repeat(64)}" is not a valid Service name`],
  ]
  for (const [input, problem] of cases) {
    t.equal(message(t, parseDependsOn(input, 'shop')), `annotation enlist.io/depends-on: ${JSON.stringify(input)} is invalid: ${problem}; ${form}`, JSON.stringify(input))
  }
})

t.test('metadata: accepted', async (t) => {
  t.same(value(t, parseMetadata('{"interface":"com.acme.Orders","group":"g1"}')), { interface: 'com.acme.Orders', group: 'g1' })
  t.same(value(t, parseMetadata('{}')), {})
  t.same(value(t, parseMetadata(' { "a" : "" } ')), { a: '' })
  t.same(value(t, parseMetadata('{"weight":"10","版本":"v1"}')), { weight: '10', 版本: 'v1' })
  const proto = value(t, parseMetadata('{"__proto__":"x"}'))
  t.equal(Object.getPrototypeOf(proto), null, 'no prototype to pollute')
  t.equal(proto && Object.getOwnPropertyDescriptor(proto, '__proto__')?.value, 'x', '__proto__ stays a plain key')
})

t.test('metadata: rejected', async (t) => {
  const form = 'accepted: a JSON object of strings, e.g. {"interface":"com.acme.Orders","group":"g1"}'
  const cases: Array<[string, RegExp | string]> = [
    ['[1]', 'a JSON array, not an object'],
    ['"s"', 'a JSON string, not an object'],
    ['null', 'a JSON null, not an object'],
    ['42', 'a JSON number, not an object'],
    ['{"a":1}', 'the value of "a" is a number, not a string'],
    ['{"a":null}', 'the value of "a" is a null, not a string'],
    ['{"a":{"b":"c"}}', 'the value of "a" is a object, not a string'],
    ['{"a":true}', 'the value of "a" is a boolean, not a string'],
    ['{"":"x"}', 'an empty key'],
    ['{"ip":"1.2.3.4"}', 'key "ip" is a field of the registry record itself'],
    ['{"uid":"x"}', 'key "uid" is a field of the registry record itself'],
  ]
  for (const [input, problem] of cases) {
    t.equal(message(t, parseMetadata(input)), `annotation enlist.io/metadata: ${JSON.stringify(input)} is invalid: ${problem}; ${form}`, input)
  }
  t.match(message(t, parseMetadata('{interface: x}')), /^annotation enlist\.io\/metadata: "\{interface: x\}" is invalid: not JSON \(.+\); accepted: a JSON object of strings/)
  t.match(message(t, parseMetadata('{"a":"b"')), /not JSON/)
})

t.test('long values are shortened in messages', async (t) => {
  const long = 'x'.repeat(500)
  const m = message(t, parseMetadata(long))
  t.ok(m.length < 400, 'message stays short')
  t.match(m, /\.\.\."/)
})

t.test('pod opt-in', async (t) => {
  t.equal(value(t, parsePodOptIn(undefined, undefined)), undefined)
  t.equal(value(t, parsePodOptIn({ 'enlist.io/inject': 'true' }, undefined)), 'true')
  t.equal(value(t, parsePodOptIn(undefined, { 'enlist.io/inject': 'false' })), 'false')
  t.equal(value(t, parsePodOptIn({ 'enlist.io/inject': 'true' }, { 'enlist.io/inject': 'false' })), 'false')
  t.equal(value(t, parsePodOptIn({ 'enlist.io/inject': 'true' }, { 'enlist.io/inject': 'true' })), 'true')
  for (const bad of ['yes', 'TRUE', '1', '', 'enabled', ' true']) {
    t.notOk(parsePodOptIn(undefined, { 'enlist.io/inject': bad }).ok, `annotation ${JSON.stringify(bad)}`)
    t.notOk(parsePodOptIn({ 'enlist.io/inject': bad }, undefined).ok, `label ${JSON.stringify(bad)}`)
  }
})

t.test('namespace opt-in', async (t) => {
  t.equal(parseNamespaceOptIn(undefined), undefined)
  t.equal(parseNamespaceOptIn({}), undefined)
  t.equal(parseNamespaceOptIn({ 'enlist.io/inject': 'enabled' }), 'enabled')
  t.equal(parseNamespaceOptIn({ 'enlist.io/inject': 'disabled' }), 'disabled')
  t.equal(parseNamespaceOptIn({ 'enlist.io/inject': 'true' }), 'invalid')
  t.equal(parseNamespaceOptIn({ 'enlist.io/inject': 'Enabled' }), 'invalid')
})

t.test('service name: a DNS-1123 label of at most 63 characters', async (t) => {
  for (const ok of ['orders', 'a', 'orders-v2', '9lives', 'x'.repeat(63)]) t.equal(value(t, parseServiceName(ok)), ok)
  // issue 24, finding 4: each of these was accepted before and reached subjects, keys and paths
  for (const bad of ['', '-a', 'a-', 'a b', 'a/b', '.a', 'x'.repeat(64), 'ünïcode', 'com.acme.Orders', 'A_b-c', 'orders.v2', 'orders_v2', 'orders*v2', '../x', 'a>b', 'a\u0000b']) {
    t.match(message(t, parseServiceName(bad)), /^annotation enlist\.io\/service: .* is invalid: not a service name; accepted: a DNS-1123 label: lowercase letters, digits and "-", .*at most 63 characters$/, JSON.stringify(bad))
  }
  t.match(message(t, parseServiceName('My_App', 'app', 'label')), /^label app: "My_App" is invalid: not a service name/)
})

t.test('drain seconds', async (t) => {
  t.equal(value(t, parseDrainSeconds('1')), 1)
  t.equal(value(t, parseDrainSeconds('3600')), 3600)
  for (const bad of ['0', '3601', '-1', '1.5', '5s', '', ' 5']) {
    t.equal(
      message(t, parseDrainSeconds(bad)),
      `annotation enlist.io/drain-seconds: ${JSON.stringify(bad)} is invalid: not a whole number of seconds in range; accepted: an integer from 1 to 3600`,
    )
  }
})

t.test('preStop mode and readiness gate', async (t) => {
  for (const m of ['auto', 'sleep', 'exec', 'none']) t.equal(value(t, parsePreStopMode(m)), m)
  t.match(message(t, parsePreStopMode('http')), /accepted: "auto", "sleep", "exec" or "none"$/)
  t.equal(value(t, parseReadinessGate('true')), true)
  t.equal(value(t, parseReadinessGate('false')), false)
  t.match(message(t, parseReadinessGate('no')), /enlist\.io\/readiness-gate: "no" is invalid/)
})

t.test('registrar timeout', async (t) => {
  const ok: Array<[string, number]> = [
    ['300', 300],
    ['90s', 90],
    ['5m', 300],
    ['1h30m', 5400],
    ['1h', 3600],
    ['24h', 86400],
    ['1m30s', 90],
  ]
  for (const [s, n] of ok) t.equal(value(t, parseRegistrarTimeout(s)), n, s)
  for (const bad of ['0', '0s', '25h', '86401', '5 m', '1.5m', 'm', '', '-5', '5d']) {
    t.match(message(t, parseRegistrarTimeout(bad)), /accepted: seconds \("300"\) or a duration \("5m", "1h30m"\)$/, JSON.stringify(bad))
  }
})

t.test('container lists', async (t) => {
  t.same(value(t, parseContainerList('*')), ['*'])
  t.same(value(t, parseContainerList(' * ')), ['*'])
  t.same(value(t, parseContainerList('app')), ['app'])
  t.same(value(t, parseContainerList('app, sidecar')), ['app', 'sidecar'])
  for (const bad of ['', 'App', 'a,,b', 'a;b']) t.notOk(parseContainerList(bad).ok, JSON.stringify(bad))
})
