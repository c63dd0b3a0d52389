// Credentials: kubeconfig variants, merging, relative paths, in-cluster, and the hand-off
// to client-node for exec plugins.
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
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

t.test('a missing kubeconfig is named as missing, not as one without a current-context', async (t) => {
  await t.rejects(loadCredentials(join(dir, 'nope')), { code: 'ENLIST_OPTION_INVALID', message: `--kubeconfig: ${join(dir, 'nope')}: no such file` })
  await t.rejects(loadCredentials(undefined, { KUBECONFIG: `${join(dir, 'nope1')}:${join(dir, 'nope2')}` }), /KUBECONFIG: none of its files exists/)
  await t.rejects(fromKubeconfigFiles([write('k', kubeconfig('{server: "https://x"}', '{client-certificate-data: Q0VSVA==}'))]), /client certificate without its key/)
})

t.test('impersonation, as kubectl sends it', async (t) => {
  const c = await fromKubeconfigFiles([write('imp', kubeconfig('{server: "https://x"}', '{token: t, as: alice, as-uid: "42", as-groups: [devs, ops], as-user-extra: {scopes: [a, b]}}'))])
  t.same(c.headers, { 'Impersonate-User': 'alice', 'Impersonate-Uid': '42', 'Impersonate-Group': ['devs', 'ops'], 'Impersonate-Extra-scopes': ['a', 'b'] })
  t.notOk(c.connection, 'read directly, no client-node')
})

t.test('a rotated token file is read again: when it changes, and at once after a 401', async (t) => {
  const { TokenFile } = await import('../../src/kube/credentials.js')
  const { renameSync } = await import('node:fs')
  const path = write('rot-token', 'first\n')
  let now = 1_000_000
  const tf = new TokenFile(path, () => now)
  t.equal(await tf.header(), 'Bearer first')
  // the kubelet swaps the file atomically
  writeFileSync(`${path}.new`, 'second\n')
  renameSync(`${path}.new`, path)
  now += 500
  t.equal(await tf.header(), 'Bearer first', 'not looked at again within a second')
  now += 600
  t.equal(await tf.header(), 'Bearer second', 'a changed file is read again within a second')
  writeFileSync(`${path}.new`, 'third\n')
  renameSync(`${path}.new`, path)
  tf.refresh()
  t.equal(await tf.header(), 'Bearer third', 'after a 401, at once')
  const { rmSync } = await import('node:fs')
  rmSync(path)
  now += 120_000
  t.equal(await tf.header(), 'Bearer third', 'a file that vanished: the last token read stays in use')
})

