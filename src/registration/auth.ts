// Who is calling the registration API: the bearer token goes through TokenReview with
// audience "enlist", and the pod is the one the token is bound to, nothing else.
// Results are cached until the token expires; rejections briefly, to blunt retries.
//
// Any pod in the cluster can call this API, so it must not be a way to make enlist flood
// the apiserver: a token that is not even a JWT for audience "enlist", or has expired,
// is refused without a TokenReview; reviews of tokens not in the cache are rate-limited
// as a whole, and a client address that keeps sending bad tokens is slowed down.
//
// Nor may one tenant use up that budget for the others: before a review, the token's
// signature is verified against the cluster's issuer keys (token-verifier.ts), so its pod
// and namespace are facts, not claims. Each pod then has its own budget of new tokens, and
// reviews are handed out round-robin across namespaces (FairQueue).

import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import { EnlistError, errorMessage, TooManyRequests } from '../lib/errors.js'
import { FairQueue, KeyedBuckets, TokenBucket } from '../lib/rate-limit.js'
import type { Metrics } from '../metrics.js'
import { TOKEN_AUDIENCE, TOKEN_REVIEW_POD_NAME, TOKEN_REVIEW_POD_UID } from '../names.js'
import type { TokenVerifier, VerifiedToken } from './token-verifier.js'

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
  /** New tokens per second one pod (by the uid its verified token names) may have reviewed, and the burst. */
  podReviewsPerSecond: number
  podReviewBurst: number
}

// A rollout of a thousand pods sends a thousand new tokens within seconds: the burst takes
// the first 400, the rest queue up to 2 s each rather than retry (bench/scale.ts measures it).
// A pod needs a new token at start and when the kubelet rotates it (hourly): 5 at once and
// one every 10 s is far beyond that, and far below what a tenant minting tokens would use.
export const DEFAULT_AUTH_LIMITS: AuthLimits = { reviewsPerSecond: 100, reviewBurst: 400, reviewQueueMs: 2000, failuresPerSecond: 1, failureBurst: 10, podReviewsPerSecond: 0.1, podReviewBurst: 5 }

/** The queue line of tokens whose namespace could not be verified (no JWKS): one for all. */
const UNVERIFIED_LINE = ''

export class TokenAuthenticator {
  private readonly cache = new Map<string, Cached>()
  private readonly reviews: FairQueue
  private readonly failures: KeyedBuckets
  private readonly perPod: KeyedBuckets

  constructor(
    private readonly client: KubeClient,
    private readonly metrics: Metrics,
    limits: Partial<AuthLimits> = DEFAULT_AUTH_LIMITS,
    /** Local signature checks; absent: TokenReview alone, one shared queue (as before). */
    private readonly verifier?: TokenVerifier,
    private readonly log?: Logger,
  ) {
    const l = { ...DEFAULT_AUTH_LIMITS, ...limits }
    // As many may wait as the bucket serves within the wait, twice over: those beyond it
    // would be answered 429 at the end of their wait anyway.
    const capacity = Math.max(16, Math.ceil((2 * l.reviewsPerSecond * l.reviewQueueMs) / 1000))
    this.reviews = new FairQueue(new TokenBucket(l.reviewsPerSecond, l.reviewBurst), l.reviewQueueMs, capacity)
    this.failures = new KeyedBuckets(l.failuresPerSecond, l.failureBurst)
    this.perPod = new KeyedBuckets(l.podReviewsPerSecond, l.podReviewBurst)
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
    // The signature first: a forged token costs no review and cannot claim a namespace's line.
    let verified: VerifiedToken | undefined
    if (this.verifier) {
      try {
        verified = (await this.verifier.verify(token)).verified
      } catch (err) {
        if (!(err instanceof EnlistError)) throw err
        this.metrics.tokenReviews.inc({ result: 'signature-rejected' })
        this.failures.take(client)
        this.put(key, { error: err, expires: now + NEGATIVE_TTL_MS })
        throw err
      }
      if (!verified) this.metrics.tokenReviews.inc({ result: 'unverified' })
    }
    if (verified && !this.perPod.take(verified.uid)) {
      this.metrics.tokenReviews.inc({ result: 'pod-throttled' })
      throw new TooManyRequests(`pod ${verified.namespace}/${verified.pod} sent too many new tokens; reuse the projected token the kubelet keeps current`, 10)
    }
    const turn = await this.reviews.turn(verified?.namespace ?? UNVERIFIED_LINE)
    if (turn !== true) {
      this.metrics.tokenReviews.inc({ result: 'throttled' })
      throw new TooManyRequests('enlist is reviewing too many new tokens right now; retry shortly', Math.max(1, Math.ceil(this.reviews.maxWaitMs / 1000)))
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
      // The apiserver's address and answer stay in enlist's log; the caller gets a reference.
      const ref = randomBytes(4).toString('hex')
      this.log?.error({ ref, err: errorMessage(err) }, 'cannot review a registration token with the apiserver')
      throw new EnlistError('ENLIST_UNAVAILABLE', `cannot review the token with the apiserver (enlist log ref ${ref})`, 503, { cause: err })
    }

    let identity = identityOf(status)
    // The review and the signed claims must name the same pod; they always do, unless keys
    // are confused: then trust neither.
    if (verified && typeof identity !== 'string' && (identity.uid !== verified.uid || identity.namespace !== verified.namespace || identity.pod !== verified.pod || identity.serviceAccount !== verified.serviceAccount)) {
      identity = 'token claims do not match what the apiserver says it is bound to'
    }
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
