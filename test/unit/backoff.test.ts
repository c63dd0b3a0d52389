// The backoff every retry loop uses.
import t from 'tap'
import { Backoff } from '../../src/lib/backoff.js'

t.test('backoff: exponential, capped, jittered within bounds', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false })
  t.same([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000])
  b.reset()
  t.equal(b.next(), 100)
  const j = new Backoff({ initialMs: 100, maxMs: 1000 })
  for (let i = 0; i < 200; i++) {
    const d = j.next()
    t.ok(d >= 10 && d <= 1000, `${d} within bounds`)
  }
})
