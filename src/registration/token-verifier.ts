// Local verification of service-account tokens against the cluster's issuer keys
// (GET /openid/v1/jwks, ServiceAccountIssuerDiscovery). It does not replace TokenReview:
// only the apiserver knows whether the pod a token is bound to still lives. It gives the
// registration API an identity no caller can forge *before* it spends a TokenReview, so
// its rate limits and fair queue can be keyed by pod and namespace.
//
// An apiserver that does not serve the keys (404, 403) leaves enlist as before (TokenReview
// alone, one shared queue), with a warning. A token whose signature does not verify
// against keys enlist holds is refused: never waved through to the review.

import { createPublicKey, type JsonWebKey, type KeyObject, verify } from 'node:crypto'
import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import { KubeApiError } from '../kube/client.js'
import { EnlistError, errorMessage } from '../lib/errors.js'
import { TOKEN_AUDIENCE } from '../names.js'

/** What a verified token says about its pod (the claims the apiserver signed). */
export interface VerifiedToken {
  namespace: string
  serviceAccount: string
  pod: string
  uid: string
  /** exp, in ms */
  expires: number
}

export type Verification = { verified: VerifiedToken } | { verified?: undefined; why: 'unsupported' | 'unavailable' }

export type VerifierMode = 'unknown' | 'jwks' | 'unsupported'

/** The JWS algorithms the apiserver signs service-account tokens with. */
const ALGORITHMS: Record<string, { hash: string; kty: 'RSA' | 'EC'; crv?: string }> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256' },
  ES384: { hash: 'sha384', kty: 'EC', crv: 'P-384' },
  ES512: { hash: 'sha512', kty: 'EC', crv: 'P-521' },
}

const CLOCK_SKEW_MS = 60_000

export interface VerifierOptions {
  /** The JWKS document; throws KubeApiError 404/403 when the apiserver does not serve it. */
  fetchKeys: () => Promise<unknown>
  log: Logger
  /** Least time between two fetches of the keys (an unknown kid asks again at most this often). */
  refreshIntervalMs?: number
  /** While unsupported, how often to ask again (the cluster may be upgraded). */
  retryUnsupportedMs?: number
  now?: () => number
}

export class TokenVerifier {
  private keys = new Map<string, { key: KeyObject; kty: string; crv?: string }>()
  private state: VerifierMode = 'unknown'
  private fetchedAt = -Infinity
  private inflight: Promise<void> | undefined
  private lastError: string | undefined
  private readonly refreshMs: number
  private readonly retryUnsupportedMs: number
  private readonly now: () => number

  constructor(private readonly o: VerifierOptions) {
    this.refreshMs = o.refreshIntervalMs ?? 10_000
    this.retryUnsupportedMs = o.retryUnsupportedMs ?? 10 * 60_000
    this.now = o.now ?? Date.now
  }

  get mode(): VerifierMode {
    return this.state
  }

  /** A note for /readyz?verbose when tokens cannot be verified locally, else undefined. */
  note(): string | undefined {
    if (this.state === 'unsupported') return 'the apiserver does not serve /openid/v1/jwks: registration tokens are checked by TokenReview alone and share one queue (enable ServiceAccountIssuerDiscovery)'
    if (this.state === 'unknown' && this.lastError) return `cannot read the service-account issuer keys yet: ${this.lastError}`
    return undefined
  }

  /**
   * The token's verified claims; or, when the keys are not available, why not (the caller
   * then relies on TokenReview alone). Throws 401 when the token is not signed by the
   * cluster, not for enlist, or outside its validity.
   */
  async verify(token: string): Promise<Verification> {
    const parts = token.split('.')
    if (parts.length !== 3) throw unauthenticated('token is not a JWT')
    const header = parseJson(parts[0]!) as { alg?: unknown; kid?: unknown } | undefined
    if (!header || typeof header.alg !== 'string' || !(header.alg in ALGORITHMS)) throw unauthenticated('token is not signed with an algorithm the apiserver uses')
    const kid = typeof header.kid === 'string' ? header.kid : ''

    await this.load(false)
    if (this.state !== 'jwks') return { why: this.state === 'unsupported' ? 'unsupported' : 'unavailable' }
    // A kid enlist has not seen: keys rotate, so ask again, at a bounded rate.
    if (!this.keys.has(kid)) await this.load(true)
    const jwk = this.keys.get(kid)
    if (!jwk) throw unauthenticated('token is not signed by a key of this cluster\'s service-account issuer')

    const alg = ALGORITHMS[header.alg]!
    if (alg.kty !== jwk.kty || (alg.crv && alg.crv !== jwk.crv)) throw unauthenticated('token\'s algorithm does not match its key')
    const data = Buffer.from(`${parts[0]}.${parts[1]}`)
    const sig = Buffer.from(parts[2]!, 'base64url')
    let ok = false
    try {
      ok = verify(alg.hash, data, alg.kty === 'EC' ? { key: jwk.key, dsaEncoding: 'ieee-p1363' } : jwk.key, sig)
    } catch {
      ok = false
    }
    if (!ok) throw unauthenticated('token signature does not verify against this cluster\'s service-account issuer keys')
    return { verified: claimsOf(parseJson(parts[1]!), this.now()) }
  }

