// What signs the events of one nats or amqp backend: the ring in the Secret the policy names
// (`signingKeyFromSecret`, read through the SecretReader's short cache, so a rotation is seen
// within its TTL). The safe default: without a readable ring nothing is published, and the
// backend reports why; only `signingKeyFromSecret: ""` publishes unsigned, by the admin's choice.

import { parseKeyRing } from '../../decision/keyring.js'
import { SIGNING_RING_KEY, signature, signingKey } from '../../events/signature.js'
import type { SecretReader } from '../../kube/secrets.js'
import { errorMessage } from '../../lib/errors.js'
import { PublishError } from './backend.js'

export interface Signer {
  /** The `Enlist-Signature` value for `body`; undefined: unsigned by policy. Throws
   *  PublishError (reason no_signing_key) when the ring cannot be had. */
  sign(body: Uint8Array): Promise<string | undefined>
  /** Why nothing can be signed, as last seen; undefined when fine. */
  health(): string | undefined
}

export function secretSigner(secrets: SecretReader, secretName: string): Signer {
  if (secretName === '') return { sign: async () => undefined, health: () => undefined }
  let problem: string | undefined
  let checkedAt = 0
  const load = async () => {
    checkedAt = Date.now()
    try {
      const key = signingKey(parseKeyRing(await secrets.key(secretName, SIGNING_RING_KEY)))
      problem = undefined
      return key
    } catch (err) {
      problem = `signing key: ${errorMessage(err)}; nothing is published unsigned (docs/events.md, "Signatures")`
      throw new PublishError(problem, 'no_signing_key', { cause: err })
    }
  }
  return {
    sign: async (body) => signature(body, await load()),
    health: () => {
      // health() is synchronous: look again in the background (the reader caches briefly)
      if (Date.now() - checkedAt > 10_000) void load().catch(() => undefined)
      return problem
    },
  }
}