t.test('the client re-reads a rotated token after a 401 and tries once more', async (t) => {
  const http = await import('node:http')
  const { KubeClient } = await import('../../src/kube/client.js')
  const seen: string[] = []
  let accepted = 'Bearer new'
  const server = http.createServer((req, res) => {
    seen.push(req.headers.authorization ?? '')
    res.writeHead(req.headers.authorization === accepted ? 200 : 401, { 'content-type': 'application/json' })
    res.end(req.headers.authorization === accepted ? '{"major":"1","minor":"30","gitVersion":"v1.30.0"}' : '{"kind":"Status","reason":"Unauthorized","message":"Unauthorized"}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as { port: number }).port
  const tok = write('client-token', 'old')
  const c = await fromKubeconfigFiles([write('tk', kubeconfig(`{server: "http://127.0.0.1:${port}"}`, `{tokenFile: ${tok}}`))])
  const client = new KubeClient(c)
  t.teardown(() => client.close())
  t.equal(await c.authorization(), 'Bearer old')
  writeFileSync(tok, 'new')
  t.equal((await client.version()).minor, 30)
  t.same(seen, ['Bearer old', 'Bearer new'])
  writeFileSync(tok, 'newer')
  accepted = 'Bearer none'
  seen.length = 0
  await t.rejects(client.version(), { status: 401, message: /401/ }, 'a token that stays wrong is refused after one more try')
  t.same(seen, ['Bearer new', 'Bearer newer'])
})

t.test('handed whole to client-node: a proxy-url, an exec plugin with a client certificate, KUBECONFIG merged', async (t) => {
  const https = await import('node:https')
  const http = await import('node:http')
  const net = await import('node:net')
  const { createCA, issueServing } = await import('../../src/certs/x509.js')
  const { KubeClient } = await import('../../src/kube/client.js')
  const ca = await createCA({ commonName: 'kc-ca', validityMs: 3600_000 })
  const serving = await issueServing({ ca, commonName: 'apiserver', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityMs: 3600_000 })
  const client = await issueServing({ ca, commonName: 'exec-user', dnsNames: ['exec-user'], validityMs: 3600_000, clientAuth: true })
  const calls: Array<{ auth?: string; cn?: string }> = []
  const api = https.createServer({ cert: serving.cert, key: serving.key, ca: ca.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate()
    calls.push({ auth: req.headers.authorization, cn: peer?.subject?.CN === undefined ? undefined : String(peer.subject.CN) })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"major":"1","minor":"29","gitVersion":"v1.29.0"}')
  })
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r))
  const apiPort = (api.address() as { port: number }).port
  const connects: string[] = []
  const proxy = http.createServer()
  proxy.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    connects.push(req.url ?? '')
    const [host, port] = (req.url ?? '').split(':')
    const upstream = net.connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(socket)
      socket.pipe(upstream)
    })
    upstream.on('error', () => socket.destroy())
    socket.on('error', () => upstream.destroy())
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  const proxyPort = (proxy.address() as { port: number }).port
  t.teardown(async () => {
    api.closeAllConnections()
    proxy.closeAllConnections()
    await Promise.all([new Promise<void>((r) => api.close(() => r())), new Promise<void>((r) => proxy.close(() => r()))])
  })
  const cluster = `{server: "https://127.0.0.1:${apiPort}", certificate-authority-data: ${b64(ca.cert)}}`

  const viaProxy = await fromKubeconfigFiles([write('px', kubeconfig(`{server: "https://127.0.0.1:${apiPort}", certificate-authority-data: ${b64(ca.cert)}, proxy-url: "http://127.0.0.1:${proxyPort}"}`, '{token: through-proxy}'))])
  t.match(viaProxy.source, /via client-node/)
  const c1 = new KubeClient(viaProxy)
  t.equal((await c1.version()).minor, 29)
  c1.close()
  t.same(connects, [`127.0.0.1:${apiPort}`], 'the request went through the proxy (CONNECT)')
  t.equal(calls.at(-1)?.auth, 'Bearer through-proxy')

  const cred = write('exec-cred.json', JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1beta1', kind: 'ExecCredential', status: { clientCertificateData: client.cert, clientKeyData: client.key } }))
  const plugin = write('exec-cert.sh', `#!/bin/sh\ncat ${cred}\n`)
  const { chmodSync } = await import('node:fs')
  chmodSync(plugin, 0o755)
  // the cluster and context in one file, the user in another: all of KUBECONFIG is read
  const first = write('m1', `current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: ${cluster}\n`)
  const second = write('m2', `users:\n- name: u\n  user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: ${plugin}}}\n- name: other\n  user: {token: x}\n`)
  const third = write('m3', 'users:\n- name: u\n  user: {token: shadowed}\n')
  const execCreds = await loadCredentials(undefined, { KUBECONFIG: `${first}:${second}:${third}` })
  t.match(execCreds.source, /via client-node/)
  const c2 = new KubeClient(execCreds)
  t.equal((await c2.version()).minor, 29)
  c2.close()
  t.same(calls.at(-1), { auth: undefined, cn: 'exec-user' }, "the plugin's client certificate is presented; the same-named user of a later file is ignored")
})
