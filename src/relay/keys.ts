// The relay's signing keys, from a mounted Secret read again every 30 s (a rotation adds a
// key there before enlist signs with it). A read that fails keeps the rings of before: a
// half-written mount must not turn every event into a dead letter.

import type { Logger } from 'pino'
import type { KeyRing } from '../decision/keyring.js'
import { readRings } from '../events/signature.js'
import { errorMessage } from '../lib/errors.js'

export class RelayKeys {
  private rings = new Map<string | undefined, KeyRing>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Reads the directory; throws what is wrong (used at start, where it is fatal). */
  async load(): Promise<ReadonlyMap<string | undefined, KeyRing>> {
    this.rings = await readRings(this.dir)
    return this.rings
  }

  watch(everyMs = 30_000): void {
    this.timer = setInterval(() => {
      this.load().catch((err: unknown) => this.log.error({ dir: this.dir, err: errorMessage(err) }, 'cannot read the signing keys again; keeping those read before'))
    }, everyMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  ring(cluster: string | undefined): KeyRing | undefined {
    return this.rings.get(cluster)
  }
}
