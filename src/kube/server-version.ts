// The apiserver's version, asked once at start (retrying until it answers) unless given
// (--kube-version): admission reads it as a fact, like the namespace labels.

import type { KubeVersion } from '../admission/settings.js'
import { Backoff, sleep } from '../lib/backoff.js'
import { errorMessage } from '../lib/errors.js'
import type { Logger } from '../log.js'
import type { KubeClient } from './client.js'

/** Asks the apiserver its version once at start (retrying until it answers). */
export class ServerVersion {
  readonly name = 'server-version'
  value: KubeVersion | undefined
  private readonly abort = new AbortController()
  private loop: Promise<void> | undefined

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
    fixed: KubeVersion | undefined,
  ) {
    this.value = fixed
  }

  start(): void {
    if (this.value) return
    this.loop = (async () => {
      const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 })
      while (!this.abort.signal.aborted) {
        try {
          const v = await this.client.version({ signal: this.abort.signal })
          this.value = { major: v.major, minor: v.minor }
          this.log.info({ version: v.gitVersion }, 'kube-apiserver version')
          return
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'cannot read the apiserver version; retrying')
          await sleep(backoff.next(), this.abort.signal)
        }
      }
    })()
  }

  async stop(): Promise<void> {
    this.abort.abort()
    await this.loop
  }
}
