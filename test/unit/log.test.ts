import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createLogger, isoTime } from '../../src/log.js'
import { tempDir } from '../helpers/temp.js'

t.test('isoTime is pino\'s ISO time field, formatted once per millisecond', async (t) => {
  const a = isoTime()
  t.match(a, /^,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$/)
  const at = Date.parse(JSON.parse(`{${a.slice(1)}}`).time as string)
  t.ok(Math.abs(at - Date.now()) < 1000, 'it is the current time')
  await new Promise((r) => setTimeout(r, 5))
  const b = isoTime()
  t.not(b, a, 'a later millisecond gets a new time')
  t.ok(Date.parse(JSON.parse(`{${b.slice(1)}}`).time as string) > at, 'and it is later')
})

t.test('a log line is JSON with ISO time, the level as a word, pid and fields', async (t) => {
  const file = join(tempDir('enlist-log-'), 'log.ndjson')
  const log = createLogger('info', file)
  log.info({ uid: 'u1', decision: 'skipped' }, 'admission')
  log.debug('not at info')
  await new Promise<void>((resolve) => log.flush(() => resolve()))
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(lines.length, 1, 'debug is below the level')
  t.match(lines[0], { level: 'info', pid: process.pid, uid: 'u1', decision: 'skipped', msg: 'admission' })
  t.ok(Number.isFinite(Date.parse(lines[0]!.time as string)), 'time parses')
})
