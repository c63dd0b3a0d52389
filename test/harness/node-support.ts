// Can this machine run a real node? Root (network namespaces, mounts, containers), the
// cgroup v1 controllers kubelet v1.20 needs, and the programs. When it cannot, the suite
// says why and falls back to the kubelet stand-in (test/harness/kubelet.ts).
//
// ENLIST_REAL_NODE=0 turns the real node off on purpose; scripts/test.sh passes the answer
// on as ENLIST_REAL_NODE=1 or the reason, so every test file agrees without asking again.
//
// ENLIST_REQUIRE_REAL_NODE=1 (.ci/run sets it) turns every such fallback into a failure:
// CI runs on machines where the node runs, so a run that quietly skipped it is not green.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { CNI_BIN } from './node.js'

export type Support = { ok: true } | { ok: false; reason: string }

const PROGRAMS = ['containerd', 'ctr', 'runc', 'ip', 'nsenter', 'iptables', 'mmdebstrap', 'tar']

/** The run must not fall back to a stand-in (ENLIST_REQUIRE_REAL_NODE=1). */
export function realPartsRequired(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.ENLIST_REQUIRE_REAL_NODE === '1'
}

export class RealPartRequiredError extends Error {
  constructor(what: string, reason: string) {
    super(`ENLIST_REQUIRE_REAL_NODE=1: ${what} is required and cannot run here: ${reason}`)
    this.name = 'RealPartRequiredError'
  }
}

/** Throws where the run requires the real part and `s` says it cannot run; else `s`. */
export function orRequired(what: string, s: Support, env: NodeJS.ProcessEnv = process.env): Support {
  if (!s.ok && realPartsRequired(env)) throw new RealPartRequiredError(what, s.reason)
  return s
}

export function realNodeSupport(env: NodeJS.ProcessEnv = process.env): Support {
  const set = env.ENLIST_REAL_NODE
  let s: Support
  if (set === '1') s = { ok: true }
  else if (set === '0') s = { ok: false, reason: 'ENLIST_REAL_NODE=0' }
  else if (set) s = { ok: false, reason: set }
  else s = probe()
  return orRequired('the real node', s, env)
}

const IMAGE_PROGRAMS = ['mmdebstrap', 'tar', 'flock']

/** Can this machine build the images (hack/images.sh)? mmdebstrap with root or user
 *  namespaces, tar and busybox-static: no cgroups, no containerd. */
export function imageSupport(env: NodeJS.ProcessEnv = process.env): Support {
  return orRequired('building the images', env.ENLIST_IMAGES ? { ok: true } : probeImages(), env)
}

export function probeImages(): Support {
  if (process.platform !== 'linux') return { ok: false, reason: `${process.platform} is not Linux` }
  for (const p of IMAGE_PROGRAMS) if (!installed(p)) return { ok: false, reason: `${p} is not installed (hack/packages/node.list)` }
  if (!existsSync('/bin/busybox')) return { ok: false, reason: 'busybox-static is not installed (hack/packages/node.list)' }
  if (process.getuid?.() !== 0) {
    try {
      execFileSync('unshare', ['--user', '--map-root-user', 'true'], { stdio: 'ignore' })
    } catch {
      return { ok: false, reason: 'not root, and no user namespaces for mmdebstrap --mode=unshare' }
    }
  }
  return { ok: true }
}

function installed(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export function probe(): Support {
  if (process.platform !== 'linux') return { ok: false, reason: `${process.platform} is not Linux` }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root (a node needs network namespaces, mounts and containers)' }
  for (const c of ['memory', 'cpu', 'pids']) {
    if (!existsSync(`/sys/fs/cgroup/${c}`)) return { ok: false, reason: `no cgroup v1 ${c} controller at /sys/fs/cgroup/${c} (kubelet v1.20 needs cgroup v1)` }
  }
  for (const p of PROGRAMS) if (!installed(p)) return { ok: false, reason: `${p} is not installed (hack/packages/node.list)` }
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

/** The skip line of a test that needs the images. */
export function imageLine(s: Support): string {
  return s.ok ? 'images: hack/images.sh builds them here' : `images: cannot be built here (${s.reason}); the image test is skipped`
}

// `tsx test/harness/node-support.ts` (scripts/test.sh): prints 1, or why not.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const s = probe()
  process.stdout.write(`${s.ok ? '1' : s.reason}\n`)
}
