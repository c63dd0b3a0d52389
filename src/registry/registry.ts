// The set of backends the policy configures, instrumented. The registration path calls
// every backend with bounded retries; the controller calls once and lets its queue retry.

import type { Logger } from 'pino'
import type { KubeClient } from '../kube/client.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import type { Metrics } from '../metrics.js'
import { canonicalJson } from '../policy/load.js'
import type { PolicySpec } from '../policy/policy.js'
import { type Backend, BackendError, type BackendOp } from './backend.js'
import { HttpBackend, secretHeaders } from './http.js'
import { KubernetesBackend, type PodLookup } from './kubernetes.js'
import type { EntryRef, RegistryRecord } from './record.js'

export class RegistryError extends BackendError {
  constructor(
    readonly failures: readonly BackendError[],
    op: BackendOp,
  ) {
    super(failures.map((f) => f.backend).join(', '), op, failures.map((f) => f.message).join('; '), failures.every((f) => f.retryable))
    this.name = 'RegistryError'
  }
}

export interface RetryBudget {
  /** Stop retrying after this time (ms since epoch). Undefined: one attempt. */
  deadline?: number
}

export class Registry {
  private current: Backend[] = []
  private spec = ''
  private readonly retry = new Map<string, { initialMs: number; maxMs: number }>()

  constructor(
    private readonly client: KubeClient,
    private readonly pods: PodLookup,
    private readonly namespace: string,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** Rebuilds the backends when the policy's registry or discovery settings change. */
  configure(policy: PolicySpec): void {
    const spec = canonicalJson({ registry: policy.registry.backends, discovery: policy.discovery })
    if (spec === this.spec) return
    for (const b of this.current) if (b instanceof HttpBackend) b.close()
    this.spec = spec
    this.retry.clear()
    this.current = policy.registry.backends.map((b) => {
      if (b.type === 'kubernetes') return new KubernetesBackend(b.name, this.client, policy.discovery, this.pods)
      this.retry.set(b.name, { initialMs: b.retry.initialDelayMs, maxMs: b.retry.maxDelayMs })
      return new HttpBackend(b, secretHeaders(this.client, this.namespace, b.headersFromSecret))
    })
    this.log.info({ backends: this.current.map((b) => `${b.name} (${b.type})`) }, 'registry backends configured')
  }

  get backends(): readonly Backend[] {
    return this.current
  }

  async registerAll(record: RegistryRecord, budget: RetryBudget = {}): Promise<void> {
    await this.all('register', (b) => b.register(record), budget)
  }

  async deregisterAll(ref: EntryRef, budget: RetryBudget = {}): Promise<void> {
    await this.all('deregister', (b) => b.deregister(ref), budget)
  }

  /** One call, instrumented. */
  async call<T>(b: Backend, op: BackendOp, fn: () => Promise<T>): Promise<T> {
    const end = this.metrics.backendDuration.startTimer({ backend: b.name, op })
    try {
      const v = await fn()
      this.metrics.backendRequests.inc({ backend: b.name, op, result: 'ok' })
      return v
    } catch (err) {
      this.metrics.backendRequests.inc({ backend: b.name, op, result: 'error' })
      throw err instanceof BackendError ? err : new BackendError(b.name, op, errorMessage(err), true, { cause: err })
    } finally {
      end()
    }
  }

  private async all(op: BackendOp, fn: (b: Backend) => Promise<void>, budget: RetryBudget): Promise<void> {
    const results = await Promise.allSettled(this.current.map((b) => this.withRetry(b, op, () => fn(b), budget)))
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as BackendError] : []))
    if (failures.length > 0) throw new RegistryError(failures, op)
  }

  private async withRetry(b: Backend, op: BackendOp, fn: () => Promise<void>, budget: RetryBudget): Promise<void> {
    const r = this.retry.get(b.name) ?? { initialMs: 200, maxMs: 5000 }
    const backoff = new Backoff({ initialMs: r.initialMs, maxMs: r.maxMs })
    for (;;) {
      try {
        await this.call(b, op, fn)
        return
      } catch (err) {
        const e = err as BackendError
        const delay = backoff.next()
        if (!e.retryable || budget.deadline === undefined || Date.now() + delay > budget.deadline) throw e
        this.log.warn({ backend: b.name, op, err: e.message, attempt: backoff.attempts, retryInMs: Math.round(delay) }, 'backend call failed; retrying')
        await sleep(delay)
      }
    }
  }
}
