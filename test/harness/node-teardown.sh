#!/usr/bin/env bash
# Removes everything a test node (test/harness/node.ts) made, whatever state it is in:
# its pods' containers, the containerd shims, the kubelet, kube-proxy and containerd, the
# mounts under its directory, its network namespace (which takes the CNI bridge, the veths
# and every iptables rule kube-proxy wrote with it), the kubelet's pod logs and the
# directory itself. Run by the harness when a node stops, and by the node's reaper when the
# process that started it is gone (a crash, Ctrl-C, SIGKILL). Idempotent.
#
#   node-teardown.sh DIR NETNS
#
# Processes are found by DIR, which every one of them names on its command line (the
# containerd socket or config lives there), and stopped by PID.
set -euo pipefail
DIR=${1:?usage: node-teardown.sh DIR NETNS}
NETNS=${2:?usage: node-teardown.sh DIR NETNS}
case "$DIR" in /tmp/enlist-node-* | "${TMPDIR:-/tmp}"/enlist-node-*) ;; *) echo "node-teardown: refusing to touch $DIR (not a test node directory)" >&2; exit 2 ;; esac
say() { printf '[node-teardown] %s\n' "$*" >&2; }
step() { [[ -z ${NODE_TEARDOWN_TRACE:-} ]] || say "$(date +%T.%N | cut -c1-12) $*"; }
SOCK="$DIR/containerd.sock"
RUNC_ROOT="$DIR/runc"

# PIDs of processes naming DIR (and $1, when given) on their command line, but not this
# script or the reaper that runs it. One grep over /proc: a machine runs hundreds of processes.
ours() {
  local f p
  for f in $(grep -lasF -- "$DIR" /proc/[0-9]*/cmdline 2>/dev/null); do
    p=${f#/proc/}
    p=${p%/cmdline}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    grep -qaF node-teardown.sh "$f" 2>/dev/null && continue
    [[ -z ${1:-} ]] || grep -qaF -- "$1" "$f" 2>/dev/null || continue
    echo "$p"
  done
}
stop_pids() { # stop_pids SIGNAL PID...: signal, then wait up to 10 s, then KILL
  local sig=$1 p deadline; shift
  (($#)) || return 0
  kill "-$sig" "$@" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}

# The pods whose logs the kubelet wrote under /var/log/pods: noted by the harness as they were
# bound to the node, and those the kubelet still has (read now: DIR is unmounted below).
pod_uids=()
[[ -f /run/enlist-node/$NETNS.pods ]] && mapfile -t pod_uids </run/enlist-node/"$NETNS".pods
[[ -d $DIR/kubelet/pods ]] && pod_uids+=($(ls "$DIR/kubelet/pods"))
created_var_log_pods=$([[ -e $DIR/.created-var-log-pods ]] && echo 1 || true)
created_var_log_containers=$([[ -e $DIR/.created-var-log-containers ]] && echo 1 || true)

step "kubelet, kube-proxy"
# 1. The kubelet and kube-proxy first, so that nothing restarts what is stopped next.
mapfile -t pids < <(ours "$DIR/kubelet.yaml"; ours "$DIR/kube-proxy.yaml")
stop_pids TERM "${pids[@]}"

step "tasks and containers through containerd"
# 2. While containerd runs, remove every task and container through it: the shims then
#    exit by themselves and remove their sockets.
if [[ -S $SOCK ]] && timeout 5 ctr --address "$SOCK" version >/dev/null 2>&1; then
  ctr_() { timeout 20 ctr --address "$SOCK" -n k8s.io "$@" 2>/dev/null || true; }
  for id in $(ctr_ tasks ls -q); do ctr_ tasks kill --all --signal SIGKILL "$id"; done
  for id in $(ctr_ tasks ls -q); do ctr_ tasks delete --force "$id"; done
  for id in $(ctr_ containers ls -q); do ctr_ containers delete "$id"; done
fi

step "containerd"
# 3. containerd itself.
mapfile -t pids < <(ours "$DIR/containerd.toml")
stop_pids TERM "${pids[@]}"

step "runc leftovers"
# 4. Containers left behind (containerd was gone): runc kills them and removes their cgroups.
if [[ -d $RUNC_ROOT ]]; then
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true; done
fi

step "shims"
# 5. Shims left behind, and their sockets (containerd 1.6 names them by a hash of
#    address/namespace/id under /run/containerd/s).
mapfile -t pids < <(ours containerd-shim)
for p in "${pids[@]}"; do
  read -r -a argv < <(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
  ns='' id='' addr=''
  for ((i = 0; i < ${#argv[@]}; i++)); do
    case "${argv[i]}" in -namespace) ns=${argv[i + 1]:-} ;; -id) id=${argv[i + 1]:-} ;; -address) addr=${argv[i + 1]:-} ;; esac
  done
  kill -KILL "$p" 2>/dev/null || true
  if [[ -n $ns && -n $id && -n $addr ]]; then
    rm -f "/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)"
  fi
done
# anything else still naming DIR
mapfile -t pids < <(ours)
stop_pids KILL "${pids[@]}"

step "mounts"
# 6. Mounts under DIR, deepest first: container root filesystems, sandbox shm, the pods'
#    network namespaces, the kubelet's volumes, and last the tmpfs DIR itself is.
mapfile -t mounts < <(awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"; done

step "netns"
# 7. The node's network namespace: the bridge, the veths, kube-proxy's rules go with it.
if ip netns list | grep -qw "$NETNS"; then ip netns delete "$NETNS" || say "could not delete netns $NETNS"; fi
ip link delete "${NETNS/enlist-node-/enlist}" 2>/dev/null || true

step "pod logs"
# 8. The kubelet writes container logs under /var/log/pods and links them from
#    /var/log/containers (fixed paths in v1.20): this node's pods' only.
for uid in "${pod_uids[@]}"; do
  [[ -n $uid ]] || continue
  rm -rf /var/log/pods/*_"$uid"
  for l in /var/log/containers/*.log; do
    [[ -L $l && $(readlink "$l") == /var/log/pods/*_"$uid"/* ]] && rm -f "$l"
  done
done
[[ -n $created_var_log_pods ]] && rmdir /var/log/pods 2>/dev/null || true
[[ -n $created_var_log_containers ]] && rmdir /var/log/containers 2>/dev/null || true

# 9. Shim sockets no process listens on any more (containerd 1.6 keeps them in a fixed
#    /run/containerd/s); the directories too once no test node is left on the machine.
if [[ -d /run/containerd/s ]]; then
  listening=$(ss -xlH 2>/dev/null | awk '{ print $5 }')
  for s in /run/containerd/s/*; do
    [[ -S $s ]] || continue
    grep -qxF -- "$s" <<<"$listening" || rm -f "$s"
  done
fi

step "directory"
rm -rf --one-file-system "$DIR"
rm -f "/run/enlist-node/$NETNS" "/run/enlist-node/$NETNS.pods"
if rmdir /run/enlist-node 2>/dev/null; then
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
fi
