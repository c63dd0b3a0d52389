// The images a real node runs (hack/image): ENLIST_IMAGES when scripts/test.sh built them
// before the suite, else built now through hack/images.sh (cached, so usually instant).

import { spawn } from 'node:child_process'
import { join } from 'node:path'
import type { Images } from '../../hack/image/images.js'
import { NodeError } from './node-errors.js'

const REPO = new URL('../../', import.meta.url).pathname

export async function nodeImages(log: (line: string) => void = () => undefined): Promise<Images> {
  if (process.env.ENLIST_IMAGES) return JSON.parse(process.env.ENLIST_IMAGES) as Images
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO, 'hack/images.sh'), { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
      let nl: number
      while ((nl = err.indexOf('\n')) !== -1) {
        log(err.slice(0, nl))
        err = err.slice(nl + 1)
      }
    })
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) return reject(new NodeError('NODE_IMAGE', `hack/images.sh exited ${code}; see its messages above`))
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Images)
    })
  })
}
