// The keys that seal admission decisions (HMAC-SHA256), as held in the Secret every
// replica reads. Pure: parsing, which key signs now, and the leader's rotation plan.
//
// A new key is added ahead of its use (activeFrom in the future), so every replica knows
// it before any replica signs with it. An old key is kept while a live pod's decision
// still names it, so a pod whose init container re-runs years later can still register.

import { randomBytes } from 'node:crypto'
import type { ErrorCode } from '../lib/errors.js'

export interface DecisionKey {
  /** Named in every seal it makes; letters, digits and '-'. */
  id: string
  secret: Buffer
  createdAt: number
  /** Replicas sign with the newest key whose activeFrom has passed. */
  activeFrom: number
}

export interface KeyRing {
  readonly keys: readonly DecisionKey[]
}

/** The Secret key holding the ring as JSON. */
export const KEYRING_KEY = 'keyring.json'
export const MIN_SECRET_BYTES = 32
const KEY_ID = /^[a-z0-9][a-z0-9-]{0,62}$/

export class KeyRingError extends Error {
  readonly code = 'ENLIST_KEYRING_INVALID' satisfies ErrorCode
  constructor(message: string) {
    super(message)
    this.name = 'KeyRingError'
  }
}

interface KeyJson {
  id: string
  secret: string
  createdAt: string
  activeFrom: string
}

export function parseKeyRing(text: string): KeyRing {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new KeyRingError(`${KEYRING_KEY} is not JSON: ${(err as Error).message}`)
  }
  const list = (doc as { keys?: unknown } | null)?.keys
  if (!Array.isArray(list)) throw new KeyRingError(`${KEYRING_KEY} must be {"keys": [...]}`)
  const keys: DecisionKey[] = []
  const seen = new Set<string>()
  list.forEach((k: unknown, i) => {
    const e = k as Partial<KeyJson> | null
    const where = `${KEYRING_KEY} keys[${i}]`
    if (typeof e?.id !== 'string' || !KEY_ID.test(e.id)) throw new KeyRingError(`${where}: id must be lowercase letters, digits and '-' (at most 63)`)
    if (seen.has(e.id)) throw new KeyRingError(`${where}: duplicate id ${e.id}`)
    seen.add(e.id)
    const secret = typeof e.secret === 'string' ? Buffer.from(e.secret, 'base64') : Buffer.alloc(0)
    if (secret.length < MIN_SECRET_BYTES) throw new KeyRingError(`${where} (${e.id}): secret must be base64 of at least ${MIN_SECRET_BYTES} bytes`)
    const createdAt = Date.parse(String(e.createdAt))
    const activeFrom = Date.parse(String(e.activeFrom))
    if (Number.isNaN(createdAt) || Number.isNaN(activeFrom)) throw new KeyRingError(`${where} (${e.id}): createdAt and activeFrom must be RFC 3339 times`)
    keys.push({ id: e.id, secret, createdAt, activeFrom })
  })
  return { keys }
}

export function formatKeyRing(ring: KeyRing): string {
  const keys: KeyJson[] = ring.keys.map((k) => ({
    id: k.id,
    secret: k.secret.toString('base64'),
    createdAt: new Date(k.createdAt).toISOString(),
    activeFrom: new Date(k.activeFrom).toISOString(),
  }))
  return JSON.stringify({ keys }, null, 2) + '\n'
}

/** The key replicas sign with now: the newest one already active. */
export function activeKey(ring: KeyRing, now: number): DecisionKey | undefined {
  let best: DecisionKey | undefined
  for (const k of ring.keys) if (k.activeFrom <= now && (!best || k.activeFrom > best.activeFrom)) best = k
  return best
}

export function keyById(ring: KeyRing, id: string): DecisionKey | undefined {
  return ring.keys.find((k) => k.id === id)
}

export function newKey(now: number, activeFrom: number): DecisionKey {
  const stamp = new Date(now).toISOString().replace(/[-:TZ.]/g, '').slice(0, 14)
  return { id: `k${stamp}-${randomBytes(3).toString('hex')}`, secret: randomBytes(MIN_SECRET_BYTES), createdAt: now, activeFrom }
}

export interface RotationPolicy {
  /** A new key is made when the active one is this old. */
  rotateAfterMs: number
  /** Between a key's creation and its first use: time for every replica to see it. */
  propagationMs: number
  /** A key no live pod names is kept at least this long after it stopped signing. */
  retainMs: number
}

export type RotationStep =
  | { action: 'none' }
  | { action: 'write'; ring: KeyRing; reason: string; added?: string; removed: string[] }

/**
 * What the leader should do now. `referenced` is every key id named by a live managed
 * pod's decision: such keys are never removed, whatever their age.
 */
export function planRotation(ring: KeyRing | undefined, now: number, p: RotationPolicy, referenced: ReadonlySet<string>): RotationStep {
  // No ring yet: the first key signs at once (nothing can have been signed before it).
  if (!ring || ring.keys.length === 0) {
    const k = newKey(now, now)
    return { action: 'write', ring: { keys: [k] }, reason: 'no decision key yet', added: k.id, removed: [] }
  }
  let keys = [...ring.keys]
  let added: string | undefined
  let reason = ''
  const active = activeKey(ring, now)
  const pending = keys.some((k) => k.activeFrom > now)
  if (!pending && (!active || now - active.activeFrom >= p.rotateAfterMs)) {
    const k = newKey(now, now + p.propagationMs)
    keys.push(k)
    added = k.id
    reason = active ? `key ${active.id} is due for rotation` : 'no key is active'
  }
  // A key stopped signing when a newer one became active.
  const current = activeKey({ keys }, now)
  const removed: string[] = []
  keys = keys.filter((k) => {
    if (k === current || k.activeFrom > now || referenced.has(k.id)) return true
    const successor = keys.filter((o) => o.activeFrom > k.activeFrom && o.activeFrom <= now).sort((a, b) => a.activeFrom - b.activeFrom)[0]
    if (!successor || now - successor.activeFrom < p.retainMs) return true
    removed.push(k.id)
    return false
  })
  if (!added && removed.length === 0) return { action: 'none' }
  if (removed.length > 0) reason = reason ? `${reason}; retired ${removed.join(', ')}` : `retired ${removed.join(', ')}: no live pod names them`
  return { action: 'write', ring: { keys }, reason, ...(added ? { added } : {}), removed }
}
