// The Dockerfile (for users with a container engine) and the image hack/image builds here
// (without one) describe the same image: the same files under /app, the same user, entrypoint,
// command, environment, working directory and port, Node.js of the same major version, and
// no shell. A change to one that is not made to the other fails here.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { distFiles, NODE_MAJOR } from '../../hack/image/images.js'
import { readOciLayout, type ReadImage } from '../../hack/image/oci.js'
import { nodeImages } from '../harness/images.js'
import { imageLine, imageSupport } from '../harness/node-support.js'
import { tempDir } from '../harness/processes.js'

const REPO = new URL('../../', import.meta.url).pathname
// what building the image needs (mmdebstrap, busybox, root or user namespaces), not a node's cgroups
const support = imageSupport()

interface FinalStage {
  from: string
  args: Record<string, string>
  workdir: string
  copies: string[]
  env: Record<string, string>
  user: string
  expose: string[]
  entrypoint: string[]
  cmd: string[]
}

/** The last stage of the Dockerfile, with ARG defaults substituted. */
function finalStage(text: string): FinalStage {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  const args: Record<string, string> = {}
  let stage: FinalStage | undefined
  const sub = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? '')
  for (const line of lines) {
    const [word, ...rest] = line.split(/\s+/)
    const value = rest.join(' ')
    switch (word!.toUpperCase()) {
      case 'ARG': {
        const [k, v] = value.split('=')
        if (v !== undefined) args[k!] = v
        break
      }
      case 'FROM':
        stage = { from: sub(value.split(/\s+/)[0]!), args: { ...args }, workdir: '/', copies: [], env: {}, user: '', expose: [], entrypoint: [], cmd: [] }
        break
      case 'WORKDIR':
        stage!.workdir = sub(value)
        break
      case 'COPY': {
        const parts = value.split(/\s+/).filter((p) => !p.startsWith('--'))
        const dest = parts.at(-1)!
        stage!.copies.push(dest.startsWith('/') ? dest : join(stage!.workdir, dest))
        break
      }
      case 'ENV': {
        const [k, v] = value.split('=')
        stage!.env[k!] = v!
        break
      }
      case 'USER':
        stage!.user = value
        break
      case 'EXPOSE':
        stage!.expose.push(...value.split(/\s+/))
        break
      case 'ENTRYPOINT':
        stage!.entrypoint = JSON.parse(value) as string[]
        break
      case 'CMD':
        stage!.cmd = JSON.parse(value) as string[]
        break
    }
  }
  if (!stage) throw new Error('the Dockerfile has no FROM')
  return stage
}

