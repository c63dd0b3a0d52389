// Most pods of a cluster are not for enlist, and deciding that should cost less than
// parsing their review. A glimpse reads, from the raw AdmissionReview text, only what the
// decision needs when the pod itself cannot matter: the review's apiVersion and uid, and
// the request's namespace, operation, kind, resource and subResource. It walks the JSON
// structure (never searching for a key anywhere in the text), stops at the pod object,
// and gives up (undefined: parse in full) at anything it does not expect: escapes in
// those strings, a key order other than the apiserver's (Go's encoder writes the request's
// fields before the object), duplicate fields, or malformed text.
//
// Whether the pod can matter is a separate, conservative test on the whole text: it cannot
// when "enlist.io/" appears nowhere, and no escape could hide it (no "\u" or "\/").

export interface Glimpse {
  apiVersion: string
  uid: string
  namespace: string
  /** operation CREATE of a Pod (resource pods, no subresource). */
  podCreate: boolean
}

/** Whether nothing in the pod can opt it in or out, or claim enlist's status: no
 *  "enlist.io/" anywhere in the text, and no escape sequence that could spell it. */
export function podCannotMatter(text: string): boolean {
  return text.indexOf('enlist.io/') === -1 && text.indexOf('\\u') === -1 && text.indexOf('\\/') === -1
}

const enum C {
  Quote = 0x22,
  Backslash = 0x5c,
  Colon = 0x3a,
  Comma = 0x2c,
  OpenBrace = 0x7b,
  CloseBrace = 0x7d,
  OpenBracket = 0x5b,
  CloseBracket = 0x5d,
}

class Scanner {
  i = 0
  constructor(readonly s: string) {}

  ws(): void {
    const s = this.s
    let c = s.charCodeAt(this.i)
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = s.charCodeAt(++this.i)
  }

  /** Consumes `ch` (after whitespace) or returns false. */
  eat(ch: number): boolean {
    this.ws()
    if (this.s.charCodeAt(this.i) !== ch) return false
    this.i++
    return true
  }

  /** A string without escapes, or undefined. */
  str(): string | undefined {
    this.ws()
    if (this.s.charCodeAt(this.i) !== C.Quote) return undefined
    const end = this.s.indexOf('"', this.i + 1)
    if (end === -1) return undefined
    const v = this.s.slice(this.i + 1, end)
    if (v.indexOf('\\') !== -1) return undefined
    this.i = end + 1
    return v
  }

  /** Skips any value; false on malformed text. */
  skip(): boolean {
    this.ws()
    const s = this.s
    const c = s.charCodeAt(this.i)
    if (c === C.Quote) return this.skipString()
    if (c !== C.OpenBrace && c !== C.OpenBracket) {
      // a scalar: up to the next delimiter
      while (this.i < s.length) {
        const d = s.charCodeAt(this.i)
        if (d === C.Comma || d === C.CloseBrace || d === C.CloseBracket) return true
        this.i++
      }
      return false
    }
    let depth = 0
    while (this.i < s.length) {
      const d = s.charCodeAt(this.i)
      if (d === C.Quote) {
        if (!this.skipString()) return false
        continue
      }
      if (d === C.OpenBrace || d === C.OpenBracket) depth++
      else if (d === C.CloseBrace || d === C.CloseBracket) {
        if (--depth === 0) {
          this.i++
          return true
        }
      }
      this.i++
    }
    return false
  }

  private skipString(): boolean {
    const s = this.s
    for (let j = this.i + 1; j < s.length; j++) {
      const d = s.charCodeAt(j)
      if (d === C.Backslash) j++
      else if (d === C.Quote) {
        this.i = j + 1
        return true
      }
    }
    return false
  }

  /** A flat object of string values (a GroupVersionKind); undefined otherwise. */
  strings(): Record<string, string> | undefined {
    if (!this.eat(C.OpenBrace)) return undefined
    const out: Record<string, string> = {}
    if (this.eat(C.CloseBrace)) return out
    for (;;) {
      const k = this.str()
      if (k === undefined || !this.eat(C.Colon)) return undefined
      const v = this.str()
      if (v === undefined || k in out) return undefined
      out[k] = v
      if (this.eat(C.CloseBrace)) return out
      if (!this.eat(C.Comma)) return undefined
    }
  }
}

const REQUEST_STRINGS = new Set(['uid', 'namespace', 'operation', 'subResource', 'name'])

export function glimpse(text: string): Glimpse | undefined {
  const sc = new Scanner(text)
  if (!sc.eat(C.OpenBrace)) return undefined
  let kind: string | undefined
  let apiVersion: string | undefined
  // the envelope: kind and apiVersion, then request
  for (;;) {
    const key = sc.str()
    if (key === undefined || !sc.eat(C.Colon)) return undefined
    if (key === 'request') break
    if (key === 'kind' || key === 'apiVersion') {
      const v = sc.str()
      if (v === undefined || (key === 'kind' ? kind : apiVersion) !== undefined) return undefined
      if (key === 'kind') kind = v
      else apiVersion = v
    } else if (!sc.skip()) return undefined
    if (!sc.eat(C.Comma)) return undefined
  }
  if (kind !== 'AdmissionReview' || apiVersion === undefined) return undefined
  if (!sc.eat(C.OpenBrace)) return undefined

  const got: Record<string, string> = {}
  let gvk: Record<string, string> | undefined
  let gvr: Record<string, string> | undefined
  for (;;) {
    const key = sc.str()
    if (key === undefined || !sc.eat(C.Colon)) return undefined
    if (key === 'object') break // the pod: everything the glimpse needs comes before it
    if (REQUEST_STRINGS.has(key)) {
      const v = sc.str()
      if (v === undefined || key in got) return undefined
      got[key] = v
    } else if (key === 'kind' || key === 'resource') {
      if ((key === 'kind' ? gvk : gvr) !== undefined) return undefined
      const v = sc.strings()
      if (!v) return undefined
      if (key === 'kind') gvk = v
      else gvr = v
    } else if (!sc.skip()) return undefined
    if (sc.eat(C.CloseBrace)) break
    if (!sc.eat(C.Comma)) return undefined
  }
  if (!got.uid || got.operation === undefined || !gvk || !gvr) return undefined
  return {
    apiVersion,
    uid: got.uid,
    namespace: got.namespace ?? '',
    podCreate: got.operation === 'CREATE' && gvk.kind === 'Pod' && gvr.resource === 'pods' && (got.subResource ?? '') === '',
  }
}
