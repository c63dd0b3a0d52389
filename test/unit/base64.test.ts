import t from 'tap'
import { utf8ToBase64 } from '../../src/lib/base64.js'

const reference = (s: string) => Buffer.from(s, 'utf8').toString('base64')

t.test('equals Buffer.from(s).toString("base64") for every kind of text', async (t) => {
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['one byte', 'a'],
    ['two bytes (padding)', 'ab'],
    ['three bytes (no padding)', 'abc'],
    ['a JSON patch', '[{"op":"add","path":"/metadata/labels/enlist.io~1managed","value":"true"}]'],
    ['two-byte UTF-8', 'héllo wörld'],
    ['three-byte UTF-8', '✓ 注册 ✓'],
    ['four-byte UTF-8 (surrogate pair)', '😀 and 𝄞'],
    ['a lone high surrogate becomes U+FFFD', 'a\ud800b'],
    ['a lone low surrogate becomes U+FFFD', 'a\udc00b'],
    ['control characters', '\u0000\u0001\n\t'],
  ]
  for (const [name, s] of cases) t.equal(utf8ToBase64(s), reference(s), name)
})

t.test('at and around the shared buffer size, and far beyond it', async (t) => {
  for (const n of [21_844, 21_845, 21_846, 65_536, 200_000]) {
    const ascii = 'x'.repeat(n)
    t.equal(utf8ToBase64(ascii), reference(ascii), `${n} ASCII characters`)
    const wide = '✓'.repeat(Math.floor(n / 3))
    t.equal(utf8ToBase64(wide), reference(wide), `${Math.floor(n / 3)} three-byte characters`)
  }
})

t.test('a result does not change when the buffer is reused', async (t) => {
  const first = utf8ToBase64('first patch')
  utf8ToBase64('a second, longer patch that overwrites the shared buffer')
  t.equal(first, reference('first patch'))
  t.equal(Buffer.from(first, 'base64').toString('utf8'), 'first patch', 'and it decodes back')
})
