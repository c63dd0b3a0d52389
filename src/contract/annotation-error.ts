// How a parser of what users write (labels, annotations) fails: the annotation, the value
// and the accepted form, because that text reaches kubectl. Shared by admission's parsers
// and the contracts in this folder that admission writes and registration reads back.

import type { ErrorCode } from '../lib/errors.js'

export class AnnotationError extends Error {
  readonly code = 'ENLIST_ANNOTATION_INVALID' satisfies ErrorCode
  constructor(
    readonly key: string,
    readonly value: string,
    readonly problem: string,
    readonly accepted: string,
    readonly where: 'annotation' | 'label' = 'annotation',
  ) {
    super(`${where} ${key}: ${quote(value)} is invalid: ${problem}; accepted: ${accepted}`)
    this.name = 'AnnotationError'
  }
}

/** A value as JSON, cut to a length an error message can carry. */
export function quote(v: string): string {
  const s = JSON.stringify(v)
  return s.length > 120 ? s.slice(0, 117) + '..."' : s
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: AnnotationError }
export const ok = <T>(value: T): Result<T> => ({ ok: true, value })
export const fail = <T>(error: AnnotationError): Result<T> => ({ ok: false, error })
