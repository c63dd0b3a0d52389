// Who is calling the registration API: the bearer token goes through TokenReview with
// audience "enlist", and the pod is the one the token is bound to, nothing else.
// Results are cached until the token expires; rejections briefly, to blunt retries.
//
// Any pod in the cluster can call this API, so it must not be a way to make enlist flood
// the apiserver: a token that is not even a JWT for audience "enlist", or has expired,
// is refused without a TokenReview; reviews of tokens not in the cache are rate-limited
// as a whole, and a client address that keeps sending bad tokens is slowed down.

import { createHash } from 'node:crypto'
import type { KubeClient } from '../kube/client.js'
import { EnlistError, errorMessage, TooManyRequests } from '../lib/errors.js'
import { KeyedBuckets, TokenBucket } from '../lib/rate-limit.js'
import { sleep } from '../lib/backoff.js'
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
/** Largest token accepted: bound tokens are about 1 KiB. */
const MAX_TOKEN_BYTES = 8 * 1024
const CLOCK_SKEW_MS = 60_000

export interface AuthLimits {
  /** TokenReviews per second for tokens not in the cache, and the burst. */
  reviewsPerSecond: number
  reviewBurst: number
  /** How long a new token may queue for a review before it gets 429 instead. */
  reviewQueueMs: number
  /** Rejected tokens per second one client address may send, and the burst. */
  failuresPerSecond: number
  failureBurst: number
}

// A rollout of a thousand pods sends a thousand new tokens within seconds: the burst takes
// the first 400, the rest queue up to 2 s each rather than retry (bench/scale.ts measures it).
export const DEFAULT_AUTH_LIMITS: AuthLimits = { reviewsPerSecond: 100, reviewBurst: 400, reviewQueueMs: 2000, failuresPerSecond: 1, failureBurst: 10 }

export class TokenAuthenticator {
  private readonly cache = new Map<string, Cached>()
  private readonly reviews: TokenBucket
  private readonly queueMs: number
  private readonly failures: KeyedBuckets

  constructor(
    private readonly client: KubeClient,
    private readonly metrics: Metrics,
    limits: AuthLimits = DEFAULT_AUTH_LIMITS,
  ) {
    this.reviews = new TokenBucket(limits.reviewsPerSecond, limits.reviewBurst)
    this.queueMs = limits.reviewQueueMs
    this.failures = new KeyedBuckets(limits.failuresPerSecond, limits.failureBurst)
  }

  /** Throws 401 (bad token), 429 (limits), or 503 when the apiserver cannot be asked.
   *  `client` is the caller's address, for the bad-token limit. */
  async authenticate(authorization: string | undefined, client = ''): Promise<PodIdentity> {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
    if (!m) throw new EnlistError('ENLIST_UNAUTHENTICATED', 'missing bearer token: send the projected service-account token (audience enlist) as "Authorization: Bearer <token>"', 401)
    const token = m[1]!
    const now = Date.now()
    const pre = precheck(token, now)
    if (pre) {
      this.metrics.tokenReviews.inc({ result: 'prechecked' })
      throw new EnlistError('ENLIST_UNAUTHENTICATED', pre, 401)
    }
    const key = createHash('sha256').update(token).digest('base64')
    const hit = this.cache.get(key)
    if (hit && hit.expires > now) {
      this.metrics.tokenReviews.inc({ result: 'cached' })
      if (hit.error) throw hit.error
      return hit.identity!
    }
    // What follows costs the apiserver a TokenReview: an address whose tokens keep being
    // rejected waits, and so does everyone once enlist reviews too many new tokens at once.
    if (!this.failures.has(client)) {
      this.metrics.tokenReviews.inc({ result: 'throttled' })
      throw new TooManyRequests('too many rejected tokens from this address; slow down', 5)
    }
    const delayMs = this.reviews.reserve(this.queueMs)
    if (delayMs === undefined) {
      this.metrics.tokenReviews.inc({ result: 'throttled' })
      throw new TooManyRequests('enlist is reviewing too many new tokens right now; retry shortly', Math.max(1, this.reviews.waitSeconds()))
    }
    if (delayMs > 0) await sleep(delayMs)

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
      this.failures.take(client)
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
  // The apiserver's reason stays in enlist's log at most: it can describe other tokens.
  if (!status.authenticated) return 'token rejected by the apiserver'
  // An apiserver that does not say which audiences it checked has checked none we asked for.
  if (!status.audiences?.includes(TOKEN_AUDIENCE)) return `token is not for audience ${TOKEN_AUDIENCE}`
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '')
  if (!sa) return 'token is not a service-account token'
  const pod = status.user?.extra?.[TOKEN_REVIEW_POD_NAME]?.[0]
  const uid = status.user?.extra?.[TOKEN_REVIEW_POD_UID]?.[0]
  if (!pod || !uid) return 'token is not bound to a pod: use the projected token volume enlist injects'
  return { namespace: sa[1]!, serviceAccount: sa[2]!, pod, uid }
}

/**
 * Why a token cannot be a projected token for enlist, read from the JWT without verifying
 * it (only the apiserver can), or undefined. It spares the apiserver a review of tokens
 * that would fail anyway; it never accepts anything.
 */
export function precheck(token: string, now: number): string | undefined {
  if (token.length > MAX_TOKEN_BYTES) return 'token is too long to be a service-account token'
  const parts = token.split('.')
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return 'token is not a JWT (send the projected service-account token)'
  let claims: { aud?: unknown; exp?: unknown; nbf?: unknown }
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as typeof claims
  } catch {
    return 'token is not a JWT (its claims are not JSON)'
  }
  if (claims === null || typeof claims !== 'object') return 'token is not a JWT (its claims are not an object)'
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : []
  if (!aud.includes(TOKEN_AUDIENCE)) return `token is not for audience ${TOKEN_AUDIENCE}: use the projected token volume enlist injects`
  if (typeof claims.exp === 'number' && claims.exp * 1000 < now - CLOCK_SKEW_MS) return 'token has expired'
  if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now + CLOCK_SKEW_MS) return 'token is not valid yet'
  return undefined
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
