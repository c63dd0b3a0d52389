// Where the policy comes from: a file or the ConfigMap, both watched live. The store
// only ever swaps in a valid policy; an invalid one is logged, counted and ignored,
// and the last good policy keeps serving.

import { readFile } from 'node:fs/promises'
import type { V1ConfigMap } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import { Cache } from '../kube/cache.js'
import { Reflector } from '../kube/reflector.js'
import { errorMessage, PolicyError } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { POLICY_KEY } from '../names.js'
import { defaultPolicy, loadPolicy, type PolicyDefaults } from './load.js'
import type { CompiledPolicy } from './policy.js'

export class PolicyStore {
  private policy: CompiledPolicy | undefined
  private text: string | undefined
  private gen = 0
  private src = ''
  private readonly listeners: Array<(p: CompiledPolicy) => void> = []
  /** Why the first policy could not load, while there is none. */
  lastError: string | undefined

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Where the policy is silent: enlist's own image for the registrar. */
    private readonly defaults: PolicyDefaults = {},
  ) {}

  get current(): CompiledPolicy | undefined {
    return this.policy
  }

  get generation(): number {
    return this.gen
  }

  get source(): string {
    return this.src
  }

  onChange(fn: (p: CompiledPolicy) => void): void {
    this.listeners.push(fn)
  }

  /** Validates and, if valid, swaps in `text`. Returns whether it took effect. */
  apply(text: string, source: string): boolean {
    if (text === this.text && this.policy) return true
    let next: CompiledPolicy
    try {
      next = loadPolicy(text, source, this.defaults)
      renameError(this.policy, next, source)
    } catch (err) {
      this.reject(err, source)
      return false
    }
    this.text = text
    this.set(next, source)
    return true
  }

  /** Used when the ConfigMap does not exist: the built-in default, said loudly. */
  applyDefault(reason: string): void {
    this.log.warn({ reason }, 'no policy found; serving the built-in default policy (injection only where opted in)')
    this.text = undefined
    this.set(defaultPolicy(this.defaults), 'built-in default')
  }

  reject(err: unknown, source: string): void {
    this.metrics.policyRejected.inc()
    const errors = err instanceof PolicyError ? err.errors : undefined
    const message = errorMessage(err)
    if (!this.policy) this.lastError = message
    this.log.error(
      { source, err: errors ? undefined : message, errors, keeping: this.policy ? this.policy.hash : null },
      this.policy ? 'invalid policy rejected; the last good policy keeps serving' : 'invalid policy rejected; no policy loaded yet',
    )
  }

  private set(next: CompiledPolicy, source: string): void {
    const changed = next.hash !== this.policy?.hash
    this.policy = next
    this.src = source
    this.lastError = undefined
    if (!changed) return
    this.gen++
    this.metrics.policyGeneration.set(this.gen)
    this.metrics.policyInfo.reset()
    this.metrics.policyInfo.set({ hash: next.hash, source }, 1)
    this.metrics.policyLastApplied.set(Date.now() / 1000)
    this.log.info({ source, hash: next.hash, generation: this.gen }, 'policy in effect')
    for (const l of this.listeners) l(next)
  }
}

/** A running cluster keeps its name: its entries in shared backends carry it, and under a
 *  new name they would be another cluster's, never swept again. Renaming is a procedure
 *  (docs/registration.md, "Renaming a cluster"), not a policy edit. */
function renameError(current: CompiledPolicy | undefined, next: CompiledPolicy, source: string): void {
  const was = current?.spec.cluster.name ?? ''
  const now = next.spec.cluster.name
  if (was === '' || was === now) return
  throw new PolicyError(source, [
    {
      path: '/cluster/name',
      message:
        `cannot change from "${was}" to ${JSON.stringify(now)} while enlist runs: this cluster's entries in shared backends carry "${was}" and would be left behind as another cluster's; ` +
        'keep the name, or rename as docs/registration.md "Renaming a cluster" says (the new name adopts the old name\'s entries explicitly)',
    },
  ])
}

/** A runnable (src/manager.ts) feeding a PolicyStore. */
export interface PolicySource {
  readonly name: string
  start(): void
  stop(): Promise<void>
  /** True once a first attempt to read the source has finished. */
  readonly synced: boolean
}

/** A policy file, polled once a second (robust to editors and Secret/ConfigMap volume symlink swaps). */
export class FilePolicySource implements PolicySource {
  readonly name = 'policy-source'
  private timer: NodeJS.Timeout | undefined
  private last: string | undefined
  private syncedFlag = false
  private running: Promise<void> | undefined

  constructor(
    private readonly path: string,
    private readonly store: PolicyStore,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {}

  get synced(): boolean {
    return this.syncedFlag
  }

  /** Reads once; resolves after the first attempt. */
  async load(): Promise<void> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if (this.last !== '\u0000error') {
        this.store.reject(new Error(`cannot read policy file ${this.path}: ${errorMessage(err)}`), this.path)
        this.last = '\u0000error'
      }
      this.syncedFlag = true
      return
    }
    if (text !== this.last) {
      this.last = text
      this.store.apply(text, this.path)
    }
    this.syncedFlag = true
  }

  start(): void {
    if (this.timer) return
    this.running = this.load()
    this.timer = setInterval(() => {
      this.running = this.load().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'policy file poll failed'))
    }, this.intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.running
  }
}

/** The policy ConfigMap, watched: a change takes effect as soon as the event arrives. */
export class ConfigMapPolicySource extends Cache implements PolicySource {
  readonly name = 'policy-source'
  readonly reflector: Reflector<V1ConfigMap>
  private readonly ref: string

  constructor(
    client: KubeClient,
    namespace: string,
    name: string,
    private readonly store: PolicyStore,
    log: Logger,
  ) {
    super()
    this.ref = `${namespace}/${name}`
    this.reflector = new Reflector<V1ConfigMap>({
      client,
      log,
      name: `configmap ${this.ref}`,
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`,
      fieldSelector: `metadata.name=${name}`,
    })
    const onObject = (cm: V1ConfigMap): void => this.applyConfigMap(cm)
    this.reflector.on({
      add: onObject,
      update: onObject,
      delete: () => {
        log.warn({ configmap: this.ref }, 'policy ConfigMap deleted; the last good policy keeps serving')
      },
    })
  }

  override get synced(): boolean {
    return this.reflector.synced && this.store.current !== undefined
  }

  get waitingReason(): string | undefined {
    return this.reflector.error
  }

  override start(): void {
    super.start()
    void this.reflector.waitForSync().then((ok) => {
      if (ok && this.reflector.size === 0 && !this.store.current) this.store.applyDefault(`ConfigMap ${this.ref} does not exist`)
    })
  }

  private applyConfigMap(cm: V1ConfigMap): void {
    const text = cm.data?.[POLICY_KEY]
    if (text === undefined) {
      this.store.reject(new Error(`ConfigMap ${this.ref} has no key ${POLICY_KEY}`), this.ref)
      return
    }
    this.store.apply(text, this.ref)
  }
}
