// Self-managed mode on a real control plane, with lifetimes short enough to watch: the
// serving certificate renews every few seconds and the CA rotates, while the apiserver
// keeps creating pods through the webhook. None may fail, and every replica follows.
import t from 'tap'
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { controlPlaneFor } from '../harness/control-plane.js'
import { enlistFor, metricValue } from '../harness/enlist.js'
import { podsPath } from '../../src/kube/pod-ref.js'
import { podManifest } from '../harness/k8s.js'
import { waitFor } from '../harness/processes.js'

const cp = await controlPlaneFor(t)
const common = [
  '--self-signed',
  '--cert-ip-addresses=127.0.0.1',
  '--cert-validity=12s',
  '--ca-validity=36s',
  '--ca-overlap=3s',
  '--cert-check-interval=500ms',
  '--lease-duration=4s',
  '--renew-deadline=3s',
  '--retry-period=500ms',
]
const a = await enlistFor(t, cp, { manifests: 'manifests/overlays/self-managed', selfSigned: true, args: [...common, '--identity=replica-a'] })
const b = await enlistFor(t, cp, { install: false, selfSigned: true, pki: a.pki, args: [...common, '--identity=replica-b'], optIn: ['shop'] })

const secret = async () => {
  const s = await cp.client.get<{ data: Record<string, string> }>('/api/v1/namespaces/enlist-system/secrets/enlist-tls')
  const d = (k: string) => Buffer.from(s.data[k] ?? '', 'base64').toString()
  return { ca: d('ca.crt'), signing: d('ca-signing.crt'), serving: d('tls.crt') }
}
const served = (port: number) =>
  new Promise<string>((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = sock.getPeerCertificate().serialNumber
      sock.end()
      resolve(serial)
    })
    sock.on('error', reject)
  })
const webhookBundle = async () => {
  const cfg = await cp.client.get<{ webhooks: Array<{ clientConfig: { caBundle: string } }> }>('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/enlist')
  return cfg.webhooks.map((w) => Buffer.from(w.clientConfig.caBundle, 'base64').toString())
}

t.test('the leader made the CA and certificate and published the CA', async (t) => {
  const s = await secret()
  t.ok(new X509Certificate(s.serving).checkIssued(new X509Certificate(s.signing)))
  t.match(new X509Certificate(s.serving).subjectAltName, /DNS:enlist\.enlist-system\.svc.*IP Address:127\.0\.0\.1/)
  for (const bundle of await webhookBundle()) t.equal(bundle, s.ca, 'every webhook entry trusts the bundle')
})

t.test('rotations while pods are created: none fails, every replica follows', async (t) => {
  const failures: string[] = []
  const servingSerials = new Set<string>()
  const signingCas = new Set<string>()
  const seenBy = { a: new Set<string>(), b: new Set<string>() }
  let created = 0
  let latestSerial: string | undefined
  const createdUnder = new Set<string>()
  let stop = false
  const creating = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        const during = latestSerial
        await cp.client.create(podsPath('shop'), podManifest(`p-${i}`))
        created++
        // the certificate current when the creation began and still when it ended: the pod went
        // through the webhook while that certificate was being served
        if (during && during === latestSerial) createdUnder.add(during)
      } catch (err) {
        failures.push(`pod p-${i}: ${(err as Error).message}`)
      }
      await new Promise((r) => setTimeout(r, 150))
    }
  })()
  const watching = (async () => {
    while (!stop) {
      const s = await secret()
      latestSerial = new X509Certificate(s.serving).serialNumber
      servingSerials.add(latestSerial)
      signingCas.add(new X509Certificate(s.signing).fingerprint256)
      seenBy.a.add(await served(a.port))
      seenBy.b.add(await served(b.port))
      await new Promise((r) => setTimeout(r, 250))
    }
  })()
  await new Promise((r) => setTimeout(r, 40_000))
  stop = true
  await Promise.all([creating, watching])

  t.same(failures, [], 'no pod creation failed')
  // not a count a busy machine may not reach in 40 s: pods created through the webhook under
  // (at least) four of the serving certificates the rotation went through
  t.ok(createdUnder.size >= 4, `${created} pods created through the webhook, under ${createdUnder.size} of the ${servingSerials.size} serving certificates`)
  t.ok(servingSerials.size >= 4, `${servingSerials.size} serving certificates in 40 s`)
  t.ok(signingCas.size >= 2, `${signingCas.size} CAs: the CA rotated`)
  for (const [name, seen] of Object.entries(seenBy)) {
    t.ok(seen.size >= 3, `replica ${name} served ${seen.size} certificates without a restart`)
  }
  // (renewals keep coming every few seconds: a match within one renewal period is the proof)
  await waitFor('replica b to serve the Secret\'s certificate', async () => (await served(b.port)) === new X509Certificate((await secret()).serving).serialNumber, 8000, 100)
  t.pass('the follower serves what the Secret holds')
  const bundle = (await secret()).ca
  for (const b64 of await webhookBundle()) t.equal(b64, bundle, 'the webhook trusts the current bundle')
})

t.test('the leader exports when its certificates expire', async (t) => {
  const m = await a.metrics()
  t.match(m, /enlist_tls_certificate_expiry_seconds \d/)
  const leaderMetrics = metricValue(m, 'enlist_leader') === 1 ? m : await b.metrics()
  t.match(leaderMetrics, /enlist_ca_certificate_expiry_seconds \d/)
})
