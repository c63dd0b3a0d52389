// Where the real node (or the images) cannot run, a developer's run falls back to the kubelet
// stand-in with the reason; a run that requires the real parts (ENLIST_REQUIRE_REAL_NODE=1, as
// .ci/run sets it) fails with that reason instead of skipping.
import t from 'tap'
import { imageSupport, orRequired, RealPartRequiredError, realNodeSupport, supportLine } from '../harness/node-support.js'

const REQUIRED = { ENLIST_REQUIRE_REAL_NODE: '1' }

t.test('without the requirement: the stand-in, with the reason', async (t) => {
  t.same(realNodeSupport({ ENLIST_REAL_NODE: '0' }), { ok: false, reason: 'ENLIST_REAL_NODE=0' })
  const why = 'no cgroup v1 memory controller at /sys/fs/cgroup/memory (kubelet v1.20 needs cgroup v1)'
  t.same(realNodeSupport({ ENLIST_REAL_NODE: why }), { ok: false, reason: why })
  t.match(supportLine({ ok: false, reason: why }), `real node: unavailable (${why}); the node tests are skipped`)
  t.same(realNodeSupport({ ENLIST_REAL_NODE: '1' }), { ok: true })
})

t.test('with the requirement: no fallback, the reason in the failure', async (t) => {
  t.throws(() => realNodeSupport({ ...REQUIRED, ENLIST_REAL_NODE: '0' }), new RealPartRequiredError('the real node', 'ENLIST_REAL_NODE=0'))
  t.throws(() => realNodeSupport({ ...REQUIRED, ENLIST_REAL_NODE: 'not root' }), { name: 'RealPartRequiredError', message: /^ENLIST_REQUIRE_REAL_NODE=1: the real node is required and cannot run here: not root$/ })
  t.same(realNodeSupport({ ...REQUIRED, ENLIST_REAL_NODE: '1' }), { ok: true }, 'a node that runs passes')
  t.throws(() => orRequired('building the images', { ok: false, reason: 'mmdebstrap is not installed' }, REQUIRED), { message: /building the images is required and cannot run here: mmdebstrap is not installed/ })
  t.same(orRequired('x', { ok: false, reason: 'r' }, {}), { ok: false, reason: 'r' }, 'only under the flag')
  t.same(imageSupport({ ...REQUIRED, ENLIST_IMAGES: '{}' }), { ok: true }, 'images built before the run')
})
