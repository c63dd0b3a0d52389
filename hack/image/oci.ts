// OCI images written without a registry or container engine: uncompressed layer tars, a
// config and a manifest as content-addressed blobs, and an index.json naming the image, in
// an OCI image layout; tarred, that is the archive `ctr -n k8s.io images import` accepts.
// Also the reverse (readOciLayout), so tests can compare an image with the Dockerfile.

import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { copyFile, link, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { ImageError } from './errors.js'

const run = promisify(execFile)

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

/** The runtime part of an image config (the fields a Dockerfile sets). */
export interface ImageRuntimeConfig {
  User?: string
  Entrypoint?: string[]
  Cmd?: string[]
  Env?: string[]
  WorkingDir?: string
  ExposedPorts?: Record<string, Record<string, never>>
  Labels?: Record<string, string>
}

export interface Layer {
  /** An uncompressed tar file. */
  file: string
  digest: string
  size: number
}

export async function sha256File(file: string): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { digest: `sha256:${hash.digest('hex')}`, size }
}

export async function layerOf(file: string): Promise<Layer> {
  return { file, ...(await sha256File(file)) }
}

/** Fully qualified, as containerd and the kubelet name images: enlist:0.1.0 -> docker.io/library/enlist:0.1.0. */
export function normaliseRef(ref: string): string {
  const slash = ref.indexOf('/')
  const first = slash === -1 ? '' : ref.slice(0, slash)
  const hasRegistry = first.includes('.') || first.includes(':') || first === 'localhost'
  let out = hasRegistry ? ref : `docker.io/${slash === -1 ? `library/${ref}` : ref}`
  if (!/:[^/]+$/.test(out) && !out.includes('@')) out += ':latest'
  return out
}

export interface ImageSpec {
  ref: string
  layers: readonly Layer[]
  runtime: ImageRuntimeConfig
}

/**
 * Writes an OCI image layout holding `images` (linux/amd64) into `dir`, atomically: a
 * finished directory or none. Layers are hard links to the cached files, so a layout costs
 * next to no disk, and a layer shared by several images is stored (and imported) once.
 * Each image's ref is stored as containerd's image name and as the OCI ref name.
 */
export async function writeOciLayout(dir: string, images: readonly ImageSpec[], created = '1970-01-01T00:00:00Z'): Promise<Descriptor[]> {
  await mkdir(dirname(dir), { recursive: true })
  const tmp = await mkdtemp(`${dir}.tmp-`)
  try {
    const blobs = join(tmp, 'blobs', 'sha256')
    await mkdir(blobs, { recursive: true })
    const putJson = async (value: unknown, mediaType: string): Promise<Descriptor> => {
      const data = Buffer.from(JSON.stringify(value))
      const hex = createHash('sha256').update(data).digest('hex')
      await writeFile(join(blobs, hex), data)
      return { mediaType, digest: `sha256:${hex}`, size: data.length }
    }
    const manifests: Descriptor[] = []
    for (const image of images) {
      for (const l of image.layers) {
        const to = join(blobs, l.digest.slice('sha256:'.length))
        if (existsSync(to)) continue
        await link(l.file, to).catch(() => copyFile(l.file, to))
      }
      const config = await putJson(
        {
          created,
          architecture: 'amd64',
          os: 'linux',
          config: image.runtime,
          rootfs: { type: 'layers', diff_ids: image.layers.map((l) => l.digest) },
          history: image.layers.map(() => ({ created, created_by: 'enlist hack/image' })),
        },
        MEDIA.config,
      )
      const manifest = await putJson(
        { schemaVersion: 2, mediaType: MEDIA.manifest, config, layers: image.layers.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })) },
        MEDIA.manifest,
      )
      const name = normaliseRef(image.ref)
      const tag = name.slice(name.lastIndexOf(':') + 1)
      manifests.push({ ...manifest, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag } })
    }
    await writeFile(join(tmp, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    await writeFile(join(tmp, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests }))
    await rm(dir, { recursive: true, force: true })
    await rename(tmp, dir)
    return manifests
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw new ImageError('IMAGE_WRITE_FAILED', `writing the OCI layout ${dir}: ${(err as Error).message}`, { cause: err })
  }
}

/** The tar arguments that stream a layout as an OCI archive (to a file, or to `ctr images import -`). */
export const archiveArgs = (layout: string): string[] => ['--create', '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, 'oci-layout', 'index.json', 'blobs']

/** Writes the layout as one OCI archive file (atomically). */
export async function writeOciArchive(layout: string, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  try {
    await run('tar', [...archiveArgs(layout), '--file', tmp])
    await rename(tmp, out)
  } catch (err) {
    await rm(tmp, { force: true })
    throw new ImageError('IMAGE_WRITE_FAILED', `writing ${out}: ${(err as Error).message}`, { cause: err })
  }
}

export interface ReadImage {
  name: string
  /** The manifest's digest. */
  digest: string
  config: { config: ImageRuntimeConfig; rootfs: { diff_ids: string[] } }
  /** Every path in the layers, in order ("./" stripped), with its type, mode and owner. */
  files: Map<string, { type: string; mode: string; owner: string; link?: string }>
}

/** Reads one image of a layout (the first, or the one named `ref`): its config and file list (the layers are listed, not extracted). */
export async function readOciLayout(dir: string, ref?: string): Promise<ReadImage> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] }
  const top = ref ? index.manifests.find((m) => m.annotations?.['io.containerd.image.name'] === normaliseRef(ref)) : index.manifests[0]
  if (!top) throw new ImageError('IMAGE_INVALID', `${dir}: index.json names no ${ref ? `image ${normaliseRef(ref)}` : 'manifest'}`)
  const blob = (d: string) => join(dir, 'blobs', 'sha256', d.slice('sha256:'.length))
  const manifest = JSON.parse(await readFile(blob(top.digest), 'utf8')) as { config: Descriptor; layers: Descriptor[] }
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as ReadImage['config']
  const files: ReadImage['files'] = new Map()
  for (const l of manifest.layers) {
    // --numeric-owner -tv: "drwxr-xr-x 0/0 0 1970-01-01 00:00 ./path[ -> target]"
    const { stdout } = await run('tar', ['--list', '--verbose', '--numeric-owner', '--file', blob(l.digest)], { maxBuffer: 256 * 1024 * 1024 })
    for (const line of stdout.split('\n')) {
      const m = /^(\S)(\S{9})\s+(\d+\/\d+)\s+\d+(?:,\s*\d+)?\s+\S+\s+\S+\s+(.*)$/.exec(line)
      if (!m) continue
      const [, type, mode, owner] = m as unknown as [string, string, string, string, string]
      let rest = m[4]!
      let linkTo: string | undefined
      const arrow = type === 'l' ? rest.indexOf(' -> ') : type === 'h' ? rest.indexOf(' link to ') : -1
      if (arrow !== -1) {
        linkTo = rest.slice(arrow + (type === 'l' ? 4 : 9))
        rest = rest.slice(0, arrow)
      }
      const path = '/' + rest.replace(/^\.\//, '').replace(/\/$/, '')
      if (path === '/.' || path === '/') continue
      files.set(path, { type, mode, owner, ...(linkTo ? { link: linkTo } : {}) })
    }
  }
  return { name: top.annotations?.['io.containerd.image.name'] ?? '', digest: top.digest, config, files }
}
