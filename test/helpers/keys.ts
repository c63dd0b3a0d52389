// Decision keys for tests that run admission or registration without a cluster.

import { type DecisionKey, type KeyRing, newKey } from '../../src/decision/keyring.js'

export function testKeys(now = Date.now()): { ring: KeyRing; signing: DecisionKey } {
  const signing = newKey(now - 1000, now - 1000)
  return { ring: { keys: [signing] }, signing }
}
