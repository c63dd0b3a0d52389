// The images, built from Debian packages, the Node.js 24 binary and this repository, with
// no registry and no container engine:
//
//   enlist:VERSION                     what the Dockerfile describes (a test holds them equal):
//                                      a distroless-like Debian 12 base, node at /nodejs/bin/node,
//                                      /app/{package.json,node_modules,dist}, user 65532, no shell
//   localhost/enlist-test/pause:1      the pod sandbox: busybox-static sleeping
//   localhost/enlist-test/app:1        a test app with a shell (busybox httpd on 8080, ends on TERM)
//   localhost/enlist-test/app-noshell:1  a test app without one (node serving 8080)
//
// Every layer is cached under a key of its inputs in $ENLIST_IMAGE_CACHE
// (default ~/.cache/enlist/images), so only what changed is rebuilt.

import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import { ImageError } from './errors.js'
import { cached, type DebianBase, debianBase, keyOf, tarDirectory } from './layers.js'
import { type Descriptor, type ImageSpec, type Layer, normaliseRef, writeOciLayout } from './oci.js'

const run = promisify(execFile)
const REPO = new URL('../../', import.meta.url).pathname

export const NODE_MAJOR = 24
export const NONROOT = '65532:65532'
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export const cacheDir = (): string => process.env.ENLIST_IMAGE_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'enlist', 'images')

/** What the Dockerfile's distroless base holds: glibc, libstdc++, CA roots, time zones, users. */
export const DEBIAN_BASE: DebianBase = {
  suite: 'bookworm',
  mirror: 'http://deb.debian.org/debian',
  packages: ['libc6', 'libgcc-s1', 'libstdc++6', 'ca-certificates', 'tzdata'],
  hooks: [
    // extract runs no maintainer scripts: make the CA bundle as update-ca-certificates would
    'cat "$1"/usr/share/ca-certificates/mozilla/*.crt > "$1"/etc/ssl/certs/ca-certificates.crt',
    `printf 'root:x:0:0:root:/root:/sbin/nologin\\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\\n' > "$1"/etc/passwd`,
    `printf 'root:x:0:\\nnobody:x:65534:\\nnonroot:x:65532:\\n' > "$1"/etc/group`,
    `printf 'passwd: files\\ngroup: files\\nhosts: files dns\\n' > "$1"/etc/nsswitch.conf`,
    'mkdir -p "$1"/root "$1"/home/nonroot && chmod 0700 "$1"/root "$1"/home/nonroot && chown 65532:65532 "$1"/home/nonroot && chmod 1777 "$1"/tmp',
    'rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/share/lintian "$1"/var/cache/debconf "$1"/var/lib/apt "$1"/var/log/*',
  ],
}

export interface BuiltImage {
  /** As the kubelet and containerd name it, e.g. docker.io/library/enlist:0.1.0. */
  ref: string
  manifest: Descriptor
}

export interface Images {
  enlist: BuiltImage
  pause: BuiltImage
  app: BuiltImage
  appNoShell: BuiltImage
  /** enlist's image alone, as an OCI image layout (tar it for an archive). */
  enlistLayout: string
  /** All four in one layout: a node imports them in one stream, shared layers once. */
  nodeLayout: string
}

type Log = (line: string) => void

export const enlistVersion = (): string => (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version

/** The layout of `specs`, cached under a key of everything in it. */
async function layout(name: string, specs: ImageSpec[]): Promise<{ dir: string; manifests: Descriptor[] }> {
  const key = keyOf(specs.map((s) => [s.ref, s.layers.map((l) => l.digest), s.runtime]))
  const dir = join(cacheDir(), 'layouts', `${name}-${key}`)
  if (existsSync(join(dir, 'index.json'))) {
    const now = new Date()
    await utimes(dir, now, now) // recently used: kept by prune()
    return { dir, manifests: (JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] }).manifests }
  }
  return { dir, manifests: await writeOciLayout(dir, specs) }
}

