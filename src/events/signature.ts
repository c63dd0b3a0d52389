// Event signatures (docs/events.md, "Signatures"): enlist signs the exact bytes of each
// message body with HMAC-SHA256 and sends `Enlist-Signature: keyid=<id>,sig=<base64>` as a
// transport header (NATS headers, AMQP headers), so no canonical JSON form is needed: the
// relay checks the bytes it received. Keys are a ring per source cluster in the decision
// keys' format (src/decision/keyring.ts): the newest active key signs, every key in the ring
// verifies, so a rotation adds the new key to the relay before enlist signs with it.

import { createHmac, timingSafeEqual } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { activeKey, type DecisionKey, keyById, type KeyRing, KEYRING_KEY, parseKeyRing } from '../decision/keyring.js'
import { isDns1123Label } from '../lib/validation.js'

export const SIGNATURE_HEADER = 'Enlist-Signature'
/** The policy's default `signingKeyFromSecret`, and its key holding the ring. */
export const DEFAULT_SIGNING_SECRET = 'enlist-event-signing-key'
export const SIGNING_RING_KEY = KEYRING_KEY
/** The relay's file for events without data.cluster (an enlist without cluster.name):
 *  `_` is in no DNS-1123 label, so it is no cluster's name. */
export const UNMARKED_RING_FILE = '_unmarked.json'

export type SigningKey = Pick<DecisionKey, 'id' | 'secret'>

export function signature(body: Uint8Array, key: SigningKey): string {
  return `keyid=${key.id},sig=${createHmac('sha256', key.secret).update(body).digest('base64')}`
}

/** The key enlist signs with now, or why there is none. */
export function signingKey(ring: KeyRing, now = Date.now()): SigningKey {
  const k = activeKey(ring, now)
  if (!k) throw new Error('no key of the ring is active yet (every activeFrom is in the future)')
  return k
}

export function parseSignature(header: string): { keyid: string; sig: Buffer } | undefined {
  const m = /^keyid=([a-z0-9][a-z0-9-]{0,62}),sig=([A-Za-z0-9+/]{43}=)$/.exec(header.trim())
  return m ? { keyid: m[1]!, sig: Buffer.from(m[2]!, 'base64') } : undefined
}

export type Verdict = { ok: true; keyid: string } | { ok: false; reason: 'unsigned' | 'bad_signature'; message: string }

/** Checks `header` against `body` with the ring of the event's source cluster (undefined:
 *  the relay has none for it: nothing it can vouch for). */
export function verify(body: Uint8Array, header: string | undefined, ring: KeyRing | undefined, cluster: string | undefined): Verdict {
  const who = cluster === undefined ? 'unmarked events (no data.cluster)' : `cluster ${cluster}`
  if (header === undefined || header === '') return { ok: false, reason: 'unsigned', message: `no ${SIGNATURE_HEADER} header` }
  const s = parseSignature(header)
  if (!s) return { ok: false, reason: 'bad_signature', message: `the ${SIGNATURE_HEADER} header is not keyid=<id>,sig=<base64 of 32 bytes>` }
  if (!ring) return { ok: false, reason: 'bad_signature', message: `the relay has no signing keys for ${who}` }
  const k = keyById(ring, s.keyid)
  if (!k) return { ok: false, reason: 'bad_signature', message: `key ${s.keyid} is not among ${who}'s signing keys` }
  const want = createHmac('sha256', k.secret).update(body).digest()
  if (!timingSafeEqual(want, s.sig)) return { ok: false, reason: 'bad_signature', message: `the signature does not match the body (key ${s.keyid})` }
  return { ok: true, keyid: s.keyid }
}

/** The relay's rings: a mounted Secret, one file `<cluster>.json` per source cluster (the
 *  content of that cluster's `keyring.json`), `_unmarked.json` for unmarked events. */
export async function readRings(dir: string): Promise<Map<string | undefined, KeyRing>> {
  const out = new Map<string | undefined, KeyRing>()
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out
    throw err
  }
  for (const n of names.sort()) {
    if (n.startsWith('..') || !n.endsWith('.json')) continue // the kubelet's atomic-writer links
    const cluster = n === UNMARKED_RING_FILE ? undefined : n.slice(0, -'.json'.length)
    if (cluster !== undefined && !isDns1123Label(cluster)) throw new Error(`${join(dir, n)}: the file name must be <cluster name>.json or ${UNMARKED_RING_FILE}`)
    try {
      out.set(cluster, parseKeyRing(await readFile(join(dir, n), 'utf8')))
    } catch (err) {
      throw new Error(`${join(dir, n)}: ${(err as Error).message}`, { cause: err })
    }
  }
  return out
}
