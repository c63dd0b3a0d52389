// A dubbo-go consumer's Kubernetes registry, re-told from dubbo-go's source (remoting/kubernetes
// registry_controller.go, watch.go, listener.go; registry/kubernetes/listener.go), not from
// enlist's code: LIST+WATCH pods labelled dubbo.io/label in (dubbo.io.consumer, dubbo.io.provider);
// each pod's dubbo.io/annotation is base64.URLEncoding of [{"k","v"}]; ADDED and MODIFIED put
// every pair in a cache keyed by k, DELETED removes the pod's pairs; the providers of an
// interface are the cached keys containing "/dubbo/<interface>/providers", the URL the text
// after "/providers/", QueryUnescape'd.

import type { V1Pod } from '@kubernetes/client-node'
import type { KubeClient } from '../../src/kube/client.js'

const SELECTOR = 'dubbo.io/label in (dubbo.io.consumer,dubbo.io.provider)'

export interface DubboGoConsumer {
  providers(iface: string): Array<{ host: string; port: number; params: Record<string, string> }>
  stop(): void
}

function pairsOf(pod: V1Pod): Array<{ k: string; v: string }> {
  const value = pod.metadata?.annotations?.['dubbo.io/annotation']
  if (!value) return []
  // Go's base64.URLEncoding: the URL-safe alphabet, padded
  const json = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')
  return JSON.parse(json) as Array<{ k: string; v: string }>
}

export async function startDubboGoConsumer(client: KubeClient, namespace: string): Promise<DubboGoConsumer> {
  const cache = new Map<string, string>()
  const handle = (type: string, pod: V1Pod): void => {
    for (const p of pairsOf(pod)) {
      if (type === 'DELETED') cache.delete(p.k)
      else cache.set(p.k, p.v)
    }
  }
  const path = `/api/v1/namespaces/${namespace}/pods`
  const list = await client.get<{ items: V1Pod[]; metadata: { resourceVersion: string } }>(path, { labelSelector: SELECTOR })
  for (const p of list.items) handle('ADDED', p)
  const abort = new AbortController()
  void client
    .watch(path, { labelSelector: SELECTOR, resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 600 }, (e) => {
      const ev = e as { type: string; object: V1Pod }
      if (ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED') handle(ev.type, ev.object)
    }, abort.signal)
    .catch(() => undefined)
  return {
    providers(iface) {
      const prefix = `/dubbo/${iface}/providers`
      const out: Array<{ host: string; port: number; params: Record<string, string> }> = []
      for (const k of cache.keys()) {
        if (!k.includes(prefix)) continue
        const i = k.indexOf('/providers/')
        if (i === -1) continue // the directory key itself
        const url = new URL(decodeURIComponent(k.slice(i + '/providers/'.length).replace(/\+/g, ' ')))
        out.push({ host: url.hostname, port: Number(url.port), params: Object.fromEntries(url.searchParams) })
      }
      return out.sort((a, b) => `${a.host}:${a.port}`.localeCompare(`${b.host}:${b.port}`))
    },
    stop: () => abort.abort(),
  }
}
