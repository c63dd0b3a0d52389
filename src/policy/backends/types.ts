// What each registry backend type contributes to the policy: its JSON Schema (the one
// source of its defaults) and the checks a schema cannot express. Kept free of client
// libraries: the schema is compiled at build time and `enlist policy validate` loads it.

export type AddError = (path: string, message: string) => void

export interface BackendSchema<S extends { name: string; type: string }> {
  readonly type: S['type']
  /** JSON Schema (draft-07) of one backends[] entry of this type, defaults included. */
  readonly schema: Readonly<Record<string, unknown>>
  /** Semantic checks on a schema-valid, defaulted entry at JSON Pointer `at`. */
  check(spec: S, at: string, add: AddError): void
}
