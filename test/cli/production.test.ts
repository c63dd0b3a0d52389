// What the image ships: the compiled dist/ with production dependencies only. Every
// command must run there (nothing may lean on a devDependency), as a non-root user
// would run it, writing nothing to disk.
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanEnv } from '../helpers/cli.js'
import { tempDir } from '../helpers/temp.js'

const REPO = new URL('../../', import.meta.url).pathname
const app = tempDir('enlist-image-')
for (const f of ['package.json', 'package-lock.json']) cpSync(join(REPO, f), join(app, f))
cpSync(join(REPO, 'dist'), join(app, 'dist'), { recursive: true })
execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, stdio: 'ignore', env: cleanEnv() })

const run = (args: string[], input = '') => spawnSync(process.execPath, [join(app, 'dist/cli/main.js'), ...args], { cwd: '/', input, encoding: 'utf8', env: { ...cleanEnv(), NODE_ENV: 'production' } })

t.test('production dependencies only', async (t) => {
  const installed = readdirSync(join(app, 'node_modules'))
  // (@types/* arrive anyway: @kubernetes/client-node declares them as dependencies)
  for (const dev of ['tap', 'typescript', 'tsx', 'tap-parser']) t.notOk(installed.includes(dev), `${dev} is not shipped`)
})

t.test('every command runs from the production install', async (t) => {
  t.match(run(['version']), { status: 0, stdout: /^\d+\.\d+\.\d+\n$/ })
  t.match(run(['serve', '--help']), { status: 0, stdout: /--self-signed/ })
  t.match(run(['register', '--help']), { status: 0, stdout: /0 registered, 1 timed out, 2 rejected, 3 misconfigured/ })
  t.match(run(['policy', 'validate', '-'], 'apiVersion: enlist.io/v1alpha1\nkind: Policy\n'), { status: 0, stdout: /valid/ })
  t.match(run(['render', '-f', '-', '--namespace-labels', 'enlist.io/inject=enabled'], 'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: b}]}\n'), { status: 0, stdout: /enlist-registrar/ })
  const dir = tempDir('enlist-img-certs-')
  t.match(run(['certs', '--out-dir', dir, '--overlay', dir]), { status: 0 })
  t.match(run(['register'], ''), { status: 3, stdout: /no registration URL/ }, 'register without its env: misconfigured')
  writeFileSync(join(dir, 'check.mjs'), `import('${join(app, 'dist/discovery/index.js')}').then((m) => console.log(typeof m.watchPeers))`)
  t.match(spawnSync(process.execPath, [join(dir, 'check.mjs')], { encoding: 'utf8', env: cleanEnv() }), { status: 0, stdout: 'function\n' }, 'enlist/discovery loads')
})
