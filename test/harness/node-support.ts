// Can this machine run a real node? Root (network namespaces, mounts, containers), the
// cgroup v1 controllers kubelet v1.20 needs, and the programs. When it cannot, the suite
// says why and falls back to the kubelet stand-in (test/harness/kubelet.ts).
//
// ENLIST_REAL_NODE=0 turns the real node off on purpose; scripts/test.sh passes the answer
// on as ENLIST_REAL_NODE=1 or the reason, so every test file agrees without asking again.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { CNI_BIN } from './node.js'

export type Support = { ok: true } | { ok: false; reason: string }

const PROGRAMS = ['containerd', 'ctr', 'runc', 'ip', 'nsenter', 'iptables', 'mmdebstrap', 'tar']

export function realNodeSupport(env: NodeJS.ProcessEnv = process.env): Support {
  const set = env.ENLIST_REAL_NODE
  if (set === '1') return { ok: true }
  if (set === '0') return { ok: false, reason: 'ENLIST_REAL_NODE=0' }
  if (set) return { ok: false, reason: set }
  return probe()
}

export function probe(): Support {
  if (process.platform !== 'linux') return { ok: false, reason: `${process.platform} is not Linux` }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root (a node needs network namespaces, mounts and containers)' }
  for (const c of ['memory', 'cpu', 'pids']) {
    if (!existsSync(`/sys/fs/cgroup/${c}`)) return { ok: false, reason: `no cgroup v1 ${c} controller at /sys/fs/cgroup/${c} (kubelet v1.20 needs cgroup v1)` }
  }
  for (const p of PROGRAMS) {
    try {
      execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' })
    } catch {
      return { ok: false, reason: `${p} is not installed (hack/packages/node.list)` }
    }
  }
  for (const plugin of ['bridge', 'host-local', 'loopback']) {
    if (!existsSync(`${CNI_BIN}/${plugin}`)) return { ok: false, reason: `no CNI plugin ${CNI_BIN}/${plugin} (containernetworking-plugins)` }
  }
  if (!existsSync('/bin/busybox')) return { ok: false, reason: 'busybox-static is not installed (hack/packages/node.list)' }
  return { ok: true }
}

/** The line the suite and the demo print. */
export function supportLine(s: Support): string {
  return s.ok ? 'real node: containerd, runc and kubelet v1.20.2 run here' : `real node: unavailable (${s.reason}); the node tests are skipped and the demo runs on the kubelet stand-in`
}

// `tsx test/harness/node-support.ts` (scripts/test.sh): prints 1, or why not.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const s = probe()
  process.stdout.write(`${s.ok ? '1' : s.reason}\n`)
}
