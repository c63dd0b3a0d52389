// Named readiness checks, aggregated for /readyz. A check returns undefined when ready,
// or the reason it is not.

export type Check = () => string | undefined

/** A check that reports without gating: what /readyz?verbose shows beside the gates. */
export type Report = () => Array<{ check: string; reason: string }>

export class Readiness {
  private readonly checks = new Map<string, Check>()
  private readonly reports: Report[] = []
  private readonly drainHooks: Array<() => void> = []
  private draining = false

  add(name: string, check: Check): void {
    this.checks.set(name, check)
  }

  /** Problems worth seeing that must not take the webhook out of service (a backend down:
   *  admission never depends on backends). */
  addReport(report: Report): void {
    this.reports.push(report)
  }

  /** The non-gating problems now. */
  warnings(): Array<{ check: string; reason: string }> {
    return this.reports.flatMap((r) => r())
  }

  /** Once shutting down, never ready again: endpoints drop us before we stop serving. */
  drain(): void {
    if (this.draining) return
    this.draining = true
    for (const h of this.drainHooks) h()
  }

  /** Runs when shutdown starts (answer held requests now rather than at the deadline). */
  onDrain(hook: () => void): void {
    this.drainHooks.push(hook)
  }

  get shuttingDown(): boolean {
    return this.draining
  }

  status(): { ready: boolean; failing: Array<{ check: string; reason: string }> } {
    const failing: Array<{ check: string; reason: string }> = []
    if (this.draining) failing.push({ check: 'shutdown', reason: 'the server is shutting down' })
    for (const [check, fn] of this.checks) {
      const reason = fn()
      if (reason !== undefined) failing.push({ check, reason })
    }
    return { ready: failing.length === 0, failing }
  }
}