/** A layer holding one staged tree, cached under `key`. */
async function stagedLayer(prefix: string, key: string, stage: (root: string) => Promise<void>): Promise<Layer> {
  const dir = join(cacheDir(), 'layers')
  await mkdir(dir, { recursive: true })
  const file = join(dir, `${prefix}-${key}.tar`)
  const layer = await cached(file, async (tmp) => {
    const root = await mkdtemp(join(dir, `.stage-${prefix}-`))
    try {
      await stage(root)
      await tarDirectory(root, tmp)
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })
  const now = new Date()
  await utimes(file, now, now) // recently used: kept by prune()
  return layer
}

/** The Node.js binary the image ships: the one running this build, which must be Node 24. */
async function nodeLayer(nodeBin: string): Promise<Layer> {
  const version = (await run(nodeBin, ['--version'])).stdout.trim()
  if (!version.startsWith(`v${NODE_MAJOR}.`)) {
    throw new ImageError('IMAGE_NODE_VERSION', `${nodeBin} is Node.js ${version}; the image ships Node.js ${NODE_MAJOR} (run through make, or PATH=$(hack/node.sh):$PATH)`)
  }
  const s = await stat(nodeBin)
  return stagedLayer('node', keyOf(version, s.size, s.mtimeMs), async (root) => {
    await mkdir(join(root, 'nodejs', 'bin'), { recursive: true })
    await copyFile(nodeBin, join(root, 'nodejs', 'bin', 'node'))
    await chmod(join(root, 'nodejs', 'bin', 'node'), 0o755)
  })
}

/** Production dependencies exactly as the lockfile says (npm ci --omit=dev), cached by lockfile. */
async function productionModules(log: Log): Promise<string> {
  const lock = readFileSync(join(REPO, 'package-lock.json'))
  const pkg = readFileSync(join(REPO, 'package.json'))
  const dir = join(cacheDir(), 'modules', keyOf(createHash('sha256').update(lock).update(pkg).digest('hex')))
  if (existsSync(join(dir, '.complete'))) {
    const now = new Date()
    await utimes(dir, now, now) // recently used: kept by prune()
    return dir
  }
  log('installing production dependencies (npm ci --omit=dev)')
  await mkdir(join(cacheDir(), 'modules'), { recursive: true })
  const tmp = await mkdtemp(`${dir}.tmp-`)
  await writeFile(join(tmp, 'package.json'), pkg)
  await writeFile(join(tmp, 'package-lock.json'), lock)
  // --ignore-scripts: the Dockerfile's install runs none either (no dependency needs one)
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tmp, env: { ...process.env, NODE_OPTIONS: '' } })
  await writeFile(join(tmp, '.complete'), '')
  await rm(dir, { recursive: true, force: true })
  await rename(tmp, dir)
  return dir
}

/** Files under dist/ the image ships: everything `npm run build` writes (not make's stamp). */
export function distFiles(dist = join(REPO, 'dist')): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name !== '.built') out.push(relative(dist, p))
    }
  }
  walk(dist)
  return out.sort()
}

async function appLayer(log: Log): Promise<Layer> {
  const dist = join(REPO, 'dist')
  if (!existsSync(join(dist, 'cli', 'main.js'))) throw new ImageError('IMAGE_INPUT_MISSING', `${dist}/cli/main.js is missing: run make build first`)
  const modules = await productionModules(log)
  const hash = createHash('sha256')
  for (const f of distFiles(dist)) hash.update(f).update('\0').update(readFileSync(join(dist, f))).update('\0')
  hash.update(readFileSync(join(REPO, 'package.json')))
  return stagedLayer('app', keyOf(modules, hash.digest('hex')), async (root) => {
    const app = join(root, 'app')
    await mkdir(app)
    await copyFile(join(REPO, 'package.json'), join(app, 'package.json'))
    cpSync(join(modules, 'node_modules'), join(app, 'node_modules'), { recursive: true, verbatimSymlinks: true })
    cpSync(dist, join(app, 'dist'), { recursive: true, filter: (src) => !src.endsWith('/.built') })
  })
}

/** busybox-static from Debian: one static binary, and (with applets) links naming its commands. */
async function busyboxLayer(withApplets: boolean): Promise<Layer> {
  const bin = '/bin/busybox'
  if (!existsSync(bin)) throw new ImageError('IMAGE_INPUT_MISSING', `${bin} is missing: apt-get install busybox-static (hack/packages/node.list)`)
  const s = statSync(bin)
  return stagedLayer(withApplets ? 'busybox' : 'busybox-bare', keyOf(s.size, s.mtimeMs, withApplets), async (root) => {
    await mkdir(join(root, 'bin'))
    await copyFile(bin, join(root, 'bin', 'busybox'))
    await chmod(join(root, 'bin', 'busybox'), 0o755)
    if (withApplets) {
      const applets = (await run(bin, ['--list'])).stdout.split('\n').filter((a) => /^[a-z0-9_.-]+$/.test(a) && a !== 'busybox')
      for (const a of applets) await symlink('busybox', join(root, 'bin', a))
      await mkdir(join(root, 'www'))
      await writeFile(join(root, 'www', 'index.html'), 'ok\n')
      await mkdir(join(root, 'tmp'))
      await chmod(join(root, 'tmp'), 0o1777)
    }
  })
}

