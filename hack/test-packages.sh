#!/usr/bin/env bash
# Installs the Debian packages the tests run for real (brokers, registries, the node's
# runtime), as listed in hack/packages/*.list: one package per line, # for comments.
# Each part of the suite owns its list. Idempotent: installed packages are skipped, and
# `apt-get update` runs only when an install fails for want of it.
#   hack/test-packages.sh            every list
#   hack/test-packages.sh node ...   only those lists (the demo needs only the node's)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[packages] %s\n' "$*" >&2; }

lists=(hack/packages/*.list)
if (($#)); then
  lists=()
  for name in "$@"; do
    [[ -f hack/packages/$name.list ]] || { say "no list hack/packages/$name.list"; exit 2; }
    lists+=("hack/packages/$name.list")
  done
fi
wanted=()
for f in "${lists[@]}"; do
  [[ -e $f ]] || continue
  while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ -n $line ]] && wanted+=("$line")
  done <"$f"
done
((${#wanted[@]})) || exit 0

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { say "installing ${missing[*]} needs root or sudo"; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start services: the tests start what they need themselves.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 0755 "$policy"
  trap '"${SUDO[@]}" rm -f "$policy"' EXIT
fi
say "apt-get install ${missing[*]}"
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 || {
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
}
