// Temp dirs a test makes, removed when its process exits (an interrupted run too: the
// harness's signal handler exits through process.exit). Some hold private keys and tokens.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dirs = new Set<string>()
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.add(dir)
  return dir
}
