// Durations and sizes as operators write them in flags and query strings.

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const BYTES: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }

/** Milliseconds from "500ms", "30s", "2m", "1h30m" or a bare number of seconds. */
export function parseDuration(v: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(v)) return undefined
  let ms = 0
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * UNITS[m[2]!]!
  return ms
}

export function parseBytes(v: string): number | undefined {
  const m = /^(\d+)([KkMmGg]i?)?$/.exec(v)
  if (!m) return undefined
  return Number(m[1]) * BYTES[(m[2] ?? '').toLowerCase()]!
}
