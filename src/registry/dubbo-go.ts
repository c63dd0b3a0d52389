// dubbo-go's Kubernetes registry, as its providers write it on their own pods, so that
// unmodified dubbo-go consumers discover the pods enlist registers. Pure.
//
// From apache/dubbo-go:
// * remoting/kubernetes/registry_controller.go: annotation `dubbo.io/annotation`, label
//   `dubbo.io/label` = `dubbo.io.provider` (v1.5 and v3; `dubbo.io-value` up to v1.4).
//   Consumers LIST+WATCH pods with `dubbo.io/label in (dubbo.io.consumer, dubbo.io.provider)`;
//   the annotation is `base64.URLEncoding` (URL-safe alphabet, padded) of a JSON array of
//   WatcherEvent, `{"k": key, "v": value}` (remoting/kubernetes/watch.go). A consumer drops
//   a pod's keys only on the pod's watch DELETED event.
// * registry/base_registry.go (providerRegistry, processURL) and registry/kubernetes/registry.go
//   (CreatePath, DoRegister): a provider writes `{k: "/dubbo/<QueryEscape(interface)>/providers",
//   v: ""}` and `{k: "<that>/<QueryEscape(url)>", v: ""}`, the url as Dubbo's toFullString.
// * registry/kubernetes/listener.go: consumers take the text after "/providers/" as the URL.

import { type DubboProvider, goQueryEscape, PROVIDERS_CATEGORY, toFullString } from './dubbo.js'
import type { ErrorCode } from '../lib/errors.js'

export const DUBBO_GO_ANNOTATION = 'dubbo.io/annotation'
export const DUBBO_GO_LABEL = 'dubbo.io/label'
/** Label values: what dubbo-go v1.5 to v3 providers set, and what v1.4 and older select. */
export const DUBBO_GO_LABEL_VALUES = ['dubbo.io.provider', 'dubbo.io-value'] as const
export type DubboGoLabelValue = (typeof DUBBO_GO_LABEL_VALUES)[number]

export interface DubboGoPair {
  k: string
  v: string
}

/** The pairs a dubbo-go provider writes for one provider URL. */
export function dubboGoPairs(p: DubboProvider): DubboGoPair[] {
  const dir = `/dubbo/${goQueryEscape(p.interface)}/${PROVIDERS_CATEGORY}`
  return [
    { k: dir, v: '' },
    { k: `${dir}/${goQueryEscape(toFullString(p))}`, v: '' },
  ]
}

/** base64.URLEncoding of the JSON array: Go's URL-safe alphabet, with padding. */
export function encodeDubboGoAnnotation(pairs: readonly DubboGoPair[]): string {
  const b64 = Buffer.from(JSON.stringify(pairs.map(({ k, v }) => ({ k, v }))), 'utf8').toString('base64url')
  return b64 + '='.repeat((4 - (b64.length % 4)) % 4)
}

export class DubboGoDecodeError extends Error {
  readonly code = 'ENLIST_DUBBO_GO_INVALID' satisfies ErrorCode
}

/** Reads an annotation as dubbo-go's unmarshalRecord does (strict padded URL-safe base64). */
export function decodeDubboGoAnnotation(value: string): DubboGoPair[] {
  if (value === '') return []
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new DubboGoDecodeError('not base64 with the URL-safe alphabet and padding (Go base64.URLEncoding)')
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
  } catch (err) {
    throw new DubboGoDecodeError(`not JSON: ${(err as Error).message}`)
  }
  if (!Array.isArray(parsed)) throw new DubboGoDecodeError('not a JSON array of {"k","v"} pairs')
  return parsed.map((p: unknown) => {
    const o = (p ?? {}) as Partial<DubboGoPair>
    return { k: typeof o.k === 'string' ? o.k : '', v: typeof o.v === 'string' ? o.v : '' }
  })
}
