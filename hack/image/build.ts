// Builds the images (hack/image/images.ts) and prints, as the last line of stdout, a JSON
// object naming each image's ref and OCI layout. Progress goes to stderr.
//
//   hack/images.sh                          build what is missing; print the JSON
//   hack/images.sh --archive FILE           also write enlist's image as an OCI archive
//                                           (import: ctr -n k8s.io images import FILE)

import { ImageError } from './errors.js'
import { buildImages } from './images.js'
import { writeOciArchive } from './oci.js'

const say = (l: string): void => void process.stderr.write(`[images] ${l}\n`)

async function main(argv: string[]): Promise<number> {
  let archive: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--archive' && argv[i + 1]) archive = argv[++i]
    else if (a.startsWith('--archive=')) archive = a.slice('--archive='.length)
    else {
      say(`unknown argument ${JSON.stringify(a)}; accepted: --archive FILE`)
      return 2
    }
  }
  const images = await buildImages(say)
  if (archive) {
    await writeOciArchive(images.enlistLayout, archive)
    say(`wrote ${images.enlist.ref} to ${archive} (import with: ctr -n k8s.io images import ${archive})`)
  }
  process.stdout.write(`${JSON.stringify(images)}\n`)
  return 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`error${err instanceof ImageError ? ` (${err.code})` : ''}: ${(err as Error).message}`)
    process.exit(1)
  },
)
