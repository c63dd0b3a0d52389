// The wrk script the benchmarks load with: POST the review in BODY_FILE (compact), each
// request another pod (its managedFields second another, from a base of this run's own), or
// with `same` one review over and over, as a ReplicaSet's burst sends it.

/** A fixture as the benchmarks name it: "typical" (each request another pod) or "typical:same". */
export function fixtureSpec(spec: string): { name: string; same: boolean } {
  const [name = spec, mode] = spec.split(':')
  return { name, same: mode === 'same' }
}

export function wrkScript(compactBodyFile: string, same: boolean): string {
  const distinct = [
    'local s, e = body:find(\'"time":"[^"]*"\')',
    'local head, tail = body:sub(1, s + 7), body:sub(e)',
    'local n = (os.time() % 100000) * 100000',
    'request = function()',
    '  n = n + 1',
    '  return wrk.format(nil, nil, nil, head .. os.date("!%Y-%m-%dT%H:%M:%SZ", 1000000000 + n) .. tail)',
    'end',
  ]
  return [
    'wrk.method = "POST"',
    'wrk.headers["Content-Type"] = "application/json"',
    `local f = io.open("${compactBodyFile}", "rb")`,
    'local body = f:read("*a")',
    'f:close()',
    'wrk.body = body',
    ...(same ? [] : distinct),
    '',
  ].join('\n')
}
