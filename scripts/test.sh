#!/usr/bin/env bash
# Runs every test (unit, server, CLI, end-to-end on a real control plane and a real node)
# and ends with "tests: N passed, M failed". Arguments, if any, are test files or tap flags.
set -uo pipefail
cd "$(dirname "$0")/.."
PATH="$(hack/node.sh):$PATH"

fail() {
  echo "$1; see the messages above" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
}

# The CLI, server and end-to-end tests run dist/: build it from today's sources first, so no
# test passes or fails against a stale build. make test/unit/e2e have just built it (their
# build prerequisite) and say so with ENLIST_BUILT=1.
if [ -z "${ENLIST_BUILT:-}" ]; then
  npm run --silent build || fail "could not build dist/ (npm run build)"
  chmod +x dist/cli/main.js
fi

# The Debian packages the end-to-end tests run (brokers, registries, the node's runtime), the
# control plane (KUBEBUILDER_ASSETS if set, else built once per machine), and for the real
# node its images (built once, cached). Where this machine cannot run a node, the suite says
# why and the node tests are skipped; the rest runs on the kubelet stand-in. Under
# ENLIST_REQUIRE_REAL_NODE=1 (.ci/run) that is a failure instead.
require_node() {
  # CI (.ci/run): a run without the real node is not a pass
  [ "${ENLIST_REQUIRE_REAL_NODE:-}" = 1 ] && fail "real node: required (ENLIST_REQUIRE_REAL_NODE=1) but unavailable: $1"
}
if [ -z "${ENLIST_NO_CONTROL_PLANE:-}" ]; then
  # a choice made before the run (ENLIST_REAL_NODE=0, or a reason) fails at once
  if [ -n "${ENLIST_REAL_NODE:-}" ] && [ "$ENLIST_REAL_NODE" != 1 ]; then require_node "$ENLIST_REAL_NODE"; fi
  hack/test-packages.sh || fail "could not install the packages the tests need"
  ENLIST_ASSETS=$(hack/control-plane-assets.sh) || fail "could not get a control plane"
  export ENLIST_ASSETS
  if [ -z "${ENLIST_REAL_NODE:-}" ]; then
    ENLIST_REAL_NODE=$(node --import tsx test/harness/node-support.ts | tail -n1)
  fi
  export ENLIST_REAL_NODE
  if [ "$ENLIST_REAL_NODE" = 1 ]; then
    node_line="real node: containerd, runc and kubelet v1.20.2 run here"
    echo "$node_line" >&2
    ENLIST_IMAGES=$(hack/images.sh | tail -n1) || fail "could not build the images for the real node (ENLIST_REAL_NODE=0 runs without it)"
    export ENLIST_IMAGES
  else
    require_node "$ENLIST_REAL_NODE"
    node_line="real node: unavailable ($ENLIST_REAL_NODE); the node tests are skipped and the rest runs on the kubelet stand-in"
    echo "$node_line" >&2
  fi
fi

rm -rf .tap/test-results
# With no arguments tap runs what .taprc includes: every test/**/*.test.ts.
npx --no-install tap "$@"
status=$?
[ -n "${node_line:-}" ] && echo "$node_line"
node scripts/tap-summary.mjs .tap/test-results "$status"
exit $status
