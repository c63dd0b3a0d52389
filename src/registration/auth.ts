// Who is calling the registration API: the bearer token goes through TokenReview with
// audience "enlist", and the pod is the one the token is bound to, nothing else.
// Results are cached until the token expires; rejections briefly, to blunt retries.

import { createHash } from 'node:crypto'
import type { KubeClient } from '../kube/client.js'
import { EnlistError, errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { TOKEN_AUDIENCE, TOKEN_REVIEW_POD_NAME, TOKEN_REVIEW_POD_UID } from '../names.js'

export interface PodIdentity {
  namespace: string
  pod: string
  uid: string
  serviceAccount: string
}

interface Cached {
  identity?: PodIdentity
  error?: EnlistError
  expires: number
}

interface TokenReviewStatus {
  authenticated?: boolean
  error?: string
  audiences?: string[]
  user?: { username?: string; extra?: Record<string, string[]> }
}

const MAX_ENTRIES = 20_000
const NEGATIVE_TTL_MS = 5_000
const MAX_TTL_MS = 10 * 60_000

export class TokenAuthenticator {
  private readonly cache = new Map<string, Cached>()

  constructor(
    private readonly client: KubeClient,
    private readonly metrics: Metrics,
  ) {}

  /** Throws 401 (bad token), or 503 when the apiserver cannot be asked. */
  async authenticate(authorization: string | undefined): Promise<PodIdentity> {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
    if (!m) throw new EnlistError('ENLIST_UNAUTHENTICATED', 'missing bearer token: send the projected service-account token (audience enlist) as "Authorization: Bearer <token>"', 401)
    const token = m[1]!
    const key = createHash('sha256').update(token).digest('base64')
    const now = Date.now()
    const hit = this.cache.get(key)
    if (hit && hit.expires > now) {
      this.metrics.tokenReviews.inc({ result: 'cached' })
      if (hit.error) throw hit.error
      return hit.identity!
    }

    let status: TokenReviewStatus
    try {
      const review = await this.client.create<{ status?: TokenReviewStatus }>('/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [TOKEN_AUDIENCE] },
      })
      status = review.status ?? {}
    } catch (err) {
      this.metrics.tokenReviews.inc({ result: 'error' })
      throw new EnlistError('ENLIST_UNAVAILABLE', `cannot review the token with the apiserver: ${errorMessage(err)}`, 503, { cause: err })
    }

    const identity = identityOf(status)
    if (typeof identity === 'string') {
      this.metrics.tokenReviews.inc({ result: 'rejected' })
      const error = new EnlistError('ENLIST_UNAUTHENTICATED', identity, 401)
      this.put(key, { error, expires: now + NEGATIVE_TTL_MS })
      throw error
    }
    this.metrics.tokenReviews.inc({ result: 'authenticated' })
    this.put(key, { identity, expires: Math.min(tokenExpiry(token) ?? now + 60_000, now + MAX_TTL_MS) })
    return identity
  }

  private put(key: string, v: Cached): void {
    if (this.cache.size >= MAX_ENTRIES) {
      // drop the oldest tenth (Map keeps insertion order)
      let n = MAX_ENTRIES / 10
      for (const k of this.cache.keys()) {
        this.cache.delete(k)
        if (--n <= 0) break
      }
    }
    this.cache.set(key, v)
  }
}

/** The pod identity, or why the token is not acceptable. */
export function identityOf(status: TokenReviewStatus): PodIdentity | string {
  if (!status.authenticated) return `token rejected by the apiserver${status.error ? `: ${status.error}` : ''}`
  if (status.audiences && !status.audiences.includes(TOKEN_AUDIENCE)) return `token is not for audience ${TOKEN_AUDIENCE}`
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '')
  if (!sa) return 'token is not a service-account token'
  const pod = status.user?.extra?.[TOKEN_REVIEW_POD_NAME]?.[0]
  const uid = status.user?.extra?.[TOKEN_REVIEW_POD_UID]?.[0]
  if (!pod || !uid) return 'token is not bound to a pod: use the projected token volume enlist injects'
  return { namespace: sa[1]!, serviceAccount: sa[2]!, pod, uid }
}

/** The JWT exp claim, read without verifying (the apiserver just did). */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1]
  if (!payload) return undefined
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: number }).exp
    return typeof exp === 'number' ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}
