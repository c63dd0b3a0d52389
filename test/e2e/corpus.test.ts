// Every object of the shared corpus is created twice: in a namespace labelled enabled and
// in a twin labelled disabled. The apiserver accepts each (its validation judges every
// patch we produce); every injected pod carries every item; and it keeps everything the
// apiserver and the controllers made of the same object without enlist.
import t from 'tap'
import type { V1Pod } from '@kubernetes/client-node'
import { corpus, lostValues, missingItems, templateOf } from '../helpers/corpus.js'
import { controlPlaneFor, waitForServiceAccount } from '../harness/control-plane.js'
import { enlistFor } from '../harness/enlist.js'
import { listPods } from '../harness/k8s.js'
import { waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t)
await enlistFor(t, cp)

const entries = corpus()
const nsOf = (i: number, side: 'on' | 'off') => `corpus-${i}-${side}`

async function prepare(i: number, side: 'on' | 'off'): Promise<void> {
  const ns = nsOf(i, side)
  await cp.namespace(ns, { 'enlist.io/inject': side === 'on' ? 'enabled' : 'disabled' })
  // The examples expect the service accounts they name to exist, as any cluster would.
  const spec = templateOf(entries[i]!.object).spec as { serviceAccountName?: string; serviceAccount?: string }
  const sa = spec.serviceAccountName ?? spec.serviceAccount
  if (sa && sa !== 'default') {
    await cp.client.create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa } })
    await waitForServiceAccount(cp.client, ns, sa)
  }
}

async function inBatches<T>(items: T[], size: number, fn: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn))
}

// Service-account token volumes are named after a random Secret; the same in both twins.
const normalise = (pod: V1Pod): V1Pod => JSON.parse(JSON.stringify(pod.spec).replace(/-token-[a-z0-9]{5}\b/g, '-token-xxxxx')) as V1Pod

t.test('every corpus object is accepted', async (t) => {
  await inBatches([...entries.keys()], 8, async (i) => {
    await prepare(i, 'on')
    await prepare(i, 'off')
  })
  await inBatches([...entries.keys()], 4, async (i) => {
    for (const side of ['on', 'off'] as const) {
      const r = await cp.kubectl(['create', '-n', nsOf(i, side), '-f', '-'], { input: entries[i]!.text })
      t.equal(r.code, 0, `${entries[i]!.file} (${side}): ${r.stderr.trim()}`)
    }
  })
})

t.test('every pod carries every item and loses nothing the apiserver would have made', async (t) => {
  const firstPod = async (ns: string) => (await listPods(cp, ns)).sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))[0]
  const pods = new Map<number, { on: V1Pod; off: V1Pod }>()
  await waitFor(
    'a pod from every corpus object, on both sides',
    async () => {
      await inBatches([...entries.keys()].filter((i) => !pods.has(i)), 8, async (i) => {
        const [on, off] = [await firstPod(nsOf(i, 'on')), await firstPod(nsOf(i, 'off'))]
        if (on && off) pods.set(i, { on, off })
      })
      return pods.size === entries.length
    },
    90_000,
    1000,
  ).catch(() => undefined)
  t.same(entries.filter((_, i) => !pods.has(i)).map((e) => e.file), [], 'every object yielded a pod on both sides')

  for (const [i, { on, off }] of [...pods].sort((a, b) => a[0] - b[0])) {
    const file = entries[i]!.file
    t.same(missingItems(on), [], `${file}: every item`)
    t.equal(off.metadata?.annotations?.['enlist.io/status'], undefined, `${file}: the disabled twin is not injected`)
    t.same(lostValues(normalise(off), normalise(on)), [], `${file}: nothing lost`)
  }
})