if (!support.ok) {
  t.test('the image and the Dockerfile', { skip: imageLine(support) }, async () => undefined)
} else {
  const images = await nodeImages((l) => t.comment(l))
  const image: ReadImage = await readOciLayout(images.enlistLayout)
  const docker = finalStage(readFileSync(join(REPO, 'Dockerfile'), 'utf8'))
  const layerOf = (path: string): string => {
    // the layer holding `path` (the last one that does), for reading a file out of it
    const index = JSON.parse(readFileSync(join(images.enlistLayout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const blob = (d: string) => join(images.enlistLayout, 'blobs', 'sha256', d.slice(7))
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> }
    for (const l of [...manifest.layers].reverse()) {
      const list = execFileSync('tar', ['-tf', blob(l.digest)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
      if (list.split('\n').includes(`.${path}`)) return blob(l.digest)
    }
    throw new Error(`no layer holds ${path}`)
  }
  const fileOf = (path: string): Buffer => execFileSync('tar', ['-xOf', layerOf(path), `.${path}`], { maxBuffer: 256 * 1024 * 1024 })

  t.test('the same user, entrypoint, command, environment, workdir and port', async (t) => {
    const cfg = image.config.config
    t.equal(image.name, 'docker.io/library/enlist:0.1.0', 'named as the manifests name it (enlist:0.1.0)')
    t.equal(cfg.User, docker.user, `user ${docker.user}`)
    t.match(cfg.User, /^\d+:\d+$/, 'numeric, so runAsNonRoot can check it')
    t.not(cfg.User?.split(':')[0], '0', 'not root')
    t.same(cfg.Entrypoint, docker.entrypoint, `entrypoint ${JSON.stringify(docker.entrypoint)}`)
    t.same(cfg.Cmd, docker.cmd, `command ${JSON.stringify(docker.cmd)}`)
    t.equal(cfg.WorkingDir, docker.workdir)
    for (const [k, v] of Object.entries(docker.env)) t.ok(cfg.Env?.includes(`${k}=${v}`), `ENV ${k}=${v}`)
    t.same(Object.keys(cfg.ExposedPorts ?? {}), docker.expose.map((p) => (p.includes('/') ? p : `${p}/tcp`)), 'EXPOSE')
  })

  t.test('Node.js of the major version the Dockerfile names, where its base puts it', async (t) => {
    t.match(docker.from, new RegExp(`^gcr\\.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot$`), `the Dockerfile builds on distroless Node.js ${NODE_MAJOR}`)
    t.equal(docker.entrypoint[0], '/nodejs/bin/node', 'where distroless keeps node')
    t.ok(image.files.has('/nodejs/bin/node'), 'the image has /nodejs/bin/node')
    const bin = join(tempDir('enlist-image-node-'), 'node')
    writeFileSync(bin, fileOf('/nodejs/bin/node'))
    chmodSync(bin, 0o755)
    t.match(execFileSync(bin, ['--version'], { encoding: 'utf8' }), new RegExp(`^v${NODE_MAJOR}\\.`), `it is Node.js ${NODE_MAJOR}`)
  })

  t.test('the same files under /app: what the Dockerfile copies, and nothing else', async (t) => {
    const app = [...image.files.keys()].filter((p) => p.startsWith('/app/') && p.split('/').length === 3).sort()
    t.same(app, [...docker.copies].sort(), `the Dockerfile's COPY destinations: ${docker.copies.join(', ')}`)
    const dist = [...image.files.keys()].filter((p) => p.startsWith('/app/dist/') && image.files.get(p)!.type !== 'd').map((p) => p.slice('/app/dist/'.length)).sort()
    t.same(dist, distFiles(), 'dist/ as npm run build wrote it')
    // production dependencies: every package the lockfile does not mark dev, and only those
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
    const prod = Object.entries(lock.packages).filter(([p, v]) => p.startsWith('node_modules/') && !v.dev).map(([p]) => `/app/${p}`).sort()
    const pkgDir = /^\/app\/node_modules\/(?:(?:@[^/]+\/)?[^/@]+\/node_modules\/)*(?:@[^/]+\/)?[^/@]+$/
    const shipped = [...image.files.keys()].filter((p) => pkgDir.test(p) && image.files.has(`${p}/package.json`)).sort()
    t.same(shipped, prod, `exactly the ${prod.length} production packages of package-lock.json`)
    t.notOk(image.files.has('/app/node_modules/typescript') || image.files.has('/app/node_modules/tap'), 'no devDependency')
    t.same(JSON.parse(fileOf('/app/package.json').toString()), JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')), 'package.json as in the repository')
  })

  t.test('no shell, and nothing the user could change', async (t) => {
    for (const sh of ['/bin/sh', '/usr/bin/sh', '/bin/bash', '/bin/dash', '/usr/bin/dash', '/bin/busybox']) t.notOk(image.files.has(sh), `no ${sh}`)
    const writable = [...image.files].filter(([p, f]) => p.startsWith('/app') && (f.owner !== '0/0' || (/^.{4}w|^.{7}w/.test(f.mode) && f.type !== 'l')))
    t.same(writable.map(([p]) => p), [], 'everything under /app is root-owned and writable by root alone')
    const passwd = fileOf('/etc/passwd').toString()
    t.match(passwd, new RegExp(`^nonroot:x:${docker.user.replace(':', ':')}:`, 'm'), 'the user has a name (as distroless gives it)')
    t.ok(image.files.has('/etc/ssl/certs/ca-certificates.crt'), "Debian's CA roots")
  })
}
