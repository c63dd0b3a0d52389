// Named errors with stable codes, in the manner of fastify's: callers branch on `code`,
// humans read `message`, HTTP layers read `statusCode`.

export type ErrorCode =
  | 'ENLIST_POLICY_INVALID'
  | 'ENLIST_OPTION_INVALID'
  | 'ENLIST_ANNOTATION_INVALID'
  | 'ENLIST_MANIFEST_INVALID'
  | 'ENLIST_TLS_INVALID'
  | 'ENLIST_UNAUTHENTICATED'
  | 'ENLIST_FORBIDDEN'
  | 'ENLIST_CONFLICT'
  | 'ENLIST_DEPENDENCIES_NOT_READY'
  | 'ENLIST_BACKEND_FAILED'
  | 'ENLIST_UNAVAILABLE'
  | 'ENLIST_BAD_REQUEST'
  | 'ENLIST_TOO_MANY_REQUESTS'
  | 'ENLIST_SHUTTING_DOWN'
  | 'ENLIST_ABORTED'
  // returned by the HTTP layer only (no error class carries them)
  | 'ENLIST_INTERNAL'
  | 'ENLIST_NOT_FOUND'
  // errors of parsers and stores, never sent over HTTP as such
  | 'ENLIST_EVENT_INVALID'
  | 'ENLIST_KEYRING_INVALID'
  | 'ENLIST_ADVERTISE_FAILED'
  | 'ENLIST_DUBBO_INVALID'
  | 'ENLIST_DUBBO_GO_INVALID'
  | 'ENLIST_RECORD_INVALID'
  | 'ENLIST_LEDGER_FULL'
  | 'ENLIST_SECRET_UNAVAILABLE'

export class EnlistError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number

  constructor(code: ErrorCode, message: string, statusCode = 500, options?: ErrorOptions) {
    super(message, options)
    this.name = 'EnlistError'
    this.code = code
    this.statusCode = statusCode
  }
}

/** 429: a limit protecting enlist and the apiserver; the client retries after the hint. */
export class TooManyRequests extends EnlistError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('ENLIST_TOO_MANY_REQUESTS', message, 429)
    this.name = 'TooManyRequests'
  }
}

/** One problem found in a document, located by a JSON Pointer. */
export interface FieldError {
  path: string
  message: string
}

export class PolicyError extends EnlistError {
  readonly errors: readonly FieldError[]

  constructor(source: string, errors: readonly FieldError[]) {
    const lines = errors.map((e) => `  ${e.path || '/'}: ${e.message}`)
    super('ENLIST_POLICY_INVALID', `invalid policy ${source}:\n${lines.join('\n')}`, 400)
    this.name = 'PolicyError'
    this.errors = errors
  }
}

export class OptionError extends EnlistError {
  constructor(message: string) {
    super('ENLIST_OPTION_INVALID', message, 400)
    this.name = 'OptionError'
  }
}

/** Work abandoned on purpose: leadership lost, or the process stopping. Level-based
 *  callers redo it later; it is never a failure to count or report. */
export class AbortedError extends EnlistError {
  constructor(what = 'the operation') {
    super('ENLIST_ABORTED', `${what} was abandoned: the work was cancelled`, 503)
    this.name = 'AbortedError'
  }
}

/** `p`, or an AbortedError as soon as `signal` aborts (p keeps running, unobserved). */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, what?: string): Promise<T> {
  if (!signal) return p
  if (signal.aborted) {
    p.catch(() => undefined)
    return Promise.reject(new AbortedError(what))
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortedError(what))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err instanceof Error ? err : new Error(String(err)))
      },
    )
  })
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
