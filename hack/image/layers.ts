// Layers: a Debian base assembled by mmdebstrap from Debian's packages, and reproducible
// tars of staged directories. Each is cached under a key of its inputs, so a run that
// changes nothing rebuilds nothing.

import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ImageError } from './errors.js'
import { type Layer, layerOf } from './oci.js'

const run = promisify(execFile)

export const keyOf = (...parts: unknown[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16)

/** Runs `build(tmp)` to produce `file` unless it exists; the file appears complete or not at all. */
export async function cached(file: string, build: (tmp: string) => Promise<void>): Promise<Layer> {
  if (!existsSync(file)) {
    // keep the extension: mmdebstrap picks its output format by it
    const tmp = file.replace(/(\.tar)?$/, `.${process.pid}.tmp$1`)
    try {
      await build(tmp)
      await rename(tmp, file)
    } finally {
      await rm(tmp, { force: true, recursive: true })
    }
  }
  return layerOf(file)
}

/** A reproducible tar of `dir`: sorted, every mtime 0, owned by root, nothing group- or world-writable. */
export async function tarDirectory(dir: string, out: string): Promise<void> {
  await run('tar', ['--create', '--file', out, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--mode=go-w', '--format=gnu', '-C', dir, '.'], {
    maxBuffer: 16 * 1024 * 1024,
  })
}

export interface DebianBase {
  suite: string
  mirror: string
  packages: readonly string[]
  /** Shell commands run on the extracted tree ("$1" is its root), before it is tarred (--extract-hook: the extract variant runs no other hooks). */
  hooks: readonly string[]
}

/**
 * The base layer from Debian's packages (`mmdebstrap --variant=extract`: the packages'
 * files, no package manager, no shell). Needs root, or user namespaces for --mode=unshare.
 */
export async function debianBase(cacheDir: string, base: DebianBase, log: (l: string) => void): Promise<Layer> {
  await mkdir(cacheDir, { recursive: true })
  const file = join(cacheDir, `base-${base.suite}-${keyOf(base)}.tar`)
  return cached(file, async (tmp) => {
    log(`assembling the Debian ${base.suite} base with mmdebstrap (${base.packages.join(', ')})`)
    const args = [
      '--mode=auto',
      '--variant=extract',
      '--quiet',
      `--include=${base.packages.join(',')}`,
      ...base.hooks.map((c) => `--extract-hook=${c}`),
      base.suite,
      tmp,
      base.mirror,
    ]
    await new Promise<void>((resolve, reject) => {
      // SOURCE_DATE_EPOCH: the same packages give the same tar, byte for byte
      const child = spawn('mmdebstrap', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SOURCE_DATE_EPOCH: '0' } })
      let err = ''
      child.stdout.on('data', (d: Buffer) => (err += d.toString()))
      child.stderr.on('data', (d: Buffer) => (err += d.toString()))
      child.on('error', (e) =>
        reject(new ImageError('IMAGE_BASE_FAILED', `cannot run mmdebstrap (${e.message}); install it: apt-get install mmdebstrap (hack/packages/node.list)`)),
      )
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new ImageError('IMAGE_BASE_FAILED', `mmdebstrap exited ${code} assembling the ${base.suite} base:\n${err.trim().split('\n').slice(-15).join('\n')}`)),
      )
    })
  })
}
