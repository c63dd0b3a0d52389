// `enlist register`: flags default to the env the webhook injects into enlist-registrar.

import { readFileSync, writeSync } from 'node:fs'
import { ENV_CA_BUNDLE, ENV_REGISTRATION_URL, ENV_TIMEOUT_SECONDS, ENV_TOKEN_FILE, TOKEN_FILE } from '../contract/registrar-env.js'
import { EXIT_MISCONFIGURED, register } from '../registrar/registrar.js'
import { type FlagSpecs, helpText, parseFlags } from './flags.js'

const registerFlags = {
  url: { kind: 'string', env: ENV_REGISTRATION_URL, help: 'registration API URL' },
  'ca-file': { kind: 'string', help: `CA bundle file to verify the server (default: the PEM in ${ENV_CA_BUNDLE}, else system roots)` },
  'token-file': { kind: 'string', env: ENV_TOKEN_FILE, default: TOKEN_FILE, help: 'projected service-account token (audience enlist)' },
  timeout: { kind: 'duration', env: ENV_TIMEOUT_SECONDS, default: '300', min: 1000, help: 'give up (exit 1) after this long; a bare number is seconds' },
  help: { kind: 'bool', short: 'h', help: 'show this help' },
} satisfies FlagSpecs

export async function registerCommand(argv: readonly string[]): Promise<number> {
  const o = parseFlags(registerFlags, argv)
  if (o.help) {
    console.log(
      helpText(
        'register [flags]',
        'Register this pod and exit: 0 registered, 1 timed out, 2 rejected, 3 misconfigured. Run as the enlist-registrar init container.',
        registerFlags,
      ),
    )
    return 0
  }
  const pod = process.env.POD_NAMESPACE && process.env.POD_NAME ? `${process.env.POD_NAMESPACE}/${process.env.POD_NAME}` : undefined
  // Synchronous writes: an init container's last lines must not be lost on exit.
  const log = (fields: Record<string, unknown>): void => {
    writeSync(1, JSON.stringify({ time: new Date().toISOString(), level: 'info', component: 'enlist-registrar', pod, ...fields }) + '\n')
  }
  if (!o.url) {
    log({ level: 'error', msg: `no registration URL: set ${ENV_REGISTRATION_URL} or --url` })
    return EXIT_MISCONFIGURED
  }
  // The registrar's own exit codes: a configuration it cannot use is 3 (misconfigured),
  // never 2, which tells the kubelet's user "rejected by enlist".
  const misconfigured = (msg: string): number => {
    log({ level: 'error', msg })
    return EXIT_MISCONFIGURED
  }
  let url: URL
  try {
    url = new URL(o.url)
  } catch {
    return misconfigured(`--url: ${JSON.stringify(o.url)} is not a URL`)
  }
  if (url.protocol !== 'https:') return misconfigured(`--url: ${JSON.stringify(o.url)} must be https (the token is a credential)`)
  let ca = process.env[ENV_CA_BUNDLE] ?? ''
  if (o['ca-file']) {
    try {
      ca = readFileSync(o['ca-file'], 'utf8')
    } catch (err) {
      return misconfigured(`--ca-file: cannot read ${o['ca-file']}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
  }
  return register({ url: url.href, ca, tokenFile: o['token-file'], timeoutMs: o.timeout, log })
}
