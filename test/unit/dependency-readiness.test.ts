// Dependency readiness, judged from Services and their endpoints (pure).
import t from 'tap'
import type { V1Endpoints, V1Service } from '@kubernetes/client-node'
import { parseDecidedDependencies } from '../../src/contract/dependencies.js'
import { endpointsReady, missingDependencies } from '../../src/registration/dependencies.js'

t.test('dependency readiness', async (t) => {
  const services = new Map<string, V1Service>([
    ['shop/db', { spec: { ports: [{ name: 'pg', port: 5432 }, { name: 'metrics', port: 9187 }] } }],
    ['shop/cache', { spec: { ports: [{ port: 6379 }] } }],
    ['shop/ext', { spec: { type: 'ExternalName' } }],
    ['pay/ledger', { spec: { ports: [{ name: 'grpc', port: 443 }] } }],
  ])
  const endpoints = new Map<string, V1Endpoints>([
    ['shop/db', { subsets: [{ addresses: [{ ip: '1.1.1.1' }], ports: [{ name: 'pg', port: 5432 }] }, { notReadyAddresses: [{ ip: '1.1.1.2' }], ports: [{ name: 'metrics', port: 9187 }] }] }],
    ['shop/cache', { subsets: [{ addresses: [{ ip: '1.1.1.3' }], ports: [{ port: 6379 }] }] }],
    ['pay/ledger', { subsets: [{ notReadyAddresses: [{ ip: '1.1.1.4' }], ports: [{ name: 'grpc', port: 443 }] }] }],
  ])
  const facts = { service: (ns: string, n: string) => services.get(`${ns}/${n}`), readyEndpoints: (ns: string, n: string, port?: string) => endpointsReady(endpoints.get(`${ns}/${n}`), port) }
  const check = (v: string) => missingDependencies(parseDecidedDependencies([v]), facts)
  t.same(check(''), [])
  t.same(check('shop/db'), [], 'any ready endpoint')
  t.same(check('shop/db:5432'), [], 'by port number')
  t.same(check('shop/db:pg'), [], 'by port name')
  t.same(check('shop/db:metrics'), [{ dependency: 'shop/db:metrics', reason: 'no ready endpoints on port metrics' }], 'ready elsewhere does not count')
  t.same(check('shop/db:3306'), [{ dependency: 'shop/db:3306', reason: 'the Service has no port 3306' }])
  t.same(check('shop/cache:6379'), [], 'an unnamed single port')
  t.same(check('shop/ext:80'), [], 'ExternalName: nothing to count')
  t.same(check('pay/ledger'), [{ dependency: 'pay/ledger', reason: 'no ready endpoints' }], 'only not-ready addresses')
  t.same(check('shop/nope'), [{ dependency: 'shop/nope', reason: 'Service not found' }])
  t.same(check('shop/db,shop/nope,pay/ledger:grpc').map((m) => m.dependency), ['shop/nope', 'pay/ledger:grpc'])
})
