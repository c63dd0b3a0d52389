// The backoff every retry loop uses.
import t from 'tap'
import { Backoff } from '../../src/lib/backoff.js'

t.test('backoff: exponential, capped, jittered within bounds', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false })
  t.same([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000])
  b.reset()
  t.equal(b.next(), 100)
  const j = new Backoff({ initialMs: 100, maxMs: 1000 })
  const steps = [100, 200, 400, 800, 1000, 1000]
  const drawn: number[] = []
  for (let i = 0; i < 200; i++) {
    const d = j.next()
    const step = steps[Math.min(i, steps.length - 1)]!
    // full jitter within each step: [step/10, step], not merely within the overall bounds
    t.ok(d >= step / 10 && d <= step, `${d} within [${step / 10}, ${step}]`)
    drawn.push(d)
  }
  t.ok(new Set(drawn.slice(5)).size > 100, 'jittered: the capped delays differ from one another')
})

t.test('backoff: the jitter is a random share of the step, never below a tenth', async (t) => {
  const random = Math.random
  t.teardown(() => (Math.random = random))
  const draws = [0.5, 0.25, 0, 1, 0.05]
  Math.random = () => draws.shift()!
  const b = new Backoff({ initialMs: 100, maxMs: 1000 })
  t.same([b.next(), b.next(), b.next(), b.next(), b.next()], [50, 50, 40, 800, 100], 'step × random, floored at step/10')
})