  /** Reads the keys now if never read, or when `refresh` and the last read is old enough. */
  private async load(refresh: boolean): Promise<void> {
    const now = this.now()
    const due =
      this.state === 'unknown' ? now - this.fetchedAt >= Math.min(this.refreshMs, 1000) : this.state === 'unsupported' ? now - this.fetchedAt >= this.retryUnsupportedMs : refresh && now - this.fetchedAt >= this.refreshMs
    if (!due) return
    this.inflight ??= this.fetch().finally(() => {
      this.inflight = undefined
    })
    await this.inflight
  }

  private async fetch(): Promise<void> {
    this.fetchedAt = this.now()
    let doc: unknown
    try {
      doc = await this.o.fetchKeys()
    } catch (err) {
      if (err instanceof KubeApiError && (err.status === 404 || err.status === 403)) {
        if (this.state !== 'unsupported') this.o.log.warn({ status: err.status }, 'the apiserver does not serve /openid/v1/jwks: registration tokens are checked by TokenReview alone, in one shared queue')
        this.state = 'unsupported'
        this.keys.clear()
        return
      }
      // Unreachable for now: keep the keys we hold (or stay unknown) and try again later.
      this.lastError = errorMessage(err)
      this.o.log.warn({ err: this.lastError }, 'cannot read the service-account issuer keys; keeping what is held')
      return
    }
    const keys = parseJwks(doc)
    if (keys.size === 0) {
      this.lastError = 'the issuer publishes no usable key'
      this.o.log.warn('the apiserver\'s /openid/v1/jwks holds no RSA or EC key enlist can use')
      return
    }
    if (this.state !== 'jwks') this.o.log.info({ keys: keys.size }, 'verifying registration tokens against the service-account issuer keys')
    this.keys = keys
    this.state = 'jwks'
    this.lastError = undefined
  }
}

/** The issuer's keys by kid; keys enlist cannot use are left out. */
export function parseJwks(doc: unknown): Map<string, { key: KeyObject; kty: string; crv?: string }> {
  const out = new Map<string, { key: KeyObject; kty: string; crv?: string }>()
  const list = (doc as { keys?: unknown } | undefined)?.keys
  if (!Array.isArray(list)) return out
  for (const k of list.slice(0, 100) as Array<JsonWebKey & { kid?: unknown; use?: unknown }>) {
    if (!k || typeof k !== 'object' || (k.kty !== 'RSA' && k.kty !== 'EC') || (k.use !== undefined && k.use !== 'sig')) continue
    try {
      const key = createPublicKey({ key: k, format: 'jwk' })
      out.set(typeof k.kid === 'string' ? k.kid : '', { key, kty: k.kty, crv: typeof k.crv === 'string' ? k.crv : undefined })
    } catch {
      // a key node cannot read is one no token of ours is signed with
    }
  }
  return out
}

/** The pod identity in a verified token's claims, or 401. */
export function claimsOf(claims: unknown, now: number): VerifiedToken {
  const c = claims as
    | {
        aud?: unknown
        exp?: unknown
        nbf?: unknown
        sub?: unknown
        'kubernetes.io'?: { namespace?: unknown; pod?: { name?: unknown; uid?: unknown }; serviceaccount?: { name?: unknown } }
      }
    | undefined
  if (!c || typeof c !== 'object') throw unauthenticated('token claims are not an object')
  const aud = typeof c.aud === 'string' ? [c.aud] : Array.isArray(c.aud) ? c.aud : []
  if (!aud.includes(TOKEN_AUDIENCE)) throw unauthenticated(`token is not for audience ${TOKEN_AUDIENCE}`)
  if (typeof c.exp !== 'number' || c.exp * 1000 < now - CLOCK_SKEW_MS) throw unauthenticated('token has expired')
  if (typeof c.nbf === 'number' && c.nbf * 1000 > now + CLOCK_SKEW_MS) throw unauthenticated('token is not valid yet')
  const k = c['kubernetes.io']
  const ns = k?.namespace
  const sa = k?.serviceaccount?.name
  const pod = k?.pod?.name
  const uid = k?.pod?.uid
  if (typeof ns !== 'string' || typeof sa !== 'string' || c.sub !== `system:serviceaccount:${ns}:${sa}`) throw unauthenticated('token is not a service-account token')
  if (typeof pod !== 'string' || typeof uid !== 'string' || !pod || !uid) throw unauthenticated('token is not bound to a pod: use the projected token volume enlist injects')
  return { namespace: ns, serviceAccount: sa, pod, uid, expires: c.exp * 1000 }
}

/** The JWKS as the apiserver serves it to enlist's service account. */
export function kubeJwks(client: KubeClient): () => Promise<unknown> {
  // go-restful answers 406 unless the JWKS media type is accepted
  return () => client.request<unknown>('GET', '/openid/v1/jwks', { accept: 'application/jwk-set+json' })
}

function parseJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
}

function unauthenticated(message: string): EnlistError {
  return new EnlistError('ENLIST_UNAUTHENTICATED', message, 401)
}
