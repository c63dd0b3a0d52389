// The policy store only ever swaps in valid policies; the file source follows edits live.
import t from 'tap'
import { writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { silentLogger } from '../../src/log.js'
import { createMetrics } from '../../src/metrics.js'
import { FilePolicySource, PolicyStore } from '../../src/policy/source.js'
import { tempDir } from '../helpers/temp.js'

const HEADER = 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'

async function metric(m: ReturnType<typeof createMetrics>, name: string): Promise<string> {
  return (await m.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#')).join('\n')
}

t.test('a bad update keeps the last good policy and is counted', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const store = new PolicyStore(silentLogger(), metrics)
  const seen: string[] = []
  store.onChange((p) => seen.push(p.hash))
  t.equal(store.current, undefined)

  t.ok(store.apply(HEADER + 'preStop: {drainSeconds: 7}\n', 'cm'))
  const good = store.current!
  t.equal(store.generation, 1)
  t.equal(good.spec.preStop.drainSeconds, 7)

  t.notOk(store.apply(HEADER + 'preStop: {drainSeconds: -1}\n', 'cm'))
  t.equal(store.current, good, 'the last good policy is still the one in effect')
  t.equal(store.generation, 1)
  t.notOk(store.apply('{{{', 'cm'))
  t.equal(store.current, good)
  t.match(await metric(metrics, 'enlist_policy_rejected_total'), /enlist_policy_rejected_total 2/)

  t.ok(store.apply(HEADER + 'preStop: {drainSeconds: 9}\n', 'cm'))
  t.equal(store.generation, 2)
  t.equal(store.current!.spec.preStop.drainSeconds, 9)
  t.equal(seen.length, 2)
  t.match(await metric(metrics, 'enlist_policy_generation'), /enlist_policy_generation 2/)
  t.match(await metric(metrics, 'enlist_policy_info'), new RegExp(`hash="${store.current!.hash}",source="cm"\\} 1`))
  t.notMatch(await metric(metrics, 'enlist_policy_info'), new RegExp(good.hash), 'the old hash is gone from the info metric')

  t.ok(store.apply(HEADER + 'preStop: {drainSeconds: 9}\n', 'cm'), 'the same text again is a no-op')
  t.ok(store.apply('kind: Policy\napiVersion: enlist.io/v1alpha1\npreStop: {drainSeconds: 9}\n', 'cm'), 'same content, other order')
  t.equal(store.generation, 2, 'an equal policy does not bump the generation')
})

t.test('a running cluster keeps its name: a policy that renames it is refused, the last good one stays', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const store = new PolicyStore(silentLogger(), metrics)
  t.ok(store.apply(HEADER + 'registry: {backends: [{name: k, type: kubernetes}]}\n', 'cm'))
  t.ok(store.apply(HEADER + 'cluster: {name: prod-eu-1}\n', 'cm'), 'a cluster with no name may be given one')
  const named = store.current!
  t.notOk(store.apply(HEADER + 'cluster: {name: prod-eu-2}\n', 'cm'), 'a new name is refused')
  t.equal(store.current, named, 'the last good policy stays')
  t.equal(store.current!.spec.cluster.name, 'prod-eu-1')
  t.notOk(store.apply(HEADER, 'cm'), 'so is dropping the name')
  t.match(await metric(metrics, 'enlist_policy_rejected_total'), /enlist_policy_rejected_total 2/)
  t.ok(store.apply(HEADER + 'cluster: {name: prod-eu-1}\npreStop: {drainSeconds: 9}\n', 'cm'), 'other edits go through')
})

t.test('a renamed cluster\'s error names the field, both names and the procedure', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const { pino } = await import('pino')
  const log = pino({ level: 'error' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
  const store = new PolicyStore(log, createMetrics({ defaultMetrics: false }))
  t.ok(store.apply(HEADER + 'cluster: {name: prod-eu-1}\n', 'cm'))
  t.notOk(store.apply(HEADER + 'cluster: {name: dr-eu-1}\n', 'cm'))
  const errors = lines.at(-1)?.errors as Array<{ path: string; message: string }>
  t.equal(errors[0]?.path, '/cluster/name')
  t.match(errors[0]?.message, /^cannot change from "prod-eu-1" to "dr-eu-1" while enlist runs: .* docs\/registration.md "Renaming a cluster"/)
})

t.test('with no policy yet, the error says why', async (t) => {
  const store = new PolicyStore(silentLogger(), createMetrics({ defaultMetrics: false }))
  store.apply('kind: Policy\n', 'cm')
  t.match(store.lastError, /\/apiVersion: is required/)
  store.applyDefault('ConfigMap missing')
  t.equal(store.source, 'built-in default')
  t.equal(store.lastError, undefined)
})

t.test('the file source follows edits within 2 s, and ignores bad ones', async (t) => {
  const dir = tempDir('enlist-policy-')
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, HEADER)
  const metrics = createMetrics({ defaultMetrics: false })
  const store = new PolicyStore(silentLogger(), metrics)
  const source = new FilePolicySource(file, store, silentLogger(), 200)
  await source.load()
  source.start()
  t.teardown(() => source.stop())
  t.equal(store.current?.spec.injection.default, 'disabled')

  const waitFor = async (pred: () => boolean) => {
    const start = Date.now()
    while (!pred()) {
      if (Date.now() - start > 2000) return -1
      await new Promise((r) => setTimeout(r, 20))
    }
    return Date.now() - start
  }
  writeFileSync(file, HEADER + 'injection: {default: enabled}\n')
  t.ok((await waitFor(() => store.current?.spec.injection.default === 'enabled')) >= 0, 'edit applied within 2 s')

  // a bad edit: first the sign it was read and refused (enlist_policy_rejected_total), then
  // that nothing changed, rather than a fixed wait that proves nothing was read
  const rejected = async () => (await metrics.policyRejected.get()).values[0]?.value ?? 0
  const before = await rejected()
  writeFileSync(file, HEADER + 'injection: {default: maybe}\n')
  let after = before
  const start = Date.now()
  while (after === before && Date.now() - start < 10_000) {
    await new Promise((r) => setTimeout(r, 20))
    after = await rejected()
  }
  t.equal(after, before + 1, 'the bad edit was read and rejected')
  t.equal(store.generation, 2, 'no new generation')
  t.equal(store.current?.spec.injection.default, 'enabled', 'bad edit ignored')

  // an atomic replace (how ConfigMap volumes and editors write)
  writeFileSync(join(dir, 'next'), HEADER + 'injection: {default: disabled}\n')
  renameSync(join(dir, 'next'), file)
  t.ok((await waitFor(() => store.current?.spec.injection.default === 'disabled')) >= 0, 'replaced file applied')
})

t.test('a missing file is reported, not fatal', async (t) => {
  const store = new PolicyStore(silentLogger(), createMetrics({ defaultMetrics: false }))
  const source = new FilePolicySource('/nonexistent/policy.yaml', store, silentLogger())
  await source.load()
  t.ok(source.synced)
  t.equal(store.current, undefined)
  t.match(store.lastError, /cannot read policy file \/nonexistent\/policy.yaml/)
})
