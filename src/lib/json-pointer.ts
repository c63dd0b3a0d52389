// RFC 6901: `~` must be escaped before `/`, or "~1" written by the second step
// would be turned into "~01" by the first.
export function escapeToken(key: string): string {
  if (key.indexOf('~') === -1 && key.indexOf('/') === -1) return key
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

export function unescapeToken(token: string): string {
  if (token.indexOf('~') === -1) return token
  return token.replace(/~1/g, '/').replace(/~0/g, '~')
}

export function pointer(...tokens: ReadonlyArray<string | number>): string {
  let out = ''
  for (const t of tokens) out += '/' + (typeof t === 'number' ? String(t) : escapeToken(t))
  return out
}
