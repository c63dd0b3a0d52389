// The options the policy schema is compiled with, at build time and (from sources) at run time.
export const AJV_OPTIONS = { allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true } as const
