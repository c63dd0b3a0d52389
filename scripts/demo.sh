#!/usr/bin/env bash
# enlist's main job on a fresh machine: see hack/demo.ts. DEMO_HOLD=0 exits at the end
# instead of keeping the cluster up (the default when not on a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(hack/node.sh):$PATH"
# node itself, not npx: Ctrl-C reaches the demo directly, which cleans up before it exits
exec node --import tsx hack/demo.ts "$@"