const NOSHELL_SERVER = `// A test app without a shell: answers on 8080, exits on SIGTERM.
import { createServer } from 'node:http'
const server = createServer((req, res) => res.end('ok\\n')).listen(8080)
process.on('SIGTERM', () => { console.log('SIGTERM'); server.close(); process.exit(0) })
`

/** Builds what is missing and returns every image's layout. */
export async function buildImages(log: Log = () => undefined, nodeBin = process.execPath): Promise<Images> {
  const started = Date.now()
  const base = await debianBase(join(cacheDir(), 'layers'), DEBIAN_BASE, log)
  const node = await nodeLayer(nodeBin)
  const app = await appLayer(log)
  const busybox = await busyboxLayer(true)
  const noShellApp = await stagedLayer('noshell-app', keyOf(NOSHELL_SERVER), async (root) => {
    await mkdir(join(root, 'app'))
    await writeFile(join(root, 'app', 'server.mjs'), NOSHELL_SERVER)
  })

  const specs: Record<'enlist' | 'pause' | 'app' | 'appNoShell', ImageSpec> = {
    enlist: {
      ref: `enlist:${enlistVersion()}`,
      layers: [base, node, app],
      runtime: {
        User: NONROOT,
        Entrypoint: ['/nodejs/bin/node', '/app/dist/cli/main.js'],
        Cmd: ['serve'],
        Env: [PATH_ENV, 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt', 'NODE_ENV=production'],
        WorkingDir: '/app',
        ExposedPorts: { '8443/tcp': {} },
        Labels: { 'org.opencontainers.image.title': 'enlist', 'org.opencontainers.image.version': enlistVersion() },
      },
    },
    pause: {
      ref: 'localhost/enlist-test/pause:1',
      layers: [await busyboxLayer(false)],
      runtime: { User: '65535:65535', Entrypoint: ['/bin/busybox', 'sleep', '2147483647'], Env: ['PATH=/bin'] },
    },
    app: {
      ref: 'localhost/enlist-test/app:1',
      layers: [busybox],
      // PID 1 ignores signals it has no handler for: the shell's trap ends it on SIGTERM
      runtime: { User: NONROOT, Cmd: ['sh', '-c', "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"], Env: ['PATH=/bin'], ExposedPorts: { '8080/tcp': {} } },
    },
    appNoShell: {
      ref: 'localhost/enlist-test/app-noshell:1',
      layers: [base, node, noShellApp],
      runtime: { User: NONROOT, Entrypoint: ['/nodejs/bin/node', '/app/server.mjs'], Env: [PATH_ENV], ExposedPorts: { '8080/tcp': {} } },
    },
  }
  const enlistOnly = await layout('enlist', [specs.enlist])
  const all = await layout('node', [specs.enlist, specs.pause, specs.app, specs.appNoShell])
  const built = (i: number): BuiltImage => ({ ref: normaliseRef([specs.enlist, specs.pause, specs.app, specs.appNoShell][i]!.ref), manifest: all.manifests[i]! })
  const images: Images = { enlist: built(0), pause: built(1), app: built(2), appNoShell: built(3), enlistLayout: enlistOnly.dir, nodeLayout: all.dir }
  await prune()
  log(`images ready in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return images
}

/** Keeps the cache bounded: of each kind of layer, layout and dependency install, the four used most recently. */
async function prune(keep = 4): Promise<void> {
  for (const sub of ['layers', 'layouts', 'modules']) {
    const dir = join(cacheDir(), sub)
    const entries = await readdir(dir).catch(() => [] as string[])
    const groups = new Map<string, Array<{ name: string; mtime: number }>>()
    for (const name of entries) {
      if (name.startsWith('.') || name.includes('.tmp')) continue
      const kind = sub === 'modules' ? sub : name.replace(/-[0-9a-f]{16}(\.tar)?$/, '')
      const mtime = (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? 0
      groups.set(kind, [...(groups.get(kind) ?? []), { name, mtime }])
    }
    for (const list of groups.values()) {
      // layouts hold hard links, so removing a layer's cache entry never breaks one in use
      for (const old of list.sort((a, b) => b.mtime - a.mtime).slice(keep)) await rm(join(dir, old.name), { recursive: true, force: true })
    }
  }
}
