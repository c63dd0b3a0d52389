// Self-managed mode (`enlist serve --self-signed`). The leader keeps the Secret and the
// webhook's caBundle in order, step by step as plan.ts decides; every replica serves the
// certificate from the Secret and picks up each change without a restart.

import { X509Certificate } from 'node:crypto'
import type { V1Secret } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { type CallOptions, type KubeClient, KubeApiError, PatchType } from '../kube/client.js'
import { Cache } from '../kube/cache.js'
import { Reflector } from '../kube/reflector.js'
import { LeaderLoop } from '../manager.js'
import { errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { checkPair, type CertificateProvider, type ServingCertificate } from './provider.js'
import { type CertAction, type CertPolicy, type CertState, planCertificates, splitPem } from './plan.js'
import { createCA, crossSign, issueServing } from './x509.js'

const PUBLISHED_AT = 'enlist.io/ca-next-published-at'

export function stateOf(secret: V1Secret | undefined): CertState {
  const d = (k: string): string | undefined => {
    const v = secret?.data?.[k]
    return v ? Buffer.from(v, 'base64').toString('utf8') : undefined
  }
  const pair = (c: string, k: string) => {
    const cert = d(c)
    const key = d(k)
    return cert && key ? { cert, key } : undefined
  }
  const next = pair('ca-next.crt', 'ca-next.key')
  const publishedAt = Date.parse(secret?.metadata?.annotations?.[PUBLISHED_AT] ?? '')
  return {
    signing: pair('ca-signing.crt', 'ca-signing.key'),
    next: next ? { ...next, publishedAt: Number.isNaN(publishedAt) ? 0 : publishedAt } : undefined,
    bundle: splitPem(d('ca.crt') ?? ''),
    cross: d('ca-cross.crt'),
    serving: pair('tls.crt', 'tls.key'),
  }
}

function secretData(s: CertState): Record<string, string> {
  const b = (v: string) => Buffer.from(v).toString('base64')
  const data: Record<string, string> = { 'ca.crt': b(s.bundle.join('')) }
  if (s.serving) Object.assign(data, { 'tls.crt': b(s.serving.cert), 'tls.key': b(s.serving.key) })
  if (s.signing) Object.assign(data, { 'ca-signing.crt': b(s.signing.cert), 'ca-signing.key': b(s.signing.key) })
  if (s.next) Object.assign(data, { 'ca-next.crt': b(s.next.cert), 'ca-next.key': b(s.next.key) })
  if (s.cross) data['ca-cross.crt'] = b(s.cross)
  return data
}

export interface SelfManagedOptions {
  client: KubeClient
  namespace: string
  secretName: string
  webhookConfiguration: string
  policy: CertPolicy
  intervalMs: number
  log: Logger
  metrics: Metrics
}

/** The leader's side: create, renew and publish. Started and stopped with leadership,
 *  as often as it comes and goes; a stop abandons the apiserver calls in flight. */
export class CertificateAuthority extends LeaderLoop {
  readonly name = 'certificate-authority'

  constructor(private readonly o: SelfManagedOptions) {
    super({ intervalMs: o.intervalMs, log: o.log, what: 'self-managed certificates' })
  }

  private get secretPath(): string {
    return `/api/v1/namespaces/${this.o.namespace}/secrets/${this.o.secretName}`
  }

  async reconcile(signal?: AbortSignal): Promise<void> {
    const opts = { signal }
    let secret = await this.o.client.get<V1Secret>(this.secretPath, undefined, opts).catch((err: unknown) => {
      if (err instanceof KubeApiError && err.notFound) return undefined
      throw err
    })
    let state = stateOf(secret)
    for (let steps = 0; steps < 6; steps++) {
      const action = planCertificates(state, Date.now(), this.o.policy)
      if (!action) break
      this.o.log.info({ action: action.kind, reason: action.reason }, 'self-managed certificates')
      state = await this.apply(action, state)
      secret = await this.write(secret, state, action, opts)
      // publish every trust change before any serving certificate can depend on it
      await this.publishBundle(state.bundle, opts)
    }
    await this.publishBundle(state.bundle, opts)
    if (state.signing) this.o.metrics.tls.caNotAfter = new Date(new X509Certificate(state.signing.cert).validTo)
  }

  private async apply(a: CertAction, s: CertState): Promise<CertState> {
    const p = this.o.policy
    const newCa = () => createCA({ commonName: `enlist-ca-${new Date().toISOString().slice(0, 10)}`, validityMs: p.caValidityMs })
    switch (a.kind) {
      case 'create-ca': {
        // Nothing valid can vouch for a CA made from scratch: no cross-certificate.
        const ca = await newCa()
        return { ...s, signing: { cert: ca.cert, key: ca.key }, next: undefined, bundle: [ca.cert, ...s.bundle], cross: undefined }
      }
      case 'publish-next-ca': {
        const ca = await newCa()
        return { ...s, next: { cert: ca.cert, key: ca.key, publishedAt: Date.now() }, bundle: [ca.cert, ...s.bundle] }
      }
      case 'promote-next-ca': {
        const old = s.signing && new Date(new X509Certificate(s.signing.cert).validTo).getTime() > Date.now() ? s.signing : undefined
        const cross = old ? (await crossSign({ issuer: old, subject: s.next! })).cert : undefined
        return { ...s, signing: { cert: s.next!.cert, key: s.next!.key }, next: undefined, cross }
      }
      case 'issue-serving': {
        const c = await issueServing({ ca: s.signing!, commonName: p.dnsNames[0] ?? 'enlist', dnsNames: p.dnsNames, ipAddresses: p.ipAddresses, validityMs: p.servingValidityMs })
        const cross = s.cross && new Date(new X509Certificate(s.cross).validTo).getTime() > Date.now() ? s.cross : undefined
        return { ...s, cross, serving: { cert: cross ? c.cert + cross : c.cert, key: c.key } }
      }
      case 'prune-bundle':
        return { ...s, bundle: a.keep }
    }
  }

  private async write(prev: V1Secret | undefined, s: CertState, a: CertAction, opts: CallOptions): Promise<V1Secret> {
    const annotations = { ...(prev?.metadata?.annotations ?? {}) }
    if (s.next) annotations[PUBLISHED_AT] = new Date(s.next.publishedAt).toISOString()
    else delete annotations[PUBLISHED_AT]
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      // a Secret's type cannot change: keep what an earlier install made
      type: prev?.type ?? 'Opaque',
      metadata: {
        name: this.o.secretName,
        namespace: this.o.namespace,
        labels: { 'app.kubernetes.io/name': 'enlist', ...(prev?.metadata?.labels ?? {}) },
        annotations,
        ...(prev?.metadata?.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}),
      },
      data: secretData(s),
    }
    // Optimistic concurrency: a conflict means another writer; the next tick starts over.
    const saved = prev
      ? await this.o.client.replace<V1Secret>(this.secretPath, body, opts)
      : await this.o.client.create<V1Secret>(`/api/v1/namespaces/${this.o.namespace}/secrets`, body, undefined, opts)
    this.o.log.info({ secret: `${this.o.namespace}/${this.o.secretName}`, action: a.kind }, 'self-managed certificates: Secret updated')
    return saved
  }

  private async publishBundle(bundle: string[], opts: CallOptions = {}): Promise<void> {
    const want = Buffer.from(bundle.join('')).toString('base64')
    const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${this.o.webhookConfiguration}`
    const cfg = await this.o.client.get<{ webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }> }>(path, undefined, opts)
    const ops: unknown[] = []
    ;(cfg.webhooks ?? []).forEach((w, i) => {
      if (w.clientConfig?.caBundle === want) return
      ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name }, { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: want })
    })
    if (ops.length === 0) return
    await this.o.client.patch(path, ops, PatchType.json, undefined, opts)
    this.o.log.info({ webhookConfiguration: this.o.webhookConfiguration, cas: bundle.length }, 'self-managed certificates: caBundle published')
  }
}

/** Every replica's side: the serving certificate from the Secret, live. */
export class SecretCertificates extends Cache implements CertificateProvider {
  readonly name = 'certificate'
  readonly reflector: Reflector<V1Secret>
  private cur: ServingCertificate | undefined
  private readonly listeners: Array<(c: ServingCertificate) => void> = []
  private readyWaiters: Array<() => void> = []

  constructor(
    client: KubeClient,
    namespace: string,
    private readonly secretName: string,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    super()
    const name = secretName
    this.reflector = new Reflector<V1Secret>({
      client,
      log,
      name: `secret ${namespace}/${name}`,
      path: `/api/v1/namespaces/${namespace}/secrets`,
      fieldSelector: `metadata.name=${name}`,
    })
    const seen = (s: V1Secret): void => this.take(s)
    this.reflector.on({ add: seen, update: seen })
  }

  get current(): ServingCertificate {
    if (!this.cur) throw new Error('no serving certificate yet')
    return this.cur
  }

  get ready(): boolean {
    return this.cur !== undefined
  }

  onChange(fn: (c: ServingCertificate) => void): void {
    this.listeners.push(fn)
  }

  override stop(): Promise<void> {
    for (const w of this.readyWaiters) w()
    return super.stop()
  }

  /** Resolves once the Secret holds a usable certificate. */
  waitUntilReady(): Promise<void> {
    if (this.cur) return Promise.resolve()
    return new Promise((resolve) => this.readyWaiters.push(resolve))
  }

  private take(secret: V1Secret): void {
    const s = stateOf(secret)
    if (!s.serving) return
    if (this.cur && this.cur.cert === s.serving.cert && this.cur.ca === s.bundle.join('')) return
    let next: ServingCertificate
    try {
      next = checkPair(s.serving.cert, s.serving.key, s.bundle.join(''), `secret ${this.secretName}`)
    } catch (err) {
      this.metrics.tlsReloads.inc({ result: 'invalid' })
      this.log.error({ err: errorMessage(err) }, 'the TLS Secret holds an unusable certificate; still serving the previous one')
      return
    }
    const first = !this.cur
    this.cur = next
    this.metrics.tls.notAfter = next.notAfter
    this.metrics.tlsReloads.inc({ result: 'ok' })
    this.log.info({ notAfter: next.notAfter.toISOString(), cas: s.bundle.length }, first ? 'serving certificate loaded from the Secret' : 'serving certificate reloaded from the Secret')
    if (first) {
      for (const w of this.readyWaiters) w()
      this.readyWaiters = []
    } else for (const l of this.listeners) l(next)
  }
}
