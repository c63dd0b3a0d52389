// The shared corpus of real-world workloads, and the checks every injected pod must pass.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { V1PodTemplateSpec } from '@kubernetes/client-node'
import { parse } from 'yaml'

export const VENDORED = new URL('../fixtures/kubernetes-examples/', import.meta.url).pathname
/** The corpus in test/fixtures, or the directory ENLIST_CORPUS names (a larger one of your own). */
export const CORPUS_DIR = process.env.ENLIST_CORPUS || VENDORED

export interface CorpusEntry {
  file: string
  text: string
  object: { apiVersion: string; kind: string; metadata: { name: string }; spec: Record<string, unknown> }
}

export function corpus(): CorpusEntry[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(join(CORPUS_DIR, file), 'utf8')
      return { file, text, object: parse(text) as CorpusEntry['object'] }
    })
}

export function templateOf(obj: { kind: string; spec?: unknown }): V1PodTemplateSpec {
  if (obj.kind === 'Pod') return obj as V1PodTemplateSpec
  const spec = obj.spec as { template?: V1PodTemplateSpec; jobTemplate?: { spec: { template: V1PodTemplateSpec } } }
  if (obj.kind === 'CronJob') return spec.jobTemplate!.spec.template
  return spec.template!
}

/** Problems with an injected pod (or template): what docs/design.md says every one carries. */
export function missingItems(p: V1PodTemplateSpec, opts: { readinessGate?: boolean } = {}): string[] {
  const problems: string[] = []
  const spec = p.spec!
  const reg = spec.initContainers?.find((c) => c.name === 'enlist-registrar')
  if (!reg) problems.push('no enlist-registrar init container')
  else {
    if (spec.initContainers![0]!.name !== 'enlist-registrar') problems.push('registrar is not the first init container')
    if (!reg.volumeMounts?.some((m) => m.name === 'enlist-token')) problems.push('registrar does not mount the token')
    if (reg.securityContext?.runAsNonRoot !== true || reg.securityContext?.readOnlyRootFilesystem !== true) problems.push('registrar securityContext not restricted')
  }
  const vol = spec.volumes?.find((v) => v.name === 'enlist-token')
  if (vol?.projected?.sources?.[0]?.serviceAccountToken?.audience !== 'enlist') problems.push('no projected token volume with audience enlist')
  for (const c of spec.containers) {
    if (c.volumeMounts?.some((m) => m.name === 'enlist-token')) problems.push(`container ${c.name} mounts the token`)
    const names = new Set((c.env ?? []).map((e) => e.name))
    for (const v of ['POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'POD_IP', 'POD_IPS', 'HOST_IP', 'NODE_NAME', 'POD_SERVICE_ACCOUNT']) {
      if (!names.has(v)) problems.push(`container ${c.name} lacks env ${v}`)
    }
    if (!c.lifecycle?.preStop) problems.push(`container ${c.name} has no preStop hook`)
  }
  if (opts.readinessGate !== false && !spec.readinessGates?.some((g) => g.conditionType === 'enlist.io/registered')) problems.push('no readiness gate')
  const labels = p.metadata?.labels ?? {}
  if (labels['enlist.io/managed'] !== 'true') problems.push('no enlist.io/managed label')
  if (!labels['app.io/label']) problems.push('no discovery label')
  if (!p.metadata?.annotations?.['enlist.io/status']) problems.push('no enlist.io/status annotation')
  return problems
}

/**
 * Paths where `after` lost or changed something of `before`. Arrays may gain elements;
 * every original element must still be there, in order.
 */
export function lostValues(before: unknown, after: unknown, path = ''): string[] {
  if (Array.isArray(before)) {
    if (!Array.isArray(after)) return [`${path}: array replaced`]
    let j = 0
    for (let i = 0; i < before.length; i++) {
      while (j < after.length && lostValues(before[i], after[j], `${path}/${i}`).length > 0) j++
      if (j === after.length) return [`${path}/${i}: element lost or changed`]
      j++
    }
    return []
  }
  if (before !== null && typeof before === 'object') {
    if (after === null || typeof after !== 'object') return [`${path}: object replaced`]
    const out: string[] = []
    for (const [k, v] of Object.entries(before)) out.push(...lostValues(v, (after as Record<string, unknown>)[k], `${path}/${k}`))
    return out
  }
  return before === after ? [] : [`${path}: ${JSON.stringify(before)} became ${JSON.stringify(after)}`]
}

/** Why enlist leaves a corpus pod uninjected on purpose (src/admission/reserved.ts), if it does:
 *  a hostNetwork pod that resolves names with the node's DNS cannot reach a Service name. */
export function expectedSkip(p: V1PodTemplateSpec): string | undefined {
  const spec = p.spec
  if (spec?.hostNetwork === true && spec.dnsPolicy !== 'ClusterFirstWithHostNet') return 'host-network-dns'
  return undefined
}
