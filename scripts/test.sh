#!/usr/bin/env bash
# Runs every test (unit, server, CLI, end-to-end on a real control plane) and ends with
# "tests: N passed, M failed". Arguments, if any, are test files or tap flags.
set -uo pipefail
cd "$(dirname "$0")/.."

# The Debian packages the end-to-end tests run (brokers, registries, the node's runtime), and
# the control plane: KUBEBUILDER_ASSETS if set, else built once per machine.
if [ -z "${ENLIST_NO_CONTROL_PLANE:-}" ]; then
  if ! hack/test-packages.sh; then
    echo "could not install the packages the tests need; see the messages above" >&2
    echo "tests: 0 passed, 1 failed"
    exit 1
  fi
  if ! ENLIST_ASSETS=$(hack/control-plane-assets.sh); then
    echo "could not get a control plane; see the messages above" >&2
    echo "tests: 0 passed, 1 failed"
    exit 1
  fi
  export ENLIST_ASSETS
fi

rm -rf .tap/test-results
# With no arguments tap runs what .taprc includes: every test/**/*.test.ts.
npx --no-install tap "$@"
status=$?
node scripts/tap-summary.mjs .tap/test-results "$status"
exit $status
