// Offline injection preview: the same engine as the webhook, applied to the pod template
// of each workload in a manifest. Pure: documents in, documents and diagnostics out.

import type { V1ObjectMeta, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node'
import fjp from 'fast-json-patch'
import { admit, type AdmissionFacts } from '../admission/review.js'
import type { CompiledPolicy } from '../policy/policy.js'

export interface RenderDiagnostic {
  document: number
  object: string
  verdict: 'injected' | 'skipped' | 'denied'
  reason: string
  message?: string
  warnings: string[]
}

export interface RenderOptions {
  policy: CompiledPolicy
  /** Labels of namespaces by name; a namespace not listed has none. */
  namespaceLabels: (namespace: string) => Readonly<Record<string, string>>
  defaultNamespace: string
  facts: Omit<AdmissionFacts, 'namespaceLabels'>
}

interface K8sObject {
  apiVersion?: string
  kind?: string
  metadata?: V1ObjectMeta
  spec?: Record<string, unknown>
  items?: unknown[]
}

const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['template'],
  StatefulSet: ['template'],
  DaemonSet: ['template'],
  ReplicaSet: ['template'],
  ReplicationController: ['template'],
  Job: ['template'],
  CronJob: ['jobTemplate', 'spec', 'template'],
  // OpenShift (apps.openshift.io/v1)
  DeploymentConfig: ['template'],
}

/** Injects into every pod (template) of `docs`, in place; returns what happened to each. */
export function renderDocuments(docs: unknown[], opts: RenderOptions): RenderDiagnostic[] {
  const out: RenderDiagnostic[] = []
  docs.forEach((doc, i) => {
    visit(doc, i, opts, out)
  })
  return out
}

function visit(doc: unknown, index: number, opts: RenderOptions, out: RenderDiagnostic[]): void {
  if (doc === null || typeof doc !== 'object') return
  const obj = doc as K8sObject
  if (obj.kind === 'List' && Array.isArray(obj.items)) {
    for (const item of obj.items) visit(item, index, opts, out)
    return
  }
  const kind = obj.kind ?? ''
  const name = obj.metadata?.name ?? obj.metadata?.generateName ?? '(unnamed)'
  const namespace = obj.metadata?.namespace || opts.defaultNamespace

  let holder: { metadata?: V1ObjectMeta; spec?: unknown }
  let owner: V1ObjectMeta['ownerReferences']
  if (kind === 'Pod') {
    holder = obj
  } else {
    const path = TEMPLATE_PATHS[kind]
    if (!path) return
    let cur: unknown = obj.spec
    for (const p of path) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined
    if (!cur || typeof cur !== 'object') return
    holder = cur as V1PodTemplateSpec
    owner = [{ apiVersion: obj.apiVersion ?? 'apps/v1', kind, name, uid: '', controller: true }]
  }

  // The pod the apiserver would see; patch paths are the same for the template.
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...holder.metadata, namespace, ...(owner ? { ownerReferences: owner } : {}) },
    spec: holder.spec as V1Pod['spec'],
  }
  const outcome = admit(
    {
      uid: `render-${index}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace,
      object: pod,
    },
    opts.policy,
    { ...opts.facts, namespaceLabels: opts.namespaceLabels(namespace) },
  )
  const diag: RenderDiagnostic = {
    document: index,
    object: `${kind}/${name}`,
    verdict: outcome.verdict === 'ignored' ? 'skipped' : outcome.verdict,
    reason: outcome.reason,
    warnings: outcome.response.warnings ?? [],
  }
  if (outcome.response.status?.message) diag.message = outcome.response.status.message
  if (outcome.patch) {
    holder.metadata ??= {}
    fjp.applyPatch(holder, JSON.parse(outcome.patch) as fjp.Operation[], true, true)
  }
  out.push(diag)
}
