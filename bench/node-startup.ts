// make bench-node: what enlist adds to a pod's start-up, on the real node. The same pod
// (the test app, no readiness probe, so Ready means: containers running and, with enlist,
// the readiness gate open) is created in turn in a namespace that opts in, in one that does
// not, and in one that does not with an init container that does nothing (what any init
// container costs), one pod at a time, each timed from the create call to Ready as a watch
// sees it. With enlist that includes the webhook call, the registrar (a container of its
// own: Node.js, TokenReview, the registry write) and the condition. Prints a table, writes
// bench/results/node-startup-*.json.
//   npx tsx bench/node-startup.ts [--pods=15] [--registrar-cpu=10m]
// --registrar-cpu sets the policy's registrar CPU request (default: the policy's, 10m).

import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import type { V1Pod } from '@kubernetes/client-node'
import { REGISTERED_CONDITION, REGISTRAR_CONTAINER } from '../src/names.js'
import { startNodeCluster } from '../test/harness/cluster.js'
import { installEnlistOnNode } from '../test/harness/enlist-pod.js'
import { realNodeSupport, supportLine } from '../test/harness/node-support.js'
import { waitFor } from '../test/harness/processes.js'
import { observe } from '../test/harness/watch.js'

const BENCH = new URL('./', import.meta.url).pathname
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const PODS = Number(arg('pods') ?? 15)
const REGISTRAR_CPU = arg('registrar-cpu')
const log = (s: string) => process.stderr.write(`${s}\n`)

type Kind = 'with' | 'without' | 'empty-init'

interface Sample {
  kind: Kind
  /** create call to Ready */
  readyMs: number
  /** the create call alone (admission, with the webhook where enlist injects) */
  createMs: number
  /** with enlist: the registrar container, start to exit (containerd's clock) */
  registrarMs?: number
  /** with enlist: create call to enlist.io/registered=True */
  registeredMs?: number
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
}
const stats = (xs: number[]) => ({ n: xs.length, min: Math.min(...xs), p50: quantile(xs, 0.5), p90: quantile(xs, 0.9), max: Math.max(...xs) })
const fmt = (xs: number[]) => {
  const s = stats(xs)
  return `${s.p50} | ${s.p90} | ${s.min} | ${s.max}`
}

