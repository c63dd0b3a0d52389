// Dependency readiness: from EndpointSlices where the apiserver serves them (v1, else
// v1beta1), from Endpoints only as a fallback, and what counts as a ready endpoint.
import t from 'tap'
import type { V1EndpointSlice } from '@kubernetes/client-node'
import { type CallOptions, KubeApiError, type Query } from '../../src/kube/client.js'
import type { ListWatchClient } from '../../src/kube/reflector.js'
import { parseDecidedDependencies } from '../../src/contract/dependencies.js'
import { DependencyCache, endpointsReady, missingDependencies, slicesReady } from '../../src/registration/dependencies.js'
import { silentLogger } from '../../src/log.js'

const slice = (ready: Array<boolean | undefined>, ports: Array<string | undefined>): V1EndpointSlice => ({
  addressType: 'IPv4',
  endpoints: ready.map((r, i) => ({ addresses: [`10.0.0.${i}`], conditions: r === undefined ? {} : { ready: r } })),
  ports: ports.map((name, i) => ({ name, port: 80 + i })),
})

t.test('what counts as ready in EndpointSlices and Endpoints', async (t) => {
  t.ok(slicesReady([slice([undefined], ['http'])]), 'a nil ready condition is ready, as the API says')
  t.notOk(slicesReady([slice([false, false], ['http'])]), 'only not-ready endpoints')
  t.ok(slicesReady([slice([false], ['http']), slice([true], ['http'])]), 'any slice of the Service')
  t.ok(slicesReady([slice([true], ['http', 'metrics'])], 'metrics'))
  t.notOk(slicesReady([slice([true], ['http']), slice([false], ['metrics'])], 'metrics'), 'ready on another port does not count')
  t.ok(slicesReady([slice([true], [undefined])], ''), 'an unnamed port')
  t.notOk(slicesReady([]))
  t.ok(endpointsReady({ subsets: [{ addresses: [{ ip: '1.1.1.1' }], ports: [{ name: 'pg', port: 5432 }] }] }, 'pg'))
  t.notOk(endpointsReady({ subsets: [{ notReadyAddresses: [{ ip: '1.1.1.1' }], ports: [{ name: 'pg', port: 5432 }] }] }))
  t.notOk(endpointsReady(undefined))
})

/** An apiserver that serves (or not) each EndpointSlice version, and lists nothing. */
class Discovery implements ListWatchClient {
  asked: string[] = []
  constructor(private readonly answer: (path: string) => 'ok' | 404 | 403 | 500) {}
  async get<T>(path: string, query?: Query, _opts?: CallOptions): Promise<T> {
    if (query?.limit === 1) {
      this.asked.push(path)
      const a = this.answer(path)
      if (a !== 'ok') throw new KubeApiError(a, a === 404 ? 'NotFound' : a === 403 ? 'Forbidden' : 'InternalError', 'no', 'GET', path)
    }
    return { metadata: { resourceVersion: '1' }, items: [] } as T
  }
  watch(_path: string, _query: Query, _onEvent: (e: unknown) => void, signal: AbortSignal): Promise<void> {
    return new Promise((r) => signal.addEventListener('abort', () => r(), { once: true }))
  }
}

async function chosen(answer: (path: string) => 'ok' | 404 | 403 | 500): Promise<{ source: string | undefined; asked: string[] }> {
  const api = new Discovery(answer)
  const cache = new DependencyCache(api, silentLogger())
  cache.start()
  const end = Date.now() + 10_000
  while (!cache.synced && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
  await cache.stop()
  return { source: cache.source, asked: api.asked }
}

t.test('the newest EndpointSlice API served and allowed, else Endpoints', async (t) => {
  t.same(await chosen(() => 'ok'), { source: 'discovery.k8s.io/v1', asked: ['/apis/discovery.k8s.io/v1/endpointslices'] }, '1.21 and later')
  t.same((await chosen((p) => (p.includes('/v1/') ? 404 : 'ok'))).source, 'discovery.k8s.io/v1beta1', '1.17 to 1.20')
  t.same((await chosen(() => 404)).source, 'v1/endpoints', 'no EndpointSlices at all')
  t.same((await chosen(() => 403)).source, 'v1/endpoints', 'not allowed by RBAC: Endpoints, with a warning')
  let failures = 1
  const flaky = await chosen(() => (failures-- > 0 ? 500 : 'ok'))
  t.same(flaky.source, 'discovery.k8s.io/v1', 'an apiserver that failed is asked again')
  t.equal(flaky.asked.length, 2)
})

t.test('readiness through the cache reads the chosen API', async (t) => {
  const deps = parseDecidedDependencies(['shop/db:pg'])
  t.same(missingDependencies(deps, { service: () => ({ spec: { ports: [{ name: 'pg', port: 5432 }] } }), readyEndpoints: (_ns, _n, port) => slicesReady([slice([true], ['pg'])], port) }), [])
})
