// Kubernetes name and label syntax (apimachinery/pkg/util/validation), used for
// policy fields and tenant annotations alike.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/

export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s)
}

export function isDns1035Label(s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL.test(s)
}

export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s)
}

/** A label or annotation key: `[prefix/]name`. */
export function isQualifiedName(s: string): boolean {
  const slash = s.indexOf('/')
  const name = slash === -1 ? s : s.slice(slash + 1)
  if (slash !== -1) {
    const prefix = s.slice(0, slash)
    if (prefix.length === 0 || !isDns1123Subdomain(prefix)) return false
  }
  return name.length > 0 && name.length <= 63 && QUALIFIED_NAME.test(name)
}

export function isLabelValue(s: string): boolean {
  return s === '' || (s.length <= 63 && QUALIFIED_NAME.test(s))
}

/** A named port (IANA_SVC_NAME): at most 15 characters, at least one letter, no "--". */
export function isPortName(s: string): boolean {
  return s.length <= 15 && IANA_SVC_NAME.test(s) && /[a-z]/.test(s) && !s.includes('--')
}

const POD_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** A pod UID as the apiserver makes them (RFC 4122, lowercase): nothing else is ever
 *  turned into a request path. */
export function isPodUid(s: string): boolean {
  return POD_UID.test(s)
}
