// Event signing keys for end-to-end tests: the Secret enlist signs with (the base Role lets its
// service account read it), and the relay's keys directory.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { formatKeyRing, newKey } from '../../src/decision/keyring.js'
import { DEFAULT_SIGNING_SECRET, SIGNING_RING_KEY } from '../../src/events/signature.js'
import type { ControlPlane } from '../harness/control-plane.js'
import { tempDir } from './temp.js'

export async function installSigningKey(cp: ControlPlane, cluster: string): Promise<{ dir: string }> {
  const now = Date.now()
  const ring = formatKeyRing({ keys: [newKey(now, now - 1000)] })
  const ns = '/api/v1/namespaces/enlist-system'
  await cp.client.create(`${ns}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: DEFAULT_SIGNING_SECRET }, stringData: { [SIGNING_RING_KEY]: ring } })
  // what the admin mounts into the relay: the cluster's keyring.json as <cluster>.json
  const dir = join(tempDir('enlist-relay-signing-'), 'keys')
  mkdirSync(dir)
  writeFileSync(join(dir, `${cluster}.json`), ring)
  return { dir }
}
