// `enlist certs` (what `make certs` runs): a CA and an ECDSA P-256 serving certificate for
// the enlist Service, kept in certs/, and written as the Secret and caBundle patch of
// manifests/overlays/certs. An existing CA in certs/ is reused, so re-running renews only the
// serving certificate and the webhook's trust does not change.

import { X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { createCA, issueServing } from '../certs/x509.js'
import { OptionError } from '../lib/errors.js'
import { isDns1123Label } from '../lib/validation.js'
import { INSTALL_NAMESPACE, WEBHOOK_NAMES } from '../names.js'
import { type FlagSpecs, helpText, parseFlags } from './flags.js'

const certsFlags = {
  'out-dir': { kind: 'string', default: 'certs', help: 'where the CA and certificate live: ca.crt, ca.key, tls.crt, tls.key' },
  overlay: { kind: 'string', default: 'manifests/overlays/certs', help: 'the overlay that gets generated/secret.yaml and generated/cabundle.yaml' },
  namespace: { kind: 'string', default: INSTALL_NAMESPACE, help: 'namespace of the enlist Service' },
  service: { kind: 'string', default: 'enlist', help: 'name of the enlist Service' },
  'ip-addresses': { kind: 'list', default: '127.0.0.1', help: 'IP addresses in the certificate (127.0.0.1 for local use)' },
  validity: { kind: 'duration', default: '8760h', min: 3_600_000, help: 'serving certificate lifetime' },
  'ca-validity': { kind: 'duration', default: '87600h', min: 3_600_000, help: 'CA lifetime, when a new CA is made' },
  'new-ca': { kind: 'bool', default: 'false', help: 'make a new CA even if the output directory has one' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export async function certsCommand(argv: readonly string[]): Promise<number> {
  const o = parseFlags(certsFlags, argv)
  if (o.help) {
    console.log(helpText('certs [flags]', 'Make a CA and a serving certificate for manifests/overlays/certs.', certsFlags))
    return 0
  }
  for (const [flag, v] of [['--namespace', o.namespace], ['--service', o.service]] as const) {
    if (!isDns1123Label(v)) throw new OptionError(`${flag}: ${JSON.stringify(v)} is not a DNS-1123 label`)
  }
  const dir = o['out-dir']
  const generated = join(o.overlay, 'generated')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  mkdirSync(generated, { recursive: true, mode: 0o700 })
  const caCrt = join(dir, 'ca.crt')
  const caKey = join(dir, 'ca.key')

  let ca: { cert: string; key: string }
  if (!o['new-ca'] && existsSync(caCrt) && existsSync(caKey) && new Date(new X509Certificate(readFileSync(caCrt, 'utf8')).validTo).getTime() > Date.now() + o.validity) {
    ca = { cert: readFileSync(caCrt, 'utf8'), key: readFileSync(caKey, 'utf8') }
    console.error(`reusing the CA in ${caCrt}`)
  } else {
    ca = await createCA({ commonName: `${o.service}-ca`, validityMs: o['ca-validity'] })
    writeFileSync(caCrt, ca.cert)
    writeFileSync(caKey, ca.key, { mode: 0o600 })
    console.error(`made a new CA: ${caCrt}`)
  }
  const svc = `${o.service}.${o.namespace}`
  const dnsNames = [`${svc}.svc`, `${svc}.svc.cluster.local`, svc, o.service, 'localhost']
  const serving = await issueServing({ ca, commonName: `${svc}.svc`, dnsNames, ipAddresses: o['ip-addresses'], validityMs: o.validity })
  writeFileSync(join(dir, 'tls.crt'), serving.cert)
  writeFileSync(join(dir, 'tls.key'), serving.key, { mode: 0o600 })

  const b64 = (s: string) => Buffer.from(s).toString('base64')
  writeFileSync(
    join(generated, 'secret.yaml'),
    `# made by enlist certs; holds a private key: keep it out of version control\n` +
      stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: { name: 'enlist-tls', namespace: o.namespace, labels: { 'app.kubernetes.io/name': 'enlist', 'app.kubernetes.io/component': 'certificates' } },
        data: { 'tls.crt': b64(serving.cert), 'tls.key': b64(serving.key), 'ca.crt': b64(ca.cert) },
      }),
    { mode: 0o600 },
  )
  const ops = WEBHOOK_NAMES.flatMap((name, i) => [
    { op: 'test', path: `/webhooks/${i}/name`, value: name },
    { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: b64(ca.cert) },
  ])
  writeFileSync(join(generated, 'cabundle.yaml'), `# made by enlist certs: the webhook trusts this CA\n${stringify(ops)}`)
  console.error(`serving certificate for ${dnsNames.join(', ')}, ${o['ip-addresses'].join(', ')}; valid until ${serving.notAfter.toISOString()}`)
  console.error(`wrote ${dir}/{ca.crt,ca.key,tls.crt,tls.key} and ${generated}/{secret.yaml,cabundle.yaml}`)
  console.error('next: kubectl apply -k manifests/overlays/certs')
  return 0
}
