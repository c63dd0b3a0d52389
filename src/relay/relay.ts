// `enlist relay`: consumes registration events durably and applies each to an HTTP CMDB with
// the http backend's contract (the same client: src/registry/http.ts), idempotently, acking
// only after the CMDB answered. A failed CMDB call is retried with capped backoff while the
// delivery is held (never acked, never dropped); at stop it is handed back to the broker.
// With a cluster (`--cluster`), events another cluster published are acked and skipped, and
// the rebuild changes only this cluster's CMDB entries.

import http from 'node:http'
import type { Logger } from 'pino'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { KeyRing } from '../decision/keyring.js'
import { EventFormatError, kindOf, parseEvent, type RegistrationEvent } from '../events/envelope.js'
import { verify } from '../events/signature.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import { BackendError } from '../registry/backend.js'
import { applyEvent, type Cmdb, RecentIds, rebuild, type RebuildResult } from './apply.js'
import type { DeadLetter, Delivery, EventSource, ReplayResult } from './source.js'

/** CMDB answers about the event itself: the same request can never succeed. 401, 403, 404,
 *  408, 409, 429 and 5xx are about the CMDB (its credentials, its state, its load): retried. */
export const PERMANENT_STATUSES: readonly number[] = [400, 413, 415, 422]

/** Why the CMDB refused this event for good, or undefined: retry. The http client's error
 *  says `HTTP <status>` (src/registry/http.ts); a record without a valid pod UID is the
 *  event's fault too. */
export function permanentRefusal(err: unknown): string | undefined {
  if (!(err instanceof BackendError)) return undefined
  const status = /: HTTP (\d{3})$/.exec(err.message)?.[1]
  if (status !== undefined && PERMANENT_STATUSES.includes(Number(status))) return `the CMDB answered HTTP ${status}`
  if (/the entry has no valid pod UID$/.test(err.message)) return 'the event has no valid pod UID'
  return undefined
}

export type DeadLetterReason = 'cmdb_rejected' | 'unsigned' | 'bad_signature' | 'invalid'

