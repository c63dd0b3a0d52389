// Why a test node could not run, by code: the suite branches on NODE_UNSUPPORTED (fall back
// to the kubelet stand-in), people read the message.

export type NodeErrorCode =
  | 'NODE_UNSUPPORTED' // this machine cannot run a node (no root, no cgroup v1, a binary missing)
  | 'NODE_NETWORK' // the node's namespace, link or routes could not be made
  | 'NODE_START' // containerd, the kubelet or kube-proxy did not come up
  | 'NODE_IMAGE' // an image could not be imported into containerd

export class NodeError extends Error {
  readonly code: NodeErrorCode

  constructor(code: NodeErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'NodeError'
    this.code = code
  }
}
