// CI (.ci/run) goes green only having run pods on a real kubelet: it requires the real node,
// and scripts/test.sh fails the run, naming the reason, where the node cannot run.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanEnv } from '../helpers/cli.js'

const REPO = new URL('../../', import.meta.url).pathname

t.test('.ci/run requires the real node', async (t) => {
  const run = readFileSync(join(REPO, '.ci/run'), 'utf8')
  t.match(run, /^export ENLIST_REQUIRE_REAL_NODE=1$/m)
  t.match(run, /^exec make test$/m)
})

t.test('scripts/test.sh fails, with the reason, where the required node cannot run', async (t) => {
  const why = 'no cgroup v1 memory controller at /sys/fs/cgroup/memory (kubelet v1.20 needs cgroup v1)'
  const env: NodeJS.ProcessEnv = { ...cleanEnv(), ENLIST_BUILT: '1', ENLIST_REQUIRE_REAL_NODE: '1', ENLIST_REAL_NODE: why }
  delete env.ENLIST_NO_CONTROL_PLANE
  const r = spawnSync(join(REPO, 'scripts/test.sh'), ['test/unit/base64.test.ts'], { cwd: REPO, env, encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 1, 'the run fails')
  t.match(r.stderr, `real node: required (ENLIST_REQUIRE_REAL_NODE=1) but unavailable: ${why}`)
  t.equal(r.stdout.trim().split('\n').at(-1), 'tests: 0 passed, 1 failed', 'and its summary says so')
  t.notMatch(r.stdout, /# Subtest/, 'before any test ran')
})
