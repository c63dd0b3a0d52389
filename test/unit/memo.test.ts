// The memo of answers (src/admission/memo.ts): what a key covers, what empties it, its bound.
import t from 'tap'
import { AdmissionMemo, type MemoFacts, type Remembered } from '../../src/admission/memo.js'

const facts = (over: Partial<MemoFacts> = {}): MemoFacts => ({ policy: POLICY, ring: RING, signing: SIGNING, caBundle: 'ca', serverVersion: { major: 1, minor: 20 }, ...over })
const POLICY = {}
const RING = {}
const SIGNING = {}
const entry = (text = 'x'): Remembered => ({ head: `{"uid":`, tail: `,"p":"${text}"}`, verdict: 'injected', reason: 'namespace-opt-in', namespace: 'shop', workload: undefined, pod: undefined, message: undefined, dryRun: false })

t.test('a key covers all of the review but its uid, and the namespace labels', async (t) => {
  const review = (uid: string, rest = 'CREATE') => `{"request":{"uid":"${uid}","operation":"${rest}"}}`
  const at = review('u').indexOf('"u"') + 1
  const k = (text: string, uid: string, labels = {}) => AdmissionMemo.key(text, at, uid.length, labels)
  t.equal(k(review('aaaa'), 'aaaa'), k(review('bbbb'), 'bbbb'), 'another uid of the same length')
  t.equal(k(review('aaaa'), 'aaaa'), k(review('a-much-longer-uid'), 'a-much-longer-uid'), 'or of another length')
  t.not(k(review('aaaa'), 'aaaa'), k(review('aaaa', 'UPDATE'), 'aaaa'), 'anything else differs: another key')
  t.not(k(review('aaaa'), 'aaaa'), k(review('aaaa'), 'aaaa', { 'enlist.io/inject': 'enabled' }), 'other namespace labels: another key')
})

t.test('an answer is given back only under the facts it was made with', async (t) => {
  const m = new AdmissionMemo(1 << 20)
  m.set('k', facts(), entry())
  t.same(m.get('k', facts()), entry())
  t.same(m.get('k', facts({ serverVersion: { major: 1, minor: 20 } })), entry(), 'the server version compared by value')
  for (const [what, f] of [
    ['another policy', facts({ policy: {} })],
    ['another key ring', facts({ ring: {} })],
    ['another signing key', facts({ signing: {} })],
    ['another CA bundle', facts({ caBundle: 'ca2' })],
    ['another server version', facts({ serverVersion: { major: 1, minor: 30 } })],
    ['no server version', facts({ serverVersion: undefined })],
  ] as const) {
    t.equal(m.get('k', f), undefined, what)
  }
  m.set('k2', facts({ policy: {} }), entry())
  t.equal(m.size, 1, 'remembering under new facts forgets the old ones')
  t.equal(m.get('k', facts()), undefined)
})

t.test('bounded by bytes, the least recently used out first', async (t) => {
  const one = 2 * (entry().head.length + entry().tail.length) + 256
  const m = new AdmissionMemo(3 * one)
  for (const k of ['a', 'b', 'c']) m.set(k, facts(), entry())
  t.equal(m.bytes, 3 * one)
  m.get('a', facts()) // used: b is now the oldest
  m.set('d', facts(), entry())
  t.same([...['a', 'b', 'c', 'd']].map((k) => m.get(k, facts()) !== undefined), [true, false, true, true])
  t.ok(m.bytes <= m.maxBytes)
  m.set('a', facts(), entry('y'))
  t.equal(m.size, 3, 'remembered again: replaced, not added')
  t.equal(m.get('a', facts())?.tail, ',"p":"y"}')
  m.set('huge', facts(), entry('z'.repeat(4 * one)))
  t.equal(m.get('huge', facts()), undefined, 'an answer larger than the bound is not kept')
  t.equal(m.size, 3, 'and pushes nothing out')
})
