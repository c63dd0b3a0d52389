// The Makefile is the front door (README, docs and CI go through it): every target it
// lists has help, and every file a recipe runs exists, so a renamed script cannot leave
// a target that only fails when someone types it.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

const REPO = new URL('../../', import.meta.url).pathname
const makefile = readFileSync(join(REPO, 'Makefile'), 'utf8')

t.test('every phony target is listed by make help', async (t) => {
  const phony = /^\.PHONY:(.*)$/m.exec(makefile)?.[1]?.trim().split(/\s+/) ?? []
  t.ok(phony.length > 10, 'the Makefile declares its targets')
  const help = execFileSync('make', ['--no-print-directory', 'help'], { cwd: REPO, encoding: 'utf8' })
  for (const target of phony) t.match(help, new RegExp(`make ${target} `), `make help lists ${target}`)
})

t.test('every file a recipe runs is in the repository', async (t) => {
  const recipes = makefile.split('\n').filter((l) => l.startsWith('\t') && !l.includes('rm -rf')) // clean's paths are outputs
  const paths = recipes.flatMap((l) => l.match(/(?<![\w./-])(?:scripts|hack|bench|manifests)\/[\w./-]+/g) ?? [])
  t.ok(paths.length >= 5, `recipes name files: ${paths.join(', ')}`)
  for (const p of new Set(paths)) t.ok(existsSync(join(REPO, p)), `${p} exists`)
})

t.test('make bench and make demo would run what exists', async (t) => {
  // -n: print the recipe without running it (and without building)
  const dry = (target: string) => execFileSync('make', ['--no-print-directory', '-n', target], { cwd: REPO, encoding: 'utf8' })
  t.match(dry('bench'), /tsx bench\/run\.ts/)
  t.match(dry('demo'), /scripts\/demo\.sh/)
})

t.test('the tests run against a dist/ built from the current sources', async (t) => {
  // scripts/test.sh builds before any test (make's test targets have just built and say so):
  // a source newer than its output would mean the CLI and end-to-end tests ran stale code
  const sources = readdirSync(join(REPO, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  t.ok(sources.length > 20, `${sources.length} sources`)
  const stale = sources.filter((f) => {
    const out = join(REPO, 'dist', f.replace(/\.ts$/, '.js'))
    return !existsSync(out) || statSync(out).mtimeMs < statSync(join(REPO, 'src', f)).mtimeMs
  })
  t.same(stale, [], 'every source has an output at least as new')
  const dry = execFileSync('make', ['--no-print-directory', '-n', 'test'], { cwd: REPO, encoding: 'utf8' })
  t.match(dry, /^ENLIST_BUILT=1 scripts\/test\.sh$/m, 'make test tells scripts/test.sh it has built, so it builds once')
})
