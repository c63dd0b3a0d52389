// Answers given a moment ago, given again. The pods of one ReplicaSet reach admission as the
// same review but for its uid: no name yet, one template, one owner, and managedFields stamped
// to the second. A rollout of a thousand replicas asks one question a thousand times, when
// admission latency matters most, and admit() is a pure function of the review and the facts
// around it. So the answer is kept, keyed by a SHA-256 of the review's text without its uid
// and of the namespace's labels, under the policy, decision keys, CA bundle and server version
// it was made with: any of those changes and the memo starts empty. Bounded by bytes, the
// least recently used going first. A tenant gains nothing from it: a review that differs from
// another anywhere but in its uid has another key.

import { createHash } from 'node:crypto'
import type { Verdict } from './review.js'
import type { KubeVersion } from './settings.js'

/** What the answer was made with: the policy and keys compared by identity (they are
 *  replaced, never changed), the rest by value. */
export interface MemoFacts {
  policy: object
  ring: object
  signing: object
  caBundle: string
  serverVersion: KubeVersion | undefined
}

/** An answer, serialized around its uid, and what the log line and metrics need. */
export interface Remembered {
  /** The answer's text before and after the uid's JSON string. */
  head: string
  tail: string
  verdict: Verdict
  reason: string
  namespace: string
  workload: string | undefined
  pod: string | undefined
  message: string | undefined
  dryRun: boolean
}

/** Bytes an entry holds besides its text (key, object, strings of the log line), roughly. */
const OVERHEAD = 256

export class AdmissionMemo {
  private readonly entries = new Map<string, Remembered>()
  private held = 0
  private facts: MemoFacts | undefined

  constructor(readonly maxBytes: number) {}

  /** The key of a review: all its text but the uid at [uidAt, uidAt + uidLength), and the
   *  labels of its namespace. */
  static key(text: string, uidAt: number, uidLength: number, labels: Readonly<Record<string, string>>): string {
    return createHash('sha256').update(text.slice(0, uidAt)).update(text.slice(uidAt + uidLength)).update('\n').update(JSON.stringify(labels)).digest('base64')
  }

  get size(): number {
    return this.entries.size
  }

  get bytes(): number {
    return this.held
  }

  get(key: string, facts: MemoFacts): Remembered | undefined {
    if (!this.madeWith(facts)) return undefined
    const e = this.entries.get(key)
    if (e) {
      // most recently used last: the Map's order is the eviction order
      this.entries.delete(key)
      this.entries.set(key, e)
    }
    return e
  }

  set(key: string, facts: MemoFacts, e: Remembered): void {
    if (!this.madeWith(facts)) {
      this.entries.clear()
      this.held = 0
      this.facts = facts
    }
    const size = sizeOf(e)
    if (size > this.maxBytes) return
    const old = this.entries.get(key)
    if (old) {
      this.entries.delete(key)
      this.held -= sizeOf(old)
    }
    this.entries.set(key, e)
    this.held += size
    for (const [k, v] of this.entries) {
      if (this.held <= this.maxBytes) break
      this.entries.delete(k)
      this.held -= sizeOf(v)
    }
  }

  private madeWith(f: MemoFacts): boolean {
    const m = this.facts
    return (
      m !== undefined &&
      m.policy === f.policy &&
      m.ring === f.ring &&
      m.signing === f.signing &&
      m.caBundle === f.caBundle &&
      m.serverVersion?.major === f.serverVersion?.major &&
      m.serverVersion?.minor === f.serverVersion?.minor
    )
  }
}

function sizeOf(e: Remembered): number {
  return 2 * (e.head.length + e.tail.length) + OVERHEAD
}
