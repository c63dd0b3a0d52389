// A second Node that stays healthy: a Node object whose Lease this process renews, cordoned
// so nothing is scheduled there. The node lifecycle controller never evicts the pods of a
// lost node when every node of its zone is lost (it takes that for the control plane losing
// them, "master disruption mode"): a one-node cluster never evicts. With a witness beside
// it, losing the real node is losing one node of two, and eviction proceeds as on any cluster.

import type { ControlPlane } from './control-plane.js'

export interface WitnessNode {
  name: string
  stop(): void
}

export async function startWitnessNode(cp: ControlPlane, name = 'witness', renewMs = 2000): Promise<WitnessNode> {
  await cp.client.create('/api/v1/nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } },
    spec: { unschedulable: true },
  })
  const now = () => new Date().toISOString()
  const microNow = () => new Date().toISOString().replace('Z', '000Z')
  await cp.client.patch(`/api/v1/nodes/${name}/status`, {
    status: {
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'a witness: this test renews its lease', lastHeartbeatTime: now(), lastTransitionTime: now() }],
      addresses: [{ type: 'Hostname', address: name }],
    },
  }, 'application/merge-patch+json')
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`
  await cp.client.create('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name },
    spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microNow() },
  })
  const timer = setInterval(() => {
    void cp.client.patch(leasePath, { spec: { renewTime: microNow() } }, 'application/merge-patch+json').catch(() => undefined)
  }, renewMs)
  return { name, stop: () => clearInterval(timer) }
}
