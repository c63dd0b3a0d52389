#!/usr/bin/env bash
# Builds enlist's image and the test images without a registry or container engine
# (hack/image/), cached per machine in $ENLIST_IMAGE_CACHE (default ~/.cache/enlist/images).
# Prints a JSON object of image refs and OCI layouts as the last line of stdout; progress
# on stderr. `--archive FILE` also writes enlist's image as an OCI archive.
# Needs dist/ (make build), mmdebstrap and busybox-static (hack/packages/node.list), and
# root or user namespaces for mmdebstrap. Builders serialise on a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(hack/node.sh):$PATH" # the image ships the Node.js 24 that runs the build
CACHE=${ENLIST_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/enlist/images}
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  printf '[images] waiting for another build (%s)\n' "$CACHE/.lock" >&2
  flock 9
fi
exec node --import tsx hack/image/build.ts "$@"