export function relayMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const registers = [registry]
  return {
    registry,
    events: new Counter({
      name: 'enlist_relay_events_total',
      help: 'Events handled by type and result: applied, duplicate (seen lately: no CMDB call), stale (registered after its deregistration: dropped), invalid (not an enlist event), refused (unsigned or badly signed), rejected (the CMDB answered 400, 413, 415 or 422): those three dead-lettered; other_cluster (data.cluster is not the relay\'s --cluster: acked and skipped).',
      labelNames: ['type', 'result'] as const,
      registers,
    }),
    redeliveries: new Counter({ name: 'enlist_relay_redeliveries_total', help: 'Deliveries the broker marked as redelivered.', registers }),
    cmdbFailures: new Counter({ name: 'enlist_relay_cmdb_failures_total', help: 'CMDB calls that failed and were retried (the delivery is held).', registers }),
    lag: new Histogram({
      name: 'enlist_relay_lag_seconds',
      help: 'From the broker storing an event to the relay acking it.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    pending: new Gauge({ name: 'enlist_relay_pending', help: 'Events waiting for this relay (consumer pending or queue depth).', registers }),
    up: new Gauge({ name: 'enlist_relay_up', help: '1 while connected to the broker.', registers }),
    rebuilds: new Counter({ name: 'enlist_relay_rebuilds_total', help: 'Rebuilds of the CMDB from the snapshot, by result.', labelNames: ['result'] as const, registers }),
    deadLetters: new Counter({
      name: 'enlist_relay_dead_letters_total',
      help: 'Events sent to the dead-letter place, by reason: cmdb_rejected (400, 413, 415, 422), unsigned, bad_signature, invalid (not an enlist event).',
      labelNames: ['reason'] as const,
      registers,
    }),
    nameConflicts: new Counter({
      name: 'enlist_relay_cluster_name_conflicts_total',
      help: "Signed events of a cluster name from a kube-system UID other than the ones seen before: two clusters share a name (or a DR cluster took it over), by cluster.",
      labelNames: ['cluster'] as const,
      registers,
    }),
    replayed: new Counter({ name: 'enlist_relay_dead_letters_replayed_total', help: 'Dead letters replayed (--replay-dead-letters), by result: applied (removed), kept (failed again).', labelNames: ['result'] as const, registers }),
  }
}

export type RelayMetrics = ReturnType<typeof relayMetrics>

export interface RelayOptions {
  source: EventSource
  cmdb: Cmdb
  log: Logger
  metrics: RelayMetrics
  /** Rebuild from the snapshot before consuming when the consumer/queue is new. */
  rebuildOnCreate: boolean
  /** The source cluster (`--cluster`): events of other clusters are skipped, and the rebuild
   *  changes only entries carrying this mark. Undefined: every event is applied, and the
   *  rebuild deletes nothing. */
  cluster?: string
  /** Apply events without a valid signature (--allow-unsigned). */
  allowUnsigned: boolean
  /** The signing keys of a source cluster (undefined: unmarked events). */
  ring: (cluster: string | undefined) => KeyRing | undefined
}

export class Relay {
  private readonly recent = new RecentIds()
  /** kube-system UIDs seen writing each cluster name (noteWriter). */
  private readonly writers = new Map<string, Set<string>>()
  private cmdbProblem: string | undefined
  private consuming: Promise<void> | undefined
  private stopping = false
  private readonly stopSignal = new AbortController()
  private poll: NodeJS.Timeout | undefined

  constructor(private readonly o: RelayOptions) {}

  /** Connects, rebuilds when the consumer is new, and consumes until stop(). */
  async start(): Promise<void> {
    // An unreachable broker at start is waited for (and reported not ready), not a crash.
    const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 })
    let created = false
    for (;;) {
      try {
        created = (await this.o.source.open()).created
        break
      } catch (err) {
        if (this.stopping) return
        const delay = backoff.next()
        this.o.log.warn({ err: errorMessage(err), retryInMs: Math.round(delay) }, 'cannot open the event source; retrying')
        await sleep(delay, this.stopSignal.signal)
      }
    }
    if (this.stopping) return
    if (created && this.o.rebuildOnCreate) await this.rebuild('the durable consumer or queue is new')
    this.poll = setInterval(() => void this.refreshPending(), 10_000)
    this.poll.unref()
    this.consuming = this.o.source.consume((d) => this.handle(d))
    this.o.log.info({ source: this.o.source.kind }, 'relay consuming')
  }

  async rebuild(why: string): Promise<RebuildResult> {
    const t0 = Date.now()
    const { cluster } = this.o
    try {
      const r = await rebuild(() => this.o.source.snapshot(cluster), this.o.cmdb, this.o.source.tombstones(), cluster)
      this.o.metrics.rebuilds.inc({ result: 'ok' })
      this.o.log.info({ ...r, cluster, ms: Date.now() - t0, why }, 'rebuilt the CMDB from the snapshot')
      if (cluster === undefined) this.o.log.warn('the rebuild removed nothing from the CMDB: without --cluster it cannot tell which entries are this source\'s')
      return r
    } catch (err) {
      this.o.metrics.rebuilds.inc({ result: 'error' })
      throw err
    }
  }

  /** Why the relay is not ready, or undefined. */
  problems(): string[] {
    const out: string[] = []
    const s = this.o.source.health()
    this.o.metrics.up.set(s === undefined ? 1 : 0)
    if (s !== undefined) out.push(`broker: ${s}`)
    if (this.cmdbProblem) out.push(`cmdb: ${this.cmdbProblem}`)
    if (this.stopping) out.push('stopping')
    return out
  }

  async stop(): Promise<void> {
    this.stopping = true
    clearInterval(this.poll)
    this.stopSignal.abort()
    await this.o.source.stop()
    await this.consuming
    await this.o.source.close()
  }

  private async refreshPending(): Promise<void> {
    try {
      const n = await this.o.source.pending()
      if (n !== undefined) this.o.metrics.pending.set(n)
    } catch {
      // reported through health
    }
  }

  /**
   * A broker has no store to hold a claim on a cluster name (src/registry/ownership.ts): what
   * tells two clusters of one name apart is the kube-system UID each writes beside it. A name
   * seen with a second UID is reported (the events are still applied: they are signed).
   */
  private noteWriter(e: RegistrationEvent): void {
    const { cluster, clusterUID } = e.data as { cluster?: string; clusterUID?: string }
    if (cluster === undefined || typeof clusterUID !== 'string' || clusterUID === '') return
    const seen = this.writers.get(cluster) ?? new Set<string>()
    if (seen.has(clusterUID)) return
    if (seen.size >= 8) return // bounded: a name is reported, not every UID it ever had
    seen.add(clusterUID)
    this.writers.set(cluster, seen)
    if (seen.size < 2) return
    this.o.metrics.nameConflicts.inc({ cluster })
    this.o.log.error(
      { cluster, clusterUIDs: [...seen] },
      `events of cluster "${cluster}" come from ${seen.size} clusters (kube-system UIDs): two clusters share a name, or a DR cluster took it over; give each cluster its own cluster.name`,
    )
  }

  private async handle(d: Delivery): Promise<void> {
    const { metrics, log } = this.o
    if (d.redelivered) metrics.redeliveries.inc()
    let e: RegistrationEvent
    try {
      e = parseEvent(d.body)
    } catch (err) {
      // Retrying cannot make it valid: kept aside for a human, and the relay goes on.
      metrics.events.inc({ type: 'unknown', result: 'invalid' })
      await this.deadLetter(d, 'invalid', `not an enlist registration event: ${err instanceof EventFormatError ? err.message : errorMessage(err)}`, undefined)
      return
    }
    const { cluster } = this.o
    const from = e.data.cluster
    if (cluster !== undefined && from !== undefined && from !== cluster) {
      // another cluster's relay applies it (one relay per source cluster)
      metrics.events.inc({ type: kindOf(e), result: 'other_cluster' })
      log.debug({ id: e.id, cluster: from }, 'skipped an event of another cluster')
      await d.ack().catch((err: unknown) => log.warn({ id: e.id, err: errorMessage(err) }, 'skipped, but the ack did not reach the broker; it will be redelivered'))
      return
    }
    const refused = this.refusal(d.body, d.signature, e)
    if (refused) {
      metrics.events.inc({ type: kindOf(e), result: 'refused' })
      await this.deadLetter(d, refused.reason, refused.message, e)
      return
    }
    this.noteWriter(e)
    const backoff = new Backoff({ initialMs: 200, maxMs: 30_000 })
    for (;;) {
      try {
        const { kind, outcome } = await applyEvent(e, this.o.cmdb, this.o.source.tombstones(), this.recent)
        this.cmdbProblem = undefined
        metrics.events.inc({ type: kind, result: outcome })
        try {
          await d.ack()
        } catch (err) {
          // The channel or connection went: the broker redelivers, and applying again is a no-op.
          log.warn({ id: e.id, err: errorMessage(err) }, 'applied, but the ack did not reach the broker; it will be redelivered')
          return
        }
        if (d.storedAt) metrics.lag.observe(Math.max(0, (Date.now() - d.storedAt.getTime()) / 1000))
        log.debug({ id: e.id, outcome }, 'event applied')
        return
      } catch (err) {
        const permanent = permanentRefusal(err)
        if (permanent !== undefined) {
          // about this event, not the CMDB: it cannot succeed, and must not hold the others
          this.cmdbProblem = undefined
          metrics.events.inc({ type: kindOf(e), result: 'rejected' })
          await this.deadLetter(d, 'cmdb_rejected', permanent, e)
          return
        }
        this.cmdbProblem = errorMessage(err)
        metrics.cmdbFailures.inc()
        if (this.stopping) {
          d.requeue()
          return
        }
        const delay = backoff.next()
        log.warn({ id: e.id, type: kindOf(e), err: this.cmdbProblem, retryInMs: Math.round(delay) }, 'cannot apply the event; holding it and retrying')
        d.working()
        await sleep(delay, this.stopSignal.signal)
      }
    }
  }

  /** Why the event must not be applied (its signature), or undefined. */
  private refusal(body: Uint8Array, signature: string | undefined, e: RegistrationEvent): { reason: DeadLetterReason; message: string } | undefined {
    if (this.o.allowUnsigned) return undefined
    const v = verify(body, signature, this.o.ring(e.data.cluster), e.data.cluster)
    return v.ok ? undefined : { reason: v.reason, message: v.message }
  }

  /** To the dead-letter place, then acked; while the broker does not take it, the delivery
   *  is held and the dead-lettering retried (never acked unkept). */
  private async deadLetter(d: Delivery, reason: DeadLetterReason, message: string, e: RegistrationEvent | undefined): Promise<void> {
    const { metrics, log } = this.o
    const backoff = new Backoff({ initialMs: 200, maxMs: 30_000 })
    for (;;) {
      try {
        await d.deadLetter(`${reason}: ${message}`)
        metrics.deadLetters.inc({ reason })
        log.error({ id: e?.id, type: e ? kindOf(e) : undefined, subject: e?.subject, reason, why: message }, 'sent an event to the dead-letter place; going on (enlist relay --replay-dead-letters re-applies it once fixed)')
        return
      } catch (err) {
        if (this.stopping) {
          d.requeue()
          return
        }
        const delay = backoff.next()
        log.warn({ id: e?.id, err: errorMessage(err), retryInMs: Math.round(delay) }, 'cannot store the event in the dead-letter place; holding it and retrying')
        d.working()
        await sleep(delay, this.stopSignal.signal)
      }
    }
  }

  /** `--replay-dead-letters`: each dead letter present now is tried once (signature, then the
   *  CMDB); applied ones are removed, those that fail again stay. */
  async replayDeadLetters(): Promise<ReplayResult> {
    const { metrics, log } = this.o
    return this.o.source.replayDeadLetters(async (dl: DeadLetter) => {
      let e: RegistrationEvent
      try {
        e = parseEvent(dl.body)
      } catch (err) {
        log.warn({ err: errorMessage(err), was: dl.reason }, 'dead letter kept: not an enlist registration event')
        metrics.replayed.inc({ result: 'kept' })
        return false
      }
      const refused = this.refusal(dl.body, dl.signature, e)
      if (refused) {
        log.warn({ id: e.id, why: refused.message, was: dl.reason }, 'dead letter kept: its signature is still refused')
        metrics.replayed.inc({ result: 'kept' })
        return false
      }
      try {
        const { outcome } = await applyEvent(e, this.o.cmdb, this.o.source.tombstones(), this.recent)
        metrics.replayed.inc({ result: 'applied' })
        log.info({ id: e.id, outcome, was: dl.reason }, 'dead letter replayed')
        return true
      } catch (err) {
        log.warn({ id: e.id, err: errorMessage(err), was: dl.reason }, 'dead letter kept: the CMDB refused it again')
        metrics.replayed.inc({ result: 'kept' })
        return false
      }
    })
  }
}

/** /healthz, /readyz (?verbose), /metrics on plain HTTP (a Pod-local port for probes and
 *  Prometheus; the relay serves nothing else). */
export function relayServer(relay: Relay, metrics: RelayMetrics): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://relay')
    if (url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
    } else if (url.pathname === '/readyz') {
      const problems = relay.problems()
      const ready = problems.length === 0
      if (url.searchParams.has('verbose') || !ready) {
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, failing: problems }))
      } else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
    } else if (url.pathname === '/metrics') {
      relay.problems()
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(errorMessage(err)),
      )
    } else res.writeHead(404).end()
  })
}
