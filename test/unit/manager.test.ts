// The manager's LeaderLoop, the loop the certificate authority and the decision-key rotator
// run while this replica leads: reconcile at once and then every interval; a failed pass is
// logged and retried, not the end of the loop; losing the lease abandons the pass in flight;
// a second start while running is a no-op; it can be started again after a stop.
import t from 'tap'
import pino from 'pino'
import { LeaderLoop, Manager } from '../../src/manager.js'
import { Readiness } from '../../src/server/readiness.js'
import { silentLogger } from '../../src/log.js'

class Loop extends LeaderLoop {
  readonly name = 'test-loop'
  passes = 0
  /** The passes that fail (by number, from 1). */
  failing = new Set<number>()
  /** The passes that hang until aborted. */
  hanging = new Set<number>()
  abandoned = 0

  constructor(intervalMs: number, log = silentLogger()) {
    super({ intervalMs, log, what: 'test loop' })
  }

  async reconcile(signal?: AbortSignal): Promise<void> {
    const n = ++this.passes
    if (this.failing.has(n)) throw new Error(`pass ${n} failed`)
    if (this.hanging.has(n)) {
      await new Promise<void>((_, reject) =>
        signal?.addEventListener('abort', () => {
          this.abandoned++
          reject(new Error('aborted'))
        }),
      )
    }
  }
}

const until = async (what: string, pred: () => boolean, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

t.test('reconciles at once, then every interval; a failed pass is logged and retried', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
  const loop = new Loop(20, log)
  loop.failing.add(2)
  t.ok(loop.needLeaderElection(), 'leader only')
  loop.start()
  t.equal(loop.passes, 1, 'the first pass starts synchronously with start()')
  await until('four passes', () => loop.passes >= 4)
  await loop.stop()
  const errors = lines.filter((l) => l.msg === 'test loop: reconcile failed; retrying')
  t.equal(errors.length, 1)
  t.equal(errors[0]!.err, 'pass 2 failed')
  const after = loop.passes
  await new Promise((r) => setTimeout(r, 60))
  t.equal(loop.passes, after, 'no pass after stop()')
})

t.test('losing the lease abandons the pass in flight, quietly; a second start is a no-op', async (t) => {
  const lines: unknown[] = []
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) })
  const loop = new Loop(10_000, log)
  loop.hanging.add(1)
  const lease = new AbortController()
  loop.start(lease.signal)
  loop.start(lease.signal)
  t.equal(loop.passes, 1, 'one loop, not two')
  lease.abort()
  await loop.stop()
  t.equal(loop.abandoned, 1, 'the hanging call was aborted')
  t.same(lines, [], 'an abandoned pass is not an error')
  // leadership comes back: the loop starts again
  loop.start()
  t.equal(loop.passes, 2)
  await loop.stop()
})

t.test('the manager runs a LeaderLoop only while it leads', async (t) => {
  const loop = new Loop(10_000)
  let hooks: { onStartedLeading(s?: AbortSignal): Promise<void>; onStoppedLeading(): Promise<void> } | undefined
  const m = new Manager({
    log: silentLogger(),
    readiness: new Readiness(),
    leaderElection: (h) => {
      hooks = h
      return { name: 'election', start: () => undefined, stop: async () => undefined }
    },
  })
  m.add(loop)
  await m.start()
  t.equal(loop.passes, 0, 'not leading: not started')
  await hooks!.onStartedLeading(new AbortController().signal)
  t.equal(loop.passes, 1)
  await hooks!.onStoppedLeading()
  await m.stop()
})