async function main(): Promise<void> {
  const support = realNodeSupport()
  if (!support.ok) throw new Error(supportLine(support))
  const started = Date.now()
  const c = await startNodeCluster({ log })
  try {
    await installEnlistOnNode(c, {
      policy: (p) => {
        const r = p.registrar as { resources: { requests: Record<string, string> } }
        if (REGISTRAR_CPU) r.resources.requests.cpu = REGISTRAR_CPU
      },
    })
    const policyCpu = REGISTRAR_CPU ?? '10m (the default policy)'
    await c.cp.namespace('with', { 'enlist.io/inject': 'enabled' })
    await c.cp.namespace('without')
    await c.cp.namespace('empty-init')
    const samples: Sample[] = []
    const pod = (name: string, kind: Kind): V1Pod => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels: { app: 'startup' } },
      spec: {
        terminationGracePeriodSeconds: 0,
        ...(kind === 'empty-init' ? { initContainers: [{ name: 'init', image: c.images.app.ref, imagePullPolicy: 'Never', command: ['true'] }] } : {}),
        containers: [{ name: 'app', image: c.images.app.ref, imagePullPolicy: 'Never' }],
      },
    })
    // one warm-up each: the first container from an image pays for its first use
    for (let i = -1; i < PODS; i++) {
      for (const ns of ['with', 'without', 'empty-init'] as const) {
        const name = `p${i + 1}`
        const seen = await observe<V1Pod>(c.cp.client, `/api/v1/namespaces/${ns}/pods`, { fieldSelector: `metadata.name=${name}` })
        const t0 = Date.now()
        await c.cp.client.create(`/api/v1/namespaces/${ns}/pods`, pod(name, ns))
        const t1 = Date.now()
        const ready = await waitFor(`${ns}/${name} Ready`, async () => seen.seen.find((o) => o.object.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')), 120_000, 20)
        seen.stop()
        if (i < 0) continue
        const s: Sample = { kind: ns, readyMs: ready.at - t0, createMs: t1 - t0 }
        if (ns === 'with') {
          const id = ready.object.status?.initContainerStatuses?.find((x) => x.name === REGISTRAR_CONTAINER)?.containerID?.replace('containerd://', '')
          const start = c.node.events().find((e) => e.topic === '/tasks/start' && e.containerId === id)
          const exit = c.node.events().find((e) => e.topic === '/tasks/exit' && e.containerId === id && !e.execId)
          if (start && exit) s.registrarMs = exit.at.getTime() - start.at.getTime()
          const reg = seen.seen.find((o) => o.object.status?.conditions?.some((x) => x.type === REGISTERED_CONDITION && x.status === 'True'))
          if (reg) s.registeredMs = reg.at - t0
        }
        samples.push(s)
        log(`${ns.padEnd(10)} ${name}: Ready ${s.readyMs} ms${s.registrarMs ? ` (registrar ${s.registrarMs} ms)` : ''}`)
        await c.cp.client.delete(`/api/v1/namespaces/${ns}/pods/${name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 })
      }
    }
    const w = samples.filter((s) => s.kind === 'with')
    const wo = samples.filter((s) => s.kind === 'without')
    const init = samples.filter((s) => s.kind === 'empty-init')
    const median = (xs: number[]) => quantile(xs, 0.5)
    const lines = [
      `Pod start-up on the real node (kubelet ${c.node.kubeletVersion}, ${c.node.runtimeVersion}), ${PODS} pods of each kind, one at a time, in turn; registrar CPU request ${policyCpu}:`,
      '',
      '| | p50 ms | p90 ms | min ms | max ms |',
      '| --- | ---: | ---: | ---: | ---: |',
      `| without enlist: create to Ready | ${fmt(wo.map((s) => s.readyMs))} |`,
      `| without enlist, with an init container that does nothing: create to Ready | ${fmt(init.map((s) => s.readyMs))} |`,
      `| with enlist: create to Ready | ${fmt(w.map((s) => s.readyMs))} |`,
      `| with enlist: create to registered | ${fmt(w.flatMap((s) => s.registeredMs ?? []))} |`,
      `| with enlist: the registrar container, start to exit | ${fmt(w.flatMap((s) => s.registrarMs ?? []))} |`,
      `| without enlist: the create call | ${fmt(wo.map((s) => s.createMs))} |`,
      `| with enlist: the create call (webhook included) | ${fmt(w.map((s) => s.createMs))} |`,
      '',
      `enlist adds ${median(w.map((s) => s.readyMs)) - median(wo.map((s) => s.readyMs))} ms to the median start-up (${median(w.map((s) => s.readyMs))} against ${median(wo.map((s) => s.readyMs))} ms);`,
      `an init container that does nothing adds ${median(init.map((s) => s.readyMs)) - median(wo.map((s) => s.readyMs))} ms of it, the registrar's own work the other ${median(w.map((s) => s.readyMs)) - median(init.map((s) => s.readyMs))} ms.`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
    mkdirSync(join(BENCH, 'results'), { recursive: true })
    const file = join(BENCH, 'results', `node-startup-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
    writeFileSync(
      file,
      JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30) }, load: loadavg(), node: process.version, kubelet: c.node.kubeletVersion, runtime: c.node.runtimeVersion, registrarCpu: policyCpu, pods: PODS, samples }, null, 2),
    )
    log(`wrote ${file}; run time ${((Date.now() - started) / 1000).toFixed(0)} s`)
  } finally {
    await c.stop()
  }
}

main().catch((err: unknown) => {
  log(`bench-node failed: ${(err as Error).message}`)
  process.exit(1)
})
