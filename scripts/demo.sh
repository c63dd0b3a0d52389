#!/usr/bin/env bash
# enlist's main job on a fresh machine: see hack/demo.ts. DEMO_HOLD=0 exits at the end
# instead of keeping the cluster up (the default when not on a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(hack/node.sh):$PATH"
# The real node's packages (containerd, runc, CNI plugins, ...); without them (no root, no
# sudo) the demo says so and runs on the kubelet stand-in.
hack/test-packages.sh node || echo "[demo] could not install the real node's packages (hack/packages/node.list)" >&2
# node itself, not npx: Ctrl-C reaches the demo directly, which cleans up before it exits
exec node --import tsx hack/demo.ts "$@"
