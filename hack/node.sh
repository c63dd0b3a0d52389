#!/usr/bin/env bash
# Prints the directory of a Node.js 24 LTS `node` binary, installing one first when the
# machine's own node is older: the npm registry's node-linux-<arch> package ships the
# official binary, cached per machine in $ENLIST_NODE_CACHE (default ~/.cache/enlist/node).
# The Makefile puts the directory first on PATH, so npm, tsc, tap and enlist all run on it.
#
#   hack/node.sh            the bin directory (stdout); progress on stderr
#   ENLIST_NODE=/path/node  use that binary instead (must be Node 24)
set -euo pipefail

WANT_MAJOR=24
VERSION=24.21.0
say() { printf '[node] %s\n' "$*" >&2; }

major_of() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [[ -n "${ENLIST_NODE:-}" ]]; then
  [[ $(major_of "$ENLIST_NODE") == "$WANT_MAJOR" ]] || { say "ENLIST_NODE=$ENLIST_NODE is not Node $WANT_MAJOR"; exit 1; }
  dirname "$ENLIST_NODE"
  exit 0
fi

if command -v node >/dev/null && [[ $(major_of node) == "$WANT_MAJOR" ]]; then
  dirname "$(command -v node)"
  exit 0
fi

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) say "no Node.js package for $(uname -m)"; exit 1 ;;
esac

CACHE=${ENLIST_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/enlist/node}
DEST="$CACHE/$VERSION-$arch"
if [[ -x "$DEST/bin/node" ]]; then
  echo "$DEST/bin"
  exit 0
fi

command -v npm >/dev/null || { say "npm is needed to fetch Node.js $VERSION from the npm registry"; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -x "$DEST/bin/node" ]]; then echo "$DEST/bin"; exit 0; fi

say "installing Node.js $VERSION (npm package node-linux-$arch) into $DEST"
work=$(mktemp -d "$CACHE/install.XXXXXX")
trap 'rm -rf "$work"' EXIT
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$work" "node-linux-$arch@$VERSION" >&2
pkg="$work/node_modules/node-linux-$arch"
[[ -x "$pkg/bin/node" ]] || { say "the package has no bin/node"; exit 1; }
[[ $("$pkg/bin/node" --version) == "v$VERSION" ]] || { say "unexpected version: $("$pkg/bin/node" --version)"; exit 1; }
rm -rf "$DEST"
mv "$pkg" "$DEST"
say "Node.js $("$DEST/bin/node" --version) ready"
echo "$DEST/bin"
