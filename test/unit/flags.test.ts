// Flag parsing: flags, env fallbacks, conversions and the errors users see.
import t from 'tap'
import { parseFlags, type FlagSpecs } from '../../src/cli/flags.js'
import { parseBytes, parseDuration } from '../../src/lib/units.js'
import { OptionError } from '../../src/lib/errors.js'

const specs = {
  port: { kind: 'int', env: 'X_PORT', default: '8443', min: 1, max: 65535, help: 'port' },
  name: { kind: 'string', short: 'n', help: 'name' },
  wait: { kind: 'duration', default: '1s', help: 'wait' },
  limit: { kind: 'bytes', default: '8Mi', help: 'limit' },
  on: { kind: 'bool', help: 'switch' },
  tags: { kind: 'list', help: 'tags' },
} satisfies FlagSpecs

t.test('defaults, flags, = forms, short flags and positionals', async (t) => {
  const d = parseFlags(specs, [], {})
  t.same(d, { _: [], port: 8443, name: undefined, wait: 1000, limit: 8 * 1024 * 1024, on: undefined, tags: undefined })
  const f = parseFlags(specs, ['--port=9000', '-n', 'x', '--on', 'pos', '--tags', 'a, b', '--', '--not-a-flag'], {})
  t.same(f, { _: ['pos', '--not-a-flag'], port: 9000, name: 'x', wait: 1000, limit: 8388608, on: true, tags: ['a', 'b'] })
  t.equal(parseFlags(specs, ['--on=false'], {}).on, false)
})

t.test('a boolean flag takes a following true or false, as users write it', async (t) => {
  t.equal(parseFlags(specs, ['--on', 'false'], {}).on, false, '--on false is false, not --on and an argument')
  t.equal(parseFlags(specs, ['--on', 'true'], {}).on, true)
  t.same(parseFlags(specs, ['--on', 'file.yaml'], {}), { ...parseFlags(specs, [], {}), on: true, _: ['file.yaml'] }, 'anything else stays an argument')
  t.same(parseFlags(specs, ['--on', '--', 'false'], {})._, ['false'])
})

t.test('env fills in, flags win', async (t) => {
  t.equal(parseFlags(specs, [], { X_PORT: '7000' }).port, 7000)
  t.equal(parseFlags(specs, ['--port', '7001'], { X_PORT: '7000' }).port, 7001)
  t.equal(parseFlags(specs, [], { X_PORT: '' }).port, 8443, 'an empty env var is unset')
})

t.test('errors name the flag or variable and the accepted form', async (t) => {
  t.throws(() => parseFlags(specs, ['--port', 'x'], {}), new OptionError('--port: "x" is invalid; accepted: an integer'))
  t.throws(() => parseFlags(specs, ['--port', '0'], {}), new OptionError('--port: "0" is invalid; accepted: an integer from 1 to 65535'))
  t.throws(() => parseFlags(specs, [], { X_PORT: '1.5' }), new OptionError('X_PORT (environment): "1.5" is invalid; accepted: an integer'))
  t.throws(() => parseFlags(specs, ['--nope'], {}), new OptionError('unknown flag --nope; see --help'))
  t.throws(() => parseFlags(specs, ['-z'], {}), new OptionError('unknown flag -z; see --help'))
  t.throws(() => parseFlags(specs, ['--name'], {}), new OptionError('flag --name needs a value: name'))
  t.throws(() => parseFlags(specs, ['--on=maybe'], {}), new OptionError('--on: "maybe" is invalid; accepted: true or false'))
  t.throws(() => parseFlags(specs, ['--limit', '1TB'], {}), /accepted: a size in bytes/)
  t.throws(() => parseFlags(specs, ['--wait', '1d'], {}), /accepted: a duration such as 500ms, 30s, 2m, 1h/)
})

t.test('durations and sizes', async (t) => {
  const d: Array<[string, number | undefined]> = [
    ['500ms', 500],
    ['30s', 30_000],
    ['2m', 120_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['10', 10_000],
    ['0s', 0],
    ['1d', undefined],
    ['', undefined],
    ['s', undefined],
    ['-1s', undefined],
  ]
  for (const [s, ms] of d) t.equal(parseDuration(s), ms, s)
  const b: Array<[string, number | undefined]> = [
    ['1024', 1024],
    ['8Mi', 8 * 1024 * 1024],
    ['64Ki', 65536],
    ['1G', 1e9],
    ['2k', 2000],
    ['1.5Mi', undefined],
    ['x', undefined],
  ]
  for (const [s, n] of b) t.equal(parseBytes(s), n, s)
})
