#!/usr/bin/env bash
# Yields a directory holding etcd, kube-apiserver, kube-controller-manager, kubectl, and for
# the real node kube-scheduler, kubelet and kube-proxy,
# and prints its path as the last line of stdout. Progress goes to stderr.
#
#   KUBEBUILDER_ASSETS set  -> its etcd and kube-apiserver (setup-envtest layout). setup-envtest
#                              ships no kube-controller-manager: unless the directory has one,
#                              it comes from the v1.20.2 build below, beside them in a directory
#                              of links (an older controller manager than the apiserver: outside
#                              the supported version skew, enough for the controllers tests use).
#   otherwise               -> Kubernetes v1.20.2 is built once from Debian's source package
#                              and cached per machine in $ENLIST_ASSETS_CACHE
#                              (default ~/.cache/enlist/control-plane/v1.20.2).
#
# Idempotent and safe to run concurrently: builders serialise on a lock and the cache
# directory only appears, complete, through an atomic rename.
set -euo pipefail

K8S_VERSION=1.20.2
say() { printf '[control-plane] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

CACHE_ROOT=${ENLIST_ASSETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/enlist/control-plane}
DEST="$CACHE_ROOT/v$K8S_VERSION"
BINS=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)

complete() { local b; for b in "${BINS[@]}"; do [[ -x "$DEST/$b" ]] || return 1; done; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in etcd kube-apiserver; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable '$b'"
  done
  say "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  if [[ -x "$KUBEBUILDER_ASSETS/kube-controller-manager" && -x "$KUBEBUILDER_ASSETS/kubectl" ]]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  # the v1.20.2 build provides what the assets lack
  built=$(ENLIST_ASSETS_CACHE="$CACHE_ROOT" KUBEBUILDER_ASSETS= "$0")
  merged="$CACHE_ROOT/merged-$(printf %s "$KUBEBUILDER_ASSETS" | sha256sum | cut -c1-12)"
  mkdir -p "$merged"
  for b in "${BINS[@]}"; do
    if [[ -x "$KUBEBUILDER_ASSETS/$b" ]]; then src="$KUBEBUILDER_ASSETS/$b"; else src="$built/$b"; say "$b from the v$K8S_VERSION build"; fi
    ln -sfn "$src" "$merged/$b"
  done
  echo "$merged"
  exit 0
fi

if complete; then echo "$DEST"; exit 0; fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
say "waiting for the build lock ($CACHE_ROOT/.lock)"
flock 9
if complete; then say "another run built it meanwhile"; echo "$DEST"; exit 0; fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "installing Debian packages needs root or sudo"
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >&2 || {
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >&2
  }
}

# apt-get source needs a deb-src entry for bookworm main. One the machine already has is
# used as it is: a second one for the same suite makes apt warn on every run.
has_deb_src() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f && $f != "$1" ]] || continue
    grep -Eq '^[[:space:]]*deb-src[[:space:]]|^Types:.*\bdeb-src\b' "$f" && return 0
  done
  return 1
}

# Else one is added, mirroring the deb entries of debian.sources (deb822 form).
ensure_deb_src() {
  local src=/etc/apt/sources.list.d/enlist-deb-src.sources
  if has_deb_src "$src"; then
    if [[ -f $src ]]; then
      say "removing $src: the machine has its own deb-src entries"
      "${SUDO[@]}" rm -f "$src"
      "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    fi
    return 0
  fi
  [[ -f $src ]] && return 0
  local main=/etc/apt/sources.list.d/debian.sources
  [[ -f $main ]] || die "no deb-src entry and no $main to derive one from; add deb-src for bookworm main yourself"
  say "adding deb-src entries ($src)"
  sed -e 's/^Types: deb$/Types: deb-src/' "$main" | "${SUDO[@]}" tee "$src" >/dev/null
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
}

apt_install etcd-server
ensure_deb_src
apt_install golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev

WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
say "downloading Debian's kubernetes source package"
apt-get source --download-only kubernetes >&2
orig=$(ls kubernetes_*.orig.tar.gz | head -n1)
[[ -n $orig ]] || die "no kubernetes orig tarball was downloaded"
say "unpacking $orig"
mkdir src && tar -xzf "$orig" -C src --strip-components=1

# The vendored reflect2 v1.0.1 crashes the apiserver under Go >= 1.18 (SIGSEGV in
# mapiterinit on the first watch); Debian's copy is fixed.
say "replacing vendored modern-go/reflect2 with Debian's"
rm -rf src/vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 src/vendor/github.com/modern-go/reflect2
rm -f src/vendor/github.com/modern-go/reflect2/go.mod

say "building kube-apiserver, kube-controller-manager, kubectl, kube-scheduler, kubelet, kube-proxy (about ten minutes on 2 cores)"
mkdir -p home
# A heartbeat: the Go compiler prints nothing for minutes at a time.
started=$SECONDS
(
  trap 'kill $nap 2>/dev/null || true; exit 0' TERM
  while :; do
    sleep 30 & nap=$!
    wait $nap
    say "  still building ($(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s)"
  done
) &
heartbeat=$!
trap 'kill $heartbeat 2>/dev/null || true; rm -rf "$WORK"' EXIT
(
  cd src
  export HOME="$WORK/home" CGO_ENABLED=0 KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
  # make prints one line per package group; keep it visible as progress (sed -u: unbuffered)
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl cmd/kube-scheduler cmd/kubelet cmd/kube-proxy" 2>&1 | sed -u 's/^/[control-plane]   /' >&2
  exit "${PIPESTATUS[0]}"
)
kill $heartbeat 2>/dev/null || true

stage="$WORK/out"
mkdir -p "$stage"
for b in kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy; do
  cp "src/_output/bin/$b" "$stage/$b" 2>/dev/null || cp "src/_output/local/go/bin/$b" "$stage/$b" || die "build produced no $b"
done
cp /usr/bin/etcd "$stage/etcd"
chmod 0755 "$stage"/*
rm -rf "$DEST"
mv "$stage" "$DEST"
say "cached in $DEST"
echo "$DEST"
