// Credentials: kubeconfig variants, merging, relative paths, in-cluster, and the hand-off
// to client-node for exec plugins.
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fromKubeconfigFiles, inClusterCredentials, loadCredentials } from '../../src/kube/credentials.js'
import { tempDir } from '../helpers/temp.js'

const dir = tempDir('enlist-kc-')
const b64 = (s: string) => Buffer.from(s).toString('base64')
const write = (name: string, text: string) => {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}
const kubeconfig = (cluster: string, user: string, current = 'c') => `apiVersion: v1
kind: Config
current-context: ${current}
contexts:
- name: c
  context: {cluster: k, user: u}
clusters:
- name: k
  cluster: ${cluster}
users:
- name: u
  user: ${user}
`

t.test('token and CA data', async (t) => {
  const c = await fromKubeconfigFiles([write('a', kubeconfig(`{server: "https://10.0.0.1:6443", certificate-authority-data: ${b64('CA PEM')}}`, '{token: abc}'))])
  t.equal(c.server.href, 'https://10.0.0.1:6443/')
  t.same(c.tls, { ca: 'CA PEM', cert: undefined, key: undefined, rejectUnauthorized: true, servername: undefined })
  t.equal(await c.authorization(), 'Bearer abc')
})

t.test('files relative to the kubeconfig, client certificates, insecure, SNI', async (t) => {
  mkdirSync(join(dir, 'pki'), { recursive: true })
  write('pki/ca.crt', 'CA')
  write('pki/client.crt', 'CERT')
  write('pki/client.key', 'KEY')
  const c = await fromKubeconfigFiles([
    write('b', kubeconfig('{server: "https://x", certificate-authority: pki/ca.crt, insecure-skip-tls-verify: true, tls-server-name: api.internal}', '{client-certificate: pki/client.crt, client-key: pki/client.key}')),
  ])
  t.same(c.tls, { ca: 'CA', cert: 'CERT', key: 'KEY', rejectUnauthorized: false, servername: 'api.internal' })
  t.equal(await c.authorization(), undefined, 'no header with client certificates')
})

t.test('token files are re-read; basic auth', async (t) => {
  const tok = write('token', 'first\n')
  const c = await fromKubeconfigFiles([write('c', kubeconfig('{server: "https://x"}', `{tokenFile: ${tok}}`))])
  t.equal(await c.authorization(), 'Bearer first')
  const basic = await fromKubeconfigFiles([write('d', kubeconfig('{server: "https://x"}', '{username: admin, password: s3cret}'))])
  t.equal(await basic.authorization(), `Basic ${b64('admin:s3cret')}`)
})

t.test('several files merge as client-go merges them', async (t) => {
  const first = write('e1', 'current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n')
  const second = write('e2', kubeconfig('{server: "https://merged"}', '{token: t2}', 'other'))
  const c = await loadCredentials(undefined, { KUBECONFIG: `${first}:${join(dir, 'missing')}:${second}` })
  t.equal(c.server.href, 'https://merged/')
  t.equal(await c.authorization(), 'Bearer t2')
})

t.test('errors say which file and what is missing', async (t) => {
  await t.rejects(fromKubeconfigFiles([write('f', 'clusters: []\n')]), /has no current-context/)
  await t.rejects(fromKubeconfigFiles([write('g', 'current-context: nope\n')]), /context nope not found/)
  await t.rejects(fromKubeconfigFiles([write('h', kubeconfig('{}', '{}'))]), /cluster k has no server/)
  await t.rejects(fromKubeconfigFiles([write('i', '{{{')]), /is not YAML/)
  await t.rejects(loadCredentials(undefined, { HOME: dir }), { code: 'ENLIST_OPTION_INVALID' })
})

t.test('in-cluster: the service account, the service host', async (t) => {
  const sa = tempDir('enlist-sa-')
  writeFileSync(join(sa, 'token'), 'sa-token')
  writeFileSync(join(sa, 'ca.crt'), 'CLUSTER CA')
  const c = inClusterCredentials(sa, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' })
  t.equal(c.server.href, 'https://10.96.0.1/')
  t.equal(c.tls.ca, 'CLUSTER CA')
  t.equal(await c.authorization(), 'Bearer sa-token')
  t.equal(inClusterCredentials(sa, { KUBERNETES_SERVICE_HOST: 'fd00::1' }).server.host, '[fd00::1]')
  t.throws(() => inClusterCredentials(sa, {}), /not in a cluster/)
})

t.test('exec plugins are handed to client-node', async (t) => {
  const plugin = write('plugin.sh', '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"from-exec"}}\'\n')
  const { chmodSync } = await import('node:fs')
  chmodSync(plugin, 0o755)
  const c = await fromKubeconfigFiles([write('j', kubeconfig('{server: "https://x"}', `{exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: ${plugin}}}`))])
  t.match(c.source, /via client-node/)
  t.equal(await c.authorization(), 'Bearer from-exec')
})
