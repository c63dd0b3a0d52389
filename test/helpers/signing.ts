// Event signing keys for end-to-end tests: the Secret enlist signs with (and a Role letting
// its service account read it, whatever the base Role names), and the relay's keys directory.
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
  const rbac = '/apis/rbac.authorization.k8s.io/v1/namespaces/enlist-system'
  const name = 'enlist-event-signing-key-reader'
  await cp.client.create(`${rbac}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name }, rules: [{ apiGroups: [''], resources: ['secrets'], resourceNames: [DEFAULT_SIGNING_SECRET], verbs: ['get'] }] })
  await cp.client.create(`${rbac}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    subjects: [{ kind: 'ServiceAccount', name: 'enlist', namespace: 'enlist-system' }],
  })
  // what the admin mounts into the relay: the cluster's keyring.json as <cluster>.json
  const dir = join(tempDir('enlist-relay-signing-'), 'keys')
  mkdirSync(dir)
  writeFileSync(join(dir, `${cluster}.json`), ring)
  return { dir }
}
