// Event signatures on enlist's side (issue 24): the ring from the policy's Secret signs the
// exact body bytes; without a readable ring nothing is published and health says why; an
// event too large for a ledger shard is refused before the ledger is written.
import t from 'tap'
import { Registry } from 'prom-client'
import { formatKeyRing } from '../../src/decision/keyring.js'
import { encodeEvent, registeredEvent, type RegistrationEvent } from '../../src/events/envelope.js'
import { parseSignature, signature, verify } from '../../src/events/signature.js'
import { SecretError, type SecretReader } from '../../src/kube/secrets.js'
import { silentLogger } from '../../src/log.js'
import { EventBackend, type Ledger, type LedgerEntry, MAX_EVENT_BYTES, PublishError } from '../../src/registry/events/backend.js'
import { eventMetrics } from '../../src/registry/events/metrics.js'
import { secretSigner } from '../../src/registry/events/signer.js'
import type { RegistryRecord } from '../../src/registry/record.js'

const KEY = { id: 'k1', secret: Buffer.alloc(32, 7), createdAt: 0, activeFrom: 0 }
const secrets = (data: Record<string, Record<string, string>>): SecretReader =>
  ({
    namespace: 'enlist-system',
    key: async (name: string, key: string) => {
      const s = data[name]
      if (!s) throw new SecretError(`Secret enlist-system/${name} not found`, false)
      const v = s[key]
      if (v === undefined) throw new SecretError(`Secret enlist-system/${name} has no key "${key}"`, false)
      return v
    },
  }) as unknown as SecretReader

const rec = (metadata: Record<string, string> = {}): RegistryRecord => ({ uid: '6f1c2f0e-8d3a-4c55-9b1e-0c0ffee00001', namespace: 'shop', pod: 'p', service: 'orders', ip: '10.0.0.1', ips: ['10.0.0.1'], hostIP: 'h', node: 'n', ports: [], metadata, registeredAt: '2026-11-23T10:00:00Z', advertised: { mode: 'podIP', address: '10.0.0.1', ports: [] }, cluster: 'a' })

t.test('the signature is an HMAC-SHA256 of the exact body bytes, in Enlist-Signature', async (t) => {
  const body = encodeEvent(registeredEvent('/a', rec()))
  const header = signature(body, KEY)
  t.match(header, /^keyid=k1,sig=[A-Za-z0-9+/]{43}=$/)
  t.same(parseSignature(header)?.keyid, 'k1')
  const ring = { keys: [KEY] }
  t.match(verify(body, header, ring, 'a'), { ok: true })
  // the same JSON with other whitespace is another body: no canonical form, no ambiguity
  const reformatted = Buffer.from(JSON.stringify(JSON.parse(body.toString()), null, 1))
  t.match(verify(reformatted, header, ring, 'a'), { ok: false, reason: 'bad_signature' })
  t.match(verify(body, undefined, ring, 'a'), { ok: false, reason: 'unsigned' })
  t.match(verify(body, header, undefined, undefined), { ok: false, message: 'the relay has no signing keys for unmarked events (no data.cluster)' })
})

t.test('enlist signs with the newest active key of its Secret; without one nothing is signed, and health says why', async (t) => {
  const ring = { keys: [KEY, { id: 'k2', secret: Buffer.alloc(32, 8), createdAt: 0, activeFrom: Date.now() + 3_600_000 }] }
  const signer = secretSigner(secrets({ 'enlist-event-signing-key': { 'keyring.json': formatKeyRing(ring) } }), 'enlist-event-signing-key')
  const body = Buffer.from('{"id":"x"}')
  t.equal(await signer.sign(body), signature(body, KEY), 'k2 is not active yet: k1 signs')
  t.equal(signer.health(), undefined)

  const missing = secretSigner(secrets({}), 'enlist-event-signing-key')
  await t.rejects(missing.sign(body), PublishError)
  await t.rejects(missing.sign(body), { reason: 'no_signing_key', message: /^signing key: Secret enlist-system\/enlist-event-signing-key not found; nothing is published unsigned/ })
  t.match(missing.health(), /Secret enlist-system\/enlist-event-signing-key not found/)
  const broken = secretSigner(secrets({ 'enlist-event-signing-key': { 'keyring.json': '{"keys":[]}' } }), 'enlist-event-signing-key')
  await t.rejects(broken.sign(body), { message: /no key of the ring is active yet/ })
  const unsigned = secretSigner(secrets({}), '')
  t.equal(await unsigned.sign(body), undefined, 'signingKeyFromSecret: "" publishes unsigned, by the policy\'s choice')
})

function memoryLedger(): Ledger & { map: Map<string, LedgerEntry> } {
  const map = new Map<string, LedgerEntry>()
  return { map, get: async (u) => map.get(u), put: async (u, e) => void map.set(u, e), remove: async (u) => void map.delete(u), list: async () => [...map].map(([uid, entry]) => ({ uid, entry })) }
}

t.test('an event too large for a ledger shard is refused before the ledger is written; the backend reports a missing signing key', async (t) => {
  const published: RegistrationEvent[] = []
  const ledger = memoryLedger()
  let signerProblem: string | undefined = 'signing key: Secret enlist-system/enlist-event-signing-key not found'
  const backend = new EventBackend({
    name: 'events',
    type: 'amqp',
    source: '/a',
    cluster: 'a',
    broker: { publish: async (e) => (published.push(e), { duplicate: false }), health: () => undefined, close: async () => undefined },
    ledger,
    metrics: eventMetrics(new Registry()),
    log: silentLogger(),
    signerHealth: () => signerProblem,
  })
  t.match(backend.health(), /signing key: Secret enlist-system\/enlist-event-signing-key not found/, 'a clear health problem')
  signerProblem = undefined
  t.equal(backend.health(), undefined)

  // 200 KB of metadata: about 5 such pods would fill a 900 KiB shard
  await t.rejects(backend.register(rec({ blob: 'x'.repeat(200_000) })), { retryable: false, message: new RegExp(`would be \\d+ bytes, over the ${MAX_EVENT_BYTES} an event may carry: reduce its metadata`) })
  t.equal(ledger.map.size, 0, 'nothing written to the ledger')
  t.same(published, [], 'nothing published')
  await backend.register(rec({ interface: 'com.acme.Orders' }))
  t.equal(ledger.map.size, 1, 'an ordinary record passes')
})
