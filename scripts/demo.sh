#!/usr/bin/env bash
# enlist's main job on a fresh machine: see hack/demo.ts. DEMO_HOLD=0 exits at the end
# instead of keeping the cluster up (the default when not on a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
exec npx --no-install tsx hack/demo.ts "$@"
